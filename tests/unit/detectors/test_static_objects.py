from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache

import cv2
import numpy as np
import pytest

from detectors.evaluation.synthetic import Lighting, SceneSpec, SyntheticScene
from detectors.static_objects import StaticObject, StaticObjectConfig, StaticObjectModel
from detectors.zones import CameraZones, Zone

W, H = 320, 180
CAMERA = "tps-gedeg"
BAG = (150, 120, 170, 140)  # 20 x 20 px: 0.7 % of the frame


@cache
def pavement() -> np.ndarray:
    """A textured grey street surface, the same every time."""
    rng = np.random.default_rng(0)
    grain = cv2.GaussianBlur(rng.normal(0, 12, (H, W)).astype(np.float32), (0, 0), 1.5)
    base = 120 + grain + 15 * (np.indices((H, W)).sum(axis=0) // 24 % 2)
    return np.clip(np.repeat(base[..., None], 3, axis=2), 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class Thing:
    """A dark patch in the picture from `start` to `end` (seconds), maybe moving."""

    box: tuple[float, float, float, float]
    start: float = 0.0
    end: float = math.inf
    value: int = 35
    velocity: tuple[float, float] = (0.0, 0.0)  # px per second

    def at(self, t: float) -> tuple[int, int, int, int] | None:
        if not self.start <= t < self.end:
            return None
        dx, dy = self.velocity[0] * (t - self.start), self.velocity[1] * (t - self.start)
        x1, y1, x2, y2 = self.box
        return round(x1 + dx), round(y1 + dy), round(x2 + dx), round(y2 + dy)


@dataclass
class Clip:
    things: Sequence[Thing] = ()
    seconds: float = 30.0
    fps: float = 5.0
    light: Callable[[float], float] = lambda t: 1.0
    exclude: Callable[[float], list[tuple[float, float, float, float]]] = lambda t: []
    picture: Callable[[float], np.ndarray] = lambda t: pavement()
    noise: float = 2.0
    outputs: list[tuple[float, tuple[StaticObject, ...]]] = field(default_factory=list)

    def frame(self, t: float, rng: np.random.Generator) -> np.ndarray:
        image = self.picture(t).astype(np.float32)
        for thing in self.things:
            box = thing.at(t)
            if box is not None:
                image[box[1] : box[3], box[0] : box[2]] = thing.value
        image *= np.float32(self.light(t))
        image += rng.standard_normal((H, W, 1), dtype=np.float32) * np.float32(self.noise)
        return np.clip(image, 0, 255).astype(np.uint8)

    def run(self, model: StaticObjectModel | None = None) -> Clip:
        model = model or StaticObjectModel(CAMERA)
        rng = np.random.default_rng(1)
        for i in range(round(self.seconds * self.fps)):
            t = 1000.0 + i / self.fps
            boxes = np.array(self.exclude(t), dtype=np.float32).reshape(-1, 4)
            self.outputs.append((t, model.update(self.frame(t, rng), t, boxes)))
        return self

    def ids(self) -> set[int]:
        return {o.id for _, objs in self.outputs for o in objs}

    def first(self, status: str = "present") -> tuple[float, StaticObject]:
        return next((t, o) for t, objs in self.outputs for o in objs if o.status == status)

    def reports(self, status: str) -> list[tuple[float, StaticObject]]:
        return [(t, o) for t, objs in self.outputs for o in objs if o.status == status]


def contains(outer: Sequence[float], inner: Sequence[float]) -> bool:
    return (
        outer[0] <= inner[0]
        and outer[1] <= inner[1]
        and inner[2] <= outer[2]
        and (inner[3] <= outer[3])
    )


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def test_an_object_that_appears_and_stays_is_one_candidate_with_a_stable_id() -> None:
    clip = Clip([Thing(BAG, start=1010.0)]).run()
    assert clip.ids() == {1}
    t, obj = clip.first()
    # Stillness is seen once the short-term model has learnt it, then it must stay put.
    assert 1010.0 + 2.0 <= t <= 1010.0 + 8.0
    assert obj.first_seen == pytest.approx(1010.0, abs=0.5)
    assert obj.confirmed_at == t and obj.visible
    assert iou(obj.box, BAG) >= 0.8
    assert obj.area_frac == pytest.approx(400 / (W * H), rel=0.3)
    later = [o for _, objs in clip.outputs if _ > t for o in objs]
    assert {o.id for o in later} == {1} and {o.status for o in later} == {"present"}
    assert len(later) == len([x for x in clip.outputs if x[0] > t])  # listed on every frame


def test_a_moving_object_never_becomes_a_candidate() -> None:
    walker = Thing((0, 100, 20, 140), start=1005.0, velocity=(8.0, 0.0))
    assert Clip([walker]).run().ids() == set()


def test_a_candidate_in_frame_pixels_at_any_resolution() -> None:
    big = Clip([Thing((300, 240, 340, 280), start=1010.0)], seconds=20.0)
    model = StaticObjectModel(CAMERA)
    rng = np.random.default_rng(0)
    base = cv2.resize(pavement(), (640, 360))
    for i in range(100):
        t = 1000.0 + i / 5
        image = base.copy()
        if t >= 1010.0:
            image[240:280, 300:340] = 35
        image = np.clip(
            image + rng.standard_normal((360, 640, 1), dtype=np.float32) * 2, 0, 255
        ).astype(np.uint8)
        big.outputs.append((t, model.update(image, t)))
    assert model.work_size == (320, 180)
    _, obj = big.first()
    assert iou(obj.box, (300, 240, 340, 280)) >= 0.8


@pytest.mark.parametrize("fps", [2.0, 5.0, 12.0])
def test_timers_are_wall_clock_not_frame_counts(fps: float) -> None:
    clip = Clip([Thing(BAG, start=1010.0, end=1030.0)], seconds=40.0, fps=fps).run()
    t, obj = clip.first()
    assert 1010.0 + 2.0 <= t <= 1010.0 + 7.5
    assert obj.first_seen == pytest.approx(1010.0, abs=0.6)
    ((gone_t, gone),) = clip.reports("removed")
    assert gone.removed_at == pytest.approx(1030.0, abs=0.6)
    assert 1030.0 + 2.0 <= gone_t <= 1030.0 + 3.0


def test_removal_is_reported_once_and_the_object_is_gone() -> None:
    clip = Clip([Thing(BAG, start=1005.0, end=1025.0)]).run()
    ((t, gone),) = clip.reports("removed")
    assert gone.id == 1 and gone.last_seen < 1025.0 <= gone.removed_at  # type: ignore[operator]
    assert all(not objs for when, objs in clip.outputs if when > t)
    assert clip.ids() == {1}  # the empty spot left behind is no new object


def test_people_in_front_of_it_do_not_make_it_removed() -> None:
    person = (140, 60, 180, 150)

    def covered(t: float) -> list[tuple[float, float, float, float]]:
        return [person] if 1020.0 <= t < 1030.0 else []

    clip = Clip(
        [Thing(BAG, start=1005.0), Thing(person, start=1020.0, end=1030.0, value=200)],
        exclude=covered,
        seconds=40.0,
    ).run()
    assert clip.reports("removed") == []
    assert clip.ids() == {1}
    hidden = [o.visible for t, objs in clip.outputs for o in objs if 1021.0 <= t < 1029.0]
    assert hidden and not any(hidden)
    assert all(o.visible for t, objs in clip.outputs for o in objs if t > 1031.0)


def test_something_still_under_a_person_box_is_no_candidate() -> None:
    # A person stands still for a minute; the detector reports their box all along.
    person = (140, 60, 170, 150)

    def exclude(t: float) -> list[tuple[float, float, float, float]]:
        return [person] if 1005.0 <= t < 1065.0 else []

    clip = Clip(
        [Thing(person, start=1005.0, end=1065.0, value=60)], seconds=80.0, exclude=exclude
    ).run()
    assert clip.ids() == set()


@pytest.mark.parametrize(
    ("light", "name"),
    [
        (lambda t: 0.55 if t >= 1015.0 else 1.0, "cloud step"),
        (lambda t: 1.0 - 0.6 * min(1.0, max(0.0, (t - 1005.0) / 30.0)), "dusk"),
        (lambda t: 1.0 + 0.3 * math.sin(t), "flicker"),
    ],
)
def test_lighting_changes_alone_give_no_candidates(
    light: Callable[[float], float], name: str
) -> None:
    model = StaticObjectModel(CAMERA)
    clip = Clip(light=light, noise=3.0, seconds=40.0).run(model)
    assert clip.ids() == set(), name
    assert not model.stats.global_change


def test_an_object_survives_a_sudden_cloud_with_the_same_id() -> None:
    clip = Clip([Thing(BAG, start=1005.0)], light=lambda t: 0.55 if t >= 1020.0 else 1.0).run()
    assert clip.ids() == {1}
    assert clip.reports("removed") == []
    assert clip.outputs[-1][1][0].status == "present"


@pytest.mark.parametrize(
    ("box", "found"),
    [
        ((150, 120, 153, 123), False),  # 9 px: noise, or too far away to matter
        ((150, 120, 158, 128), True),  # 64 px: a bottle near by, a bag far away
        (BAG, True),
        ((40, 40, 200, 160), False),  # a third of the picture: a parked truck, not litter
    ],
)
def test_size_limits(box: tuple[int, int, int, int], found: bool) -> None:
    clip = Clip([Thing(box, start=1008.0)], seconds=25.0).run()
    assert bool(clip.ids()) is found


def test_fixture_and_ignore_zones_are_never_looked_at() -> None:
    zones = CameraZones(
        CAMERA,
        (
            Zone(
                "bin", "fixture", np.array([[0.45, 0.6], [0.55, 0.6], [0.55, 0.85], [0.45, 0.85]])
            ),
            Zone("tree", "ignore", np.array([[0.0, 0.0], [0.2, 0.0], [0.2, 0.3], [0.0, 0.3]])),
        ),
    )
    inside = Thing(BAG, start=1008.0)
    in_tree = Thing((10, 10, 30, 30), start=1008.0)
    outside = Thing((250, 120, 270, 140), start=1008.0)
    clip = Clip([inside, in_tree, outside], seconds=25.0).run(StaticObjectModel(CAMERA, zones))
    assert clip.ids() == {1}
    assert iou(clip.first()[1].box, outside.box) > 0.7


def test_where_something_was_at_start_up_is_no_new_object() -> None:
    # The bag lies there when the camera starts and is taken away: the bare spot differs
    # from the learnt background, but it is a ghost, not an object.
    clip = Clip([Thing(BAG, start=0.0, end=1015.0)]).run()
    assert clip.ids() == set()


def test_a_moved_camera_is_relearnt_without_candidates(caplog: pytest.LogCaptureFixture) -> None:
    street = SyntheticScene(SceneSpec(scenario="empty", width=W, height=H)).background
    turned = np.ascontiguousarray(street[::-1])  # the camera now looks the other way

    model = StaticObjectModel(CAMERA)
    caplog.set_level(logging.INFO, logger="detectors.static_objects")
    clip = Clip(
        [Thing(BAG, start=1005.0)],
        picture=lambda t: turned if t >= 1020.0 else street,
        seconds=40.0,
    )
    flags: list[bool] = []
    rng = np.random.default_rng(1)
    for i in range(round(clip.seconds * clip.fps)):
        t = 1000.0 + i / clip.fps
        clip.outputs.append((t, model.update(clip.frame(t, rng), t)))
        flags.append(model.stats.global_change)
    assert any(flags) and not flags[-1]
    # The bag found before the move is dropped (absorbed), never reported removed.
    assert [o.id for _, o in clip.reports("absorbed")] == [1]
    assert clip.reports("removed") == []
    assert clip.ids() == {1}
    assert "relearning the background" in caplog.text and CAMERA in caplog.text


def test_absorb_folds_a_candidate_into_the_background() -> None:
    model = StaticObjectModel(CAMERA)
    clip = Clip([Thing(BAG, start=1005.0)], seconds=20.0).run(model)
    assert model.absorb(1) and not model.absorb(99)
    more = Clip([Thing(BAG, start=0.0)], seconds=10.0)
    rng = np.random.default_rng(2)
    for i in range(50):
        t = 1020.0 + i / 5
        more.outputs.append((t, model.update(more.frame(t, rng), t)))
    assert [o.id for _, o in more.reports("absorbed")] == [1]
    assert more.ids() == {1}  # no new candidate where it lies
    assert clip.ids() == {1}


def test_candidates_are_absorbed_after_max_age() -> None:
    config = StaticObjectConfig(max_age_s=10.0)
    clip = Clip([Thing(BAG, start=1005.0)], seconds=30.0).run(
        StaticObjectModel(CAMERA, config=config)
    )
    ((t, obj),) = clip.reports("absorbed")
    assert t - obj.confirmed_at == pytest.approx(10.0, abs=0.3)


def test_time_going_back_relearns(caplog: pytest.LogCaptureFixture) -> None:
    model = StaticObjectModel(CAMERA)
    image = pavement()
    model.update(image, 100.0)
    model.update(image, 101.0)
    with caplog.at_level(logging.WARNING, logger="detectors.static_objects"):
        assert model.update(image, 50.0) == ()
    assert "time went back from 101.000 to 50.000" in caplog.text


def test_inputs_are_checked_and_errors_name_the_camera() -> None:
    model = StaticObjectModel(CAMERA)
    model.update(pavement(), 0.0)
    with pytest.raises(
        ValueError, match=r"camera tps-gedeg: expected frames of 320x180, got 640x360"
    ):
        model.update(np.zeros((360, 640, 3), dtype=np.uint8), 1.0)
    with pytest.raises(ValueError, match="camera tps-gedeg: expected a uint8 image, got float32"):
        model.update(np.zeros((180, 320, 3), dtype=np.float32), 1.0)
    with pytest.raises(
        ValueError,
        match=r"expected a BGR \(H, W, 3\) or gray \(H, W\) image, got shape \(180, 320, 4\)",
    ):
        model.update(np.zeros((180, 320, 4), dtype=np.uint8), 1.0)
    with pytest.raises(ValueError, match=r"exclude: expected boxes of shape \(N, 4\), got \(2,\)"):
        model.update(pavement(), 1.0, np.array([1.0, 2.0]))
    model.reset()
    assert model.update(np.zeros((360, 640), dtype=np.uint8), 2.0) == ()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"min_area_frac": 0.2, "max_area_frac": 0.1}, "0 < min_area_frac < max_area_frac < 1"),
        ({"short_tau_s": 60.0}, "short_tau_s < long_tau_s"),
        ({"absent_below": 0.6}, "0 <= absent_below < present_above <= 1"),
        ({"work_width": 8}, "work_width >= 32"),
        ({"merge_ratio": -0.5}, "merge_ratio >= 0"),
    ],
)
def test_config_is_checked(overrides: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        StaticObjectConfig(**overrides)  # type: ignore[arg-type]


@pytest.mark.parametrize("lighting", ["steady", "dusk", "cloud"])
def test_a_dropped_bag_in_a_synthetic_scene_is_found_where_it_lies(lighting: Lighting) -> None:
    scene = SyntheticScene(
        SceneSpec(scenario="drop_and_leave", lighting=lighting, noise_sigma=4.0, duration_s=25.0)
    )
    truth = scene.truth
    assert truth.drop_at is not None and truth.object_box is not None
    model = StaticObjectModel(CAMERA)
    found: dict[int, StaticObject] = {}
    for frame in scene.frames():
        people = np.array([a.box for a in frame.truth.actors], dtype=np.float32).reshape(-1, 4)
        for obj in model.update(frame.image, frame.t, people):
            found.setdefault(obj.id, obj)
    (obj,) = found.values()
    assert iou(obj.box, truth.object_box) >= 0.7
    assert obj.first_seen == pytest.approx(truth.drop_at, abs=1.0)
    assert obj.confirmed_at - truth.drop_at < 10.0


def clear_thing(cx: int, cy: int) -> np.ndarray:
    """How much darker than the street a clear bottle makes each pixel (H, W): a body too
    faint to count as different on its own, with a dark soft-edged label in the middle."""
    ys, xs = np.indices((H, W), dtype=np.float32)
    shade = 80.0 * np.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * 3.0**2))
    shade[cy - 15 : cy + 15, cx - 15 : cx + 15] += 22.0
    return shade


@pytest.mark.parametrize("gone_s", [5.0, 10.0])
def test_a_thing_put_back_where_one_stood_is_new_once_the_spot_was_seen_empty(
    gone_s: float,
) -> None:
    # The thing stands there when the camera starts, is taken away, and the same thing is
    # put back. Only its label differs enough from the street to be learnt as a ghost while
    # the spot is bare; learning just that region left a seam in the model right along
    # where the returned thing differs, which made it a ghost too (a bottle put back on the
    # spot it had left five seconds earlier was never reported).
    shade = clear_thing(160, 130)[..., None]
    back = 1010.0 + gone_s

    def picture(t: float) -> np.ndarray:
        if 1010.0 <= t < back:
            return pavement()
        return np.clip(pavement() - shade, 0, 255).astype(np.uint8)

    clip = Clip(picture=picture, seconds=gone_s + 30.0).run()
    assert clip.ids() == {1}
    t, obj = clip.first()
    assert back + 2.0 <= t <= back + 8.0
    assert obj.first_seen == pytest.approx(back, abs=1.0)
    # The label at least, grown into the faint body only as far as it differs from the
    # background (the rest of the body was still in the model), never past the thing.
    assert contains(obj.box, (153, 123, 168, 138))
    assert contains((145, 115, 175, 145), obj.box)
    assert clip.reports("removed") == []


def test_a_thing_that_shows_piece_by_piece_is_one_candidate() -> None:
    # The top of the thing settles (or becomes distinct from the background) seconds after
    # its bottom, a few pixels away: one object, not two.
    bottom = Thing((150, 130, 175, 142), start=1008.0)
    top = Thing((152, 116, 172, 126), start=1014.0)
    clip = Clip([bottom, top], seconds=30.0).run()
    assert clip.ids() == {1}
    last = clip.outputs[-1][1]
    assert [o.status for o in last] == ["present"]
    assert iou(last[0].box, (150, 116, 175, 142)) >= 0.8


def test_things_far_apart_stay_separate_candidates() -> None:
    clip = Clip(
        [Thing(BAG, start=1008.0), Thing((60, 120, 80, 140), start=1014.0)], seconds=30.0
    ).run()
    assert clip.ids() == {1, 2}
