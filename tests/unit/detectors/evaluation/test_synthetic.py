from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from detectors.evaluation.synthetic import (
    PERSON,
    SceneSpec,
    SceneTruth,
    SyntheticScene,
    ViewChangeTruth,
    read_truth,
    write_scene,
)
from detectors.zones import Zone


def scene(**overrides: Any) -> SyntheticScene:
    return SyntheticScene(SceneSpec(**overrides))


def gray(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY).astype(np.float32)


def crop(image: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
    x1, y1, x2, y2 = (round(v) for v in box)
    return image[y1:y2, x1:x2]


@pytest.mark.parametrize(
    ("spec", "frames", "first_t", "step"),
    [
        ({"scenario": "empty", "duration_s": 4.0}, 20, 0.0, 0.2),
        (
            {"scenario": "empty", "duration_s": 4.0, "fps": 2.0, "width": 320, "height": 180},
            8,
            0.0,
            0.5,
        ),
        (
            {"scenario": "empty", "duration_s": 1.0, "fps": 10.0, "start_at": 1_764_000_000.0},
            10,
            1_764_000_000.0,
            0.1,
        ),
    ],
)
def test_frames_come_at_the_requested_rate_and_size(
    spec: dict[str, Any], frames: int, first_t: float, step: float
) -> None:
    s = scene(**spec)
    out = list(s.frames())
    assert len(out) == len(s) == frames
    assert out[0].t == first_t
    assert np.diff([f.t for f in out]) == pytest.approx(step, abs=1e-6)
    assert {f.image.shape for f in out} == {(s.spec.height, s.spec.width, 3)}
    assert {f.image.dtype for f in out} == {np.dtype(np.uint8)}
    assert [f.truth.t for f in out] == [f.t for f in out]


def test_the_same_spec_renders_the_same_pictures() -> None:
    a, b = scene(seed=3, duration_s=10.0), scene(seed=3, duration_s=10.0)
    other = scene(seed=4, duration_s=10.0)
    for i in (0, 17, 30):
        assert np.array_equal(a.render(i), b.render(i))
        assert not np.array_equal(a.render(i), other.render(i))
    assert a.truth == b.truth


def test_the_person_walks_in_taller_than_wide_and_inside_the_frame() -> None:
    s = scene(scenario="drop_and_leave")
    frames = s.truth.frames
    assert frames[0].actors == ()  # enters after a second
    boxes = [a.box for f in frames for a in f.actors]
    assert len(boxes) > 40
    for x1, y1, x2, y2 in boxes:
        assert 0 <= x1 < x2 <= 640 and 0 <= y1 < y2 <= 360
    whole = [b for b in boxes if b[0] > 0 and b[2] < 640]
    assert all((y2 - y1) > 1.5 * (x2 - x1) for x1, y1, x2, y2 in whole)
    assert {a.track_id for f in frames for a in f.actors} == {1}
    assert {a.class_id for f in frames for a in f.actors} == {PERSON}


def test_the_person_is_drawn_where_the_truth_says() -> None:
    s = scene(scenario="walk_through", noise_sigma=0.0)
    index = next(f.index for f in s.truth.frames if f.actors and f.actors[0].box[0] > 100)
    box = s.truth.frames[index].actors[0].box
    changed = np.abs(gray(s.render(index)) - gray(s.background)) > 20
    ys, xs = np.nonzero(changed)
    # Everything that changed is the person or the bag hanging from their hand.
    assert xs.min() >= box[0] - 30 and xs.max() <= box[2] + 30
    assert ys.min() >= box[1] - 1 and ys.max() <= box[3]
    assert changed[round(box[1]) : round(box[3]), round(box[0]) : round(box[2])].mean() > 0.3


def test_a_dropped_bag_lies_in_its_box_from_the_drop_on() -> None:
    s = scene(scenario="drop_and_leave", noise_sigma=0.0)
    truth = s.truth
    assert truth.drop_at is not None and truth.object_box is not None
    before = next(f for f in truth.frames if f.t > truth.drop_at - 3)
    after = next(f for f in truth.frames if f.t > truth.drop_at + 10)
    assert before.object_box is None and after.object_box == truth.object_box
    assert after.actors == ()  # the owner has gone
    empty = crop(gray(s.background), truth.object_box).mean()
    bag = crop(gray(s.render(after.index)), truth.object_box).mean()
    assert empty - bag > 50  # a dark bag on light paving
    x1, y1, x2, y2 = truth.object_box
    assert 20 < x2 - x1 < 60 and 20 < y2 - y1 < 60


@pytest.mark.parametrize(("scenario", "remover"), [("drop_and_pickup", 1), ("drop_and_clean", 2)])
def test_a_removed_bag_is_gone_from_the_picture(scenario: str, remover: int) -> None:
    s = scene(scenario=scenario, noise_sigma=0.0)
    truth = s.truth
    assert truth.removed_at is not None and truth.object_box is not None
    assert truth.removed_by == remover
    later = s.truth.frames[-1]
    assert later.t > truth.removed_at and later.object_box is None
    assert (
        np.abs(
            crop(gray(s.render(later.index)), truth.object_box)
            - crop(gray(s.background), truth.object_box)
        ).max()
        < 1
    )
    tracks = {a.track_id for f in truth.frames for a in f.actors}
    assert tracks == ({1, 2} if scenario == "drop_and_clean" else {1})


def test_standing_still_keeps_one_box_for_a_minute() -> None:
    truth = scene(scenario="stand_still", stand_s=60.0).truth
    boxes = [f.actors[0].box for f in truth.frames if f.actors]
    longest = max(sum(1 for _ in group) for _, group in itertools.groupby(boxes))
    assert longest / 5.0 >= 59.0


@pytest.mark.parametrize(
    ("lighting", "middle", "end"),
    [("steady", 1.0, 1.0), ("dusk", (0.45, 0.85), (0.3, 0.4)), ("cloud", (0.5, 0.6), (0.95, 1.05))],
)
def test_lighting_changes_the_whole_picture(lighting: str, middle: Any, end: Any) -> None:
    s = scene(scenario="empty", lighting=lighting, duration_s=40.0, noise_sigma=0.0)
    base = gray(s.render(0)).mean()
    ratios = [gray(s.render(i)).mean() / base for i in (len(s) // 2, len(s) - 1)]
    for ratio, want in zip(ratios, (middle, end), strict=True):
        if isinstance(want, tuple):
            assert want[0] <= ratio <= want[1]
        else:
            assert ratio == pytest.approx(want)
    assert s.truth.frames[0].light == 1.0


@pytest.mark.parametrize("sigma", [0.0, 2.0, 6.0])
def test_sensor_noise_has_the_requested_strength(sigma: float) -> None:
    s = scene(scenario="empty", noise_sigma=sigma, duration_s=2.0)
    diff = s.render(3).astype(np.float32) - s.render(4).astype(np.float32)
    # Two independent draws differ by sigma * sqrt(2); rounding adds a little.
    assert diff.std() == pytest.approx(sigma * np.sqrt(2), abs=0.5)


def test_detections_are_what_a_perfect_tracker_reports() -> None:
    truth = scene(scenario="drop_and_leave").truth
    with_person = next(f for f in truth.frames if f.actors)
    found = with_person.detections()
    assert found.tracker_id is not None
    assert found.class_id.tolist() == [PERSON] and found.tracker_id.tolist() == [1]
    assert found.xyxy.tolist() == [list(with_person.actors[0].box)]
    lying = truth.frames[-1]
    assert len(lying.detections()) == 0
    bag = lying.detections(object_class=26)
    assert bag.class_id.tolist() == [26] and bag.xyxy.tolist() == [list(truth.object_box or ())]


@pytest.mark.parametrize(
    ("spec", "dwell_s", "expected"),
    [
        ({"scenario": "drop_and_leave"}, 30.0, True),
        ({"scenario": "drop_and_leave", "duration_s": 20.0}, 30.0, False),
        ({"scenario": "drop_and_pickup", "away_s": 10.0}, 30.0, False),
        ({"scenario": "drop_and_pickup", "away_s": 45.0}, 30.0, True),
        ({"scenario": "drop_and_clean", "clean_after_s": 20.0}, 30.0, False),
        ({"scenario": "drop_and_clean", "clean_after_s": 20.0}, 10.0, True),
        ({"scenario": "stand_still"}, 30.0, False),
        ({"scenario": "walk_through"}, 30.0, False),
        ({"scenario": "empty"}, 30.0, False),
    ],
)
def test_truth_says_whether_an_event_is_due(
    spec: dict[str, Any], dwell_s: float, expected: bool
) -> None:
    assert scene(**spec).truth.expects_event(dwell_s) is expected


def test_fixtures_are_drawn_and_outlined_for_zones() -> None:
    s = scene()
    names = [f.name for f in s.truth.fixtures]
    assert names == ["pole", "bin"]
    for fixture in s.truth.fixtures:
        x1, y1, x2, y2 = fixture.box
        centre = s.background[round((y1 + y2) / 2), round((x1 + x2) / 2)]
        if fixture.name == "bin":
            assert centre[1] > centre[0] + 40 and centre[1] > centre[2] + 40  # green
        zone = Zone(id=fixture.name, kind="fixture", polygon=np.array(fixture.polygon))
        assert zone.contains([list(fixture.box)], 640, 360).tolist() == [True]


def test_writes_a_playable_clip_and_its_truth(tmp_path: Path) -> None:
    s = scene(scenario="drop_and_leave", duration_s=3.0, width=320, height=180)
    video, truth_path = write_scene(s, tmp_path / "clips")
    assert video.name == "drop_and_leave-steady-0.mp4" and truth_path.suffix == ".yaml"
    capture = cv2.VideoCapture(str(video))
    try:
        count = 0
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            assert frame.shape == (180, 320, 3)
            count += 1
        assert capture.get(cv2.CAP_PROP_FPS) == pytest.approx(5.0)
    finally:
        capture.release()
    assert count == len(s) == 15
    assert read_truth(truth_path) == s.truth


def test_truth_file_must_be_a_scene(tmp_path: Path) -> None:
    path = tmp_path / "other.yaml"
    path.write_text("- 1\n- 2\n")
    with pytest.raises(
        ValueError, match="expected a synthetic scene's ground truth, got <class 'list'>"
    ):
        read_truth(path)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"scenario": "juggle"}, r"scenario: expected one of .* got 'juggle'"),
        ({"width": 32}, r"size: expected at least 64x64, got 32x360"),
        ({"fps": 0.0}, r"fps: expected > 0, got 0\.0"),
        ({"drop_x": 0.95}, r"drop_x: expected 0\.25\.\.0\.7 of the width, got 0\.95"),
        ({"away_s": 1.0}, r"away_s: expected >= 3 s"),
        (
            {"noise_sigma": -1.0, "lighting": "sunset"},
            r"lighting: .*got 'sunset'; .*noise_sigma: expected >= 0",
        ),
        ({"move_at_s": -1.0}, r"move_at_s: expected >= 0, got -1\.0"),
        ({"move_shift": 0.5}, r"move_shift: expected 0\.01\.\.0\.25 of the width either way"),
        ({"cover_at_s": 0.0}, r"cover_at_s: expected >= 0\.4 s \(the cover slides in\)"),
        ({"cover_s": 0.0}, r"cover_s: expected > 0, got 0\.0"),
    ],
)
def test_invalid_specs_say_what_was_expected(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SceneSpec(**overrides)


# --------------------------------------------------------------------------- the camera itself


def test_a_turned_camera_shows_the_street_shifted_from_the_move_on() -> None:
    s = scene(scenario="passers_by", duration_s=30.0, move_at_s=12.0, noise_sigma=0.0)
    assert s.truth.view_changes == (ViewChangeTruth(12.0, None, "moved"),)
    fps = s.spec.fps
    pictures = [s.render(round(t * fps)) for t in (11.8, 14.0, 29.0)]
    before, after, later = (gray(p) for p in pictures)
    # Every edge of the street (kerb, tiles, markings, pole, bin) moved: a fifth of the picture
    # changed clearly, where a person walking by changes a few percent ...
    assert (np.abs(after - before) > 10).mean() > 0.15

    def bin_centre(image: np.ndarray) -> np.ndarray:
        b, g, r = (image[..., i].astype(np.int32) for i in range(3))
        ys, xs = np.nonzero((g > b + 40) & (g > r + 40))
        return np.array([xs.mean(), ys.mean()])

    # ... by a pan of 4 degrees: the green bin slides about 42 px left (0.065 of 640 px).
    dx, dy = bin_centre(pictures[1]) - bin_centre(pictures[0])
    assert dx == pytest.approx(-0.065 * 640, abs=4) and abs(dy) < 6
    # ... and then it stays: the same picture a quarter of a minute on, but for passers-by.
    still = np.ones(before.shape, dtype=bool)
    for f in (s.truth.frames[round(14.0 * fps)], s.truth.frames[round(29.0 * fps)]):
        for a in f.actors:
            # A pixel more each side: the turned picture is interpolated.
            x1, y1, x2, y2 = (round(v) for v in a.box)
            still[max(0, y1 - 1) : y2 + 1, max(0, x1 - 1) : x2 + 1] = False
    assert np.abs(later - after)[still].max() < 2


def test_a_person_in_a_turned_view_is_boxed_where_they_are_drawn() -> None:
    s = scene(scenario="passers_by", duration_s=30.0, move_at_s=5.0, noise_sigma=0.0)
    empty = scene(scenario="empty", duration_s=30.0, move_at_s=5.0, noise_sigma=0.0)
    frame = next(f for f in s.truth.frames if f.t > 7 and f.actors and f.actors[0].box[0] > 100)
    (actor,) = frame.actors
    changed = np.abs(gray(s.render(frame.index)) - gray(empty.render(frame.index))) > 20
    ys, xs = np.nonzero(changed)
    x1, y1, x2, y2 = actor.box
    assert x1 - 1 <= xs.min() and xs.max() <= x2 and y1 - 1 <= ys.min() and ys.max() <= y2
    # Where the truth box was before the move, the person is not: the box moved with the view.
    unmoved = scene(scenario="passers_by", duration_s=30.0, noise_sigma=0.0)
    assert unmoved.truth.frames[frame.index].actors[0].box[0] - x1 > 30


def test_a_covered_camera_sees_a_dark_even_picture_then_its_view_again() -> None:
    s = scene(scenario="empty", duration_s=16.0, cover_at_s=5.0, cover_s=4.0, noise_sigma=2.0)
    assert s.truth.view_changes == (ViewChangeTruth(5.0, 9.0, "covered"),)
    fps = s.spec.fps
    for t in (5.0, 7.0, 8.8):
        covered = gray(s.render(round(t * fps)))
        assert covered.mean() < 40 and covered.std() < 8  # near-uniform, dark
    quiet = scene(scenario="empty", duration_s=16.0, cover_at_s=5.0, cover_s=4.0, noise_sigma=0)
    assert np.array_equal(quiet.render(round(12.0 * fps)), quiet.render(round(2.0 * fps)))
    view = gray(s.render(round(12.0 * fps)))
    assert view.std() > 25  # the street again, with its contrast


def test_nobody_is_seen_through_a_covered_lens() -> None:
    s = scene(scenario="passers_by", duration_s=30.0, cover_at_s=3.0, cover_s=10.0)
    covered = [f for f in s.truth.frames if 3.0 <= f.t < 13.0]
    assert covered and all(f.actors == () for f in covered)
    # People walk by before and after the cover (one every 10 s, alternately each way).
    seen = {a.track_id for f in s.truth.frames for a in f.actors}
    assert seen == {1, 2, 3}
    assert s.truth.drop_at is None and not s.truth.expects_event(1.0)


def test_a_night_street_is_dark_and_noisy_but_the_bag_shows_under_the_lamp() -> None:
    s = scene(scenario="drop_and_leave", lighting="night", noise_sigma=3.0)
    means = [gray(s.render(i)).mean() for i in range(0, len(s), 40)]
    assert all(15 <= m <= 40 for m in means)
    # The camera's gain at night doubles its noise.
    diff = s.render(3).astype(np.float32) - s.render(4).astype(np.float32)
    assert diff.std() == pytest.approx(2 * 3.0 * np.sqrt(2), abs=1.0)
    truth = s.truth
    assert truth.object_box is not None and truth.expects_event(30.0)
    quiet = scene(scenario="drop_and_leave", lighting="night", noise_sigma=0.0)
    lying = quiet.truth.frames[-1]
    x1, y1, x2, y2 = truth.object_box
    pavement = gray(quiet.render(0))[round(y1) : round(y2), round(x1) : round(x2)].mean()
    bag = crop(gray(quiet.render(lying.index)), truth.object_box).mean()
    assert pavement - bag > 20


def test_view_changes_survive_the_truth_file(tmp_path: Path) -> None:
    s = scene(scenario="passers_by", duration_s=4.0, cover_at_s=1.0, cover_s=2.0, width=320,
              height=180, move_at_s=3.5)  # fmt: skip
    _, truth_path = write_scene(s, tmp_path)
    back = read_truth(truth_path)
    assert back == s.truth
    assert [v.condition for v in back.view_changes] == ["covered", "moved"]
    assert SceneTruth.from_dict(s.truth.to_dict()).view_changes == s.truth.view_changes
