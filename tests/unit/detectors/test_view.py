from __future__ import annotations

import base64
import json
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pytest

from detectors.evaluation.synthetic import Lighting, SceneSpec, SyntheticScene
from detectors.view import ViewChange, ViewConfig, ViewMonitor, ViewStatus, view_config
from pantau.settings import ViewSettings

CAMERA = "tps-gedeg"
FPS = 5.0
STEP = 1.0 / FPS
CONFIG = ViewConfig()
Frame = tuple[float, np.ndarray, np.ndarray | None]
Edit = Callable[[float, np.ndarray], np.ndarray]


# ------------------------------------------------------------------ helpers


def scene_frames(
    seconds: float,
    *,
    lighting: Lighting = "steady",
    scenario: str = "drop_and_leave",
    edit: Edit | None = None,
    exclude_people: bool = True,
    extra_exclude: Callable[[float], list[tuple[float, float, float, float]]] | None = None,
) -> Iterator[Frame]:
    """A synthetic street at 5 fps with people walking by; `edit` changes the picture (a
    moved or covered camera), the people's boxes are excluded as the detector would."""
    spec = SceneSpec(scenario=scenario, lighting=lighting, duration_s=seconds, fps=FPS)  # type: ignore[arg-type]
    for frame in SyntheticScene(spec).frames():
        image = frame.image if edit is None else edit(frame.t, frame.image)
        boxes = [a.box for a in frame.truth.actors] if exclude_people else []
        if extra_exclude is not None:
            boxes += extra_exclude(frame.t)
        yield frame.t, image, np.array(boxes, dtype=np.float32).reshape(-1, 4)


def shifted(dx: float, dy: float, after: float) -> Edit:
    def edit(t: float, image: np.ndarray) -> np.ndarray:
        if t < after:
            return image
        m = np.float32([[1, 0, dx], [0, 1, dy]])
        size = (image.shape[1], image.shape[0])
        return cv2.warpAffine(image, m, size, borderMode=cv2.BORDER_REFLECT)

    return edit


def rotated(degrees: float, after: float) -> Edit:
    def edit(t: float, image: np.ndarray) -> np.ndarray:
        if t < after:
            return image
        h, w = image.shape[:2]
        m = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
        return cv2.warpAffine(image, m, (w, h), borderMode=cv2.BORDER_REFLECT)

    return edit


def covered(start: float, end: float, level: int = 14, then: Edit | None = None) -> Edit:
    """Near-uniform dark frames (a bag over the lens) from start to end; `then` edits the
    picture after it (a camera also turned while covered)."""

    def edit(t: float, image: np.ndarray) -> np.ndarray:
        if start <= t < end:
            rng = np.random.default_rng(round(t * FPS))
            return np.clip(level + rng.normal(0, 1.5, image.shape), 0, 255).astype(np.uint8)
        return image if then is None else then(t, image)

    return edit


def blurred(sigma: float, start: float, end: float = np.inf) -> Edit:
    def edit(t: float, image: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(image, (0, 0), sigma) if start <= t < end else image

    return edit


@dataclass
class Run:
    statuses: list[tuple[float, ViewStatus]] = field(default_factory=list)

    @property
    def changes(self) -> list[ViewChange]:
        return [c for _, s in self.statuses for c in s.changes]

    def events(self) -> list[tuple[str, str, float]]:
        return [(c.condition, c.phase, round(c.at, 1)) for c in self.changes]

    def times(self, pick: Callable[[ViewStatus], bool]) -> list[float]:
        return [round(t, 1) for t, s in self.statuses if pick(s)]

    def after(self, t0: float) -> list[ViewStatus]:
        return [s for t, s in self.statuses if t >= t0]

    def figures(self, since: float = 0.0) -> tuple[float, float, float]:
        """(max changed share, min spread, min sharpness ratio) after warm-up."""
        judged = self.after(since + CONFIG.warmup_s)
        return (
            max(s.changed_frac for s in judged),
            min(s.brightness_spread for s in judged),
            min(s.sharpness_ratio for s in judged),
        )


def run(frames: Iterable[Frame], monitor: ViewMonitor | None = None) -> Run:
    monitor = monitor or ViewMonitor(CAMERA)
    result = Run()
    for t, image, boxes in frames:
        result.statuses.append((t, monitor.update(image, t, boxes)))
    return result


def report(name: str, r: Run) -> None:
    changed, spread, sharpness = r.figures()
    print(f"\n{name}: max changed {changed:.2f}, min spread {spread:.1f}, "
          f"min sharpness {sharpness:.2f}")  # fmt: skip


def steps(a: float, b: float) -> int:
    return round((b - a) * FPS)


# ------------------------------------------------------------------ a view that stays


@pytest.mark.parametrize(
    ("lighting", "scenario", "exclude_people"),
    [
        ("steady", "drop_and_leave", True),
        ("cloud", "drop_and_leave", True),
        ("dusk", "drop_and_leave", True),
        ("steady", "walk_through", False),
        ("cloud", "stand_still", False),
    ],
)
def test_lighting_and_walkers_leave_the_view_trusted(
    lighting: Lighting, scenario: str, exclude_people: bool
) -> None:
    r = run(scene_frames(50, lighting=lighting, scenario=scenario, exclude_people=exclude_people))
    assert r.changes == []
    assert not any(s.relearn for _, s in r.statuses)
    assert r.times(lambda s: not s.trusted) == r.times(lambda s: s.quiet)  # warm-up only
    assert all(s.trusted for s in r.after(CONFIG.warmup_s))
    changed, spread, sharpness = r.figures()
    assert changed < CONFIG.moved_frac / 2
    assert spread > CONFIG.uniform_spread
    assert sharpness > 2 * CONFIG.blur_ratio


# ------------------------------------------------------------------ a moved camera

MOVE_AT = 12.0


@pytest.mark.parametrize(
    "edit",
    [
        pytest.param(shifted(40, 30, MOVE_AT), id="shift-40-30"),
        pytest.param(shifted(50, 0, MOVE_AT), id="pan-50"),
        pytest.param(shifted(30, 0, MOVE_AT), id="pan-30"),
        pytest.param(shifted(0, -35, MOVE_AT), id="tilt-35"),
        pytest.param(shifted(-35, -25, MOVE_AT), id="shift-back-35-25"),
        pytest.param(rotated(3, MOVE_AT), id="roll-3deg"),
        pytest.param(rotated(-4, MOVE_AT), id="roll-minus-4deg"),
        pytest.param(rotated(5, MOVE_AT), id="roll-5deg"),
    ],
)
def test_a_moved_camera_is_reported_once_and_relearnt_quietly(edit: Edit) -> None:
    r = run(scene_frames(MOVE_AT + CONFIG.moved_after_s + CONFIG.relearn_s + 5, edit=edit))
    start = MOVE_AT + CONFIG.moved_after_s
    end = start + CONFIG.relearn_s
    assert r.events() == [("moved", "start", start), ("moved", "end", end)]
    assert r.changes[0].relearn_s == CONFIG.relearn_s
    assert r.changes[0].changed_frac > CONFIG.moved_frac
    # The scene models start over on exactly one frame, then learn quietly until the end.
    assert r.times(lambda s: s.relearn) == [start]
    quiet = [t for t in r.times(lambda s: s.quiet) if t >= CONFIG.warmup_s]
    assert quiet[0] == start and len(quiet) == steps(start, end)
    # Before the alarm the frames are only held: nothing is judged on the shifted picture.
    held = r.times(lambda s: not s.trusted and not s.quiet)
    assert held == [round(MOVE_AT + i * STEP, 1) for i in range(steps(MOVE_AT, start))]
    assert all(s.trusted for s in r.after(end))
    report(f"moved {r.changes[0].changed_frac:.2f} at start", r)


def test_a_short_change_only_holds_the_frames() -> None:
    """A flash, then a bus passing right in front of the lens (not detected), for less than
    moved_after_s each."""

    def edit(t: float, image: np.ndarray) -> np.ndarray:
        if 10.0 <= t < 10.4:
            return np.full_like(image, 250)
        if 15.0 <= t < 17.0:
            out = image.copy()
            x = round(640 * (t - 15.0) / 2.0)
            cv2.rectangle(out, (x - 200, 20), (x + 200, 350), (30, 120, 200), -1)
            return out
        return image

    r = run(scene_frames(25, edit=edit))
    assert r.changes == []
    assert not any(s.relearn for _, s in r.statuses)
    held = r.times(lambda s: not s.trusted and not s.quiet)
    assert held[:2] == [10.0, 10.2]  # the flash is not judged
    bus = held[2:]
    assert bus
    assert all(15.0 <= t < 17.0 for t in bus)
    assert all(s.trusted for s in r.after(17.0))


def test_a_big_excluded_box_holds_without_judging() -> None:
    """A truck stops right in front of the camera for 10 s; the detector boxes it."""
    truck = (20.0, 10.0, 620.0, 350.0)

    def edit(t: float, image: np.ndarray) -> np.ndarray:
        if 10.0 <= t < 20.0:
            out = image.copy()
            cv2.rectangle(out, (25, 15), (615, 345), (40, 40, 160), -1)
            return out
        return image

    r = run(
        scene_frames(30, edit=edit, extra_exclude=lambda t: [truck] if 10.0 <= t < 20.0 else [])
    )
    assert r.changes == []
    assert r.times(lambda s: not s.trusted and not s.quiet) == [
        round(10.0 + i * STEP, 1) for i in range(steps(10.0, 20.0))
    ]
    assert all(s.trusted for s in r.after(20.0))


# ------------------------------------------------------------------ covered and blurred


@pytest.mark.parametrize(
    ("lighting", "edit", "condition"),
    [
        ("steady", covered(15.0, 25.0), "covered"),
        ("dusk", covered(15.0, 25.0, level=6), "covered"),
        ("cloud", covered(15.0, 25.0, level=40), "covered"),
        ("steady", blurred(6.0, 15.0, 25.0), "blurred"),
        ("dusk", blurred(10.0, 15.0, 25.0), "blurred"),
    ],
)
def test_a_covered_or_blurred_lens_is_reported_and_the_view_carries_on(
    lighting: Lighting, edit: Edit, condition: str
) -> None:
    r = run(scene_frames(35, lighting=lighting, edit=edit))
    start = 15.0 + CONFIG.tamper_after_s
    end = 25.0 + CONFIG.back_after_s
    assert r.events() == [(condition, "start", start), (condition, "end", end)]
    # No relearning: the picture came back as it was, so what lies there is still judged.
    assert not any(s.relearn for _, s in r.statuses)
    assert r.times(lambda s: not s.trusted and s.quiet) == r.times(lambda s: s.quiet)
    assert [t for t in r.times(lambda s: not s.trusted) if t >= CONFIG.warmup_s] == [
        round(15.0 + i * STEP, 1) for i in range(steps(15.0, end))
    ]
    assert min(t for t in r.times(lambda s: s.trusted) if t >= 15.0) == end
    report(f"{condition} ({lighting})", r)


def test_a_lens_that_stays_blurred_stays_untrusted() -> None:
    r = run(scene_frames(30, edit=blurred(8.0, 10.0)))
    assert r.events() == [("blurred", "start", 10.0 + CONFIG.tamper_after_s)]
    assert not any(s.trusted for s in r.after(10.0))
    assert r.changes[0].sharpness_ratio < CONFIG.blur_ratio


def test_a_camera_turned_while_covered_is_covered_then_moved() -> None:
    edit = covered(12.0, 20.0, then=shifted(40, 30, 20.0))
    r = run(scene_frames(20 + CONFIG.back_after_s + CONFIG.relearn_s + 4, edit=edit))
    back = 20.0 + CONFIG.back_after_s
    assert r.events() == [
        ("covered", "start", 12.0 + CONFIG.tamper_after_s),
        ("covered", "end", back),
        ("moved", "start", back),
        ("moved", "end", back + CONFIG.relearn_s),
    ]
    assert r.times(lambda s: s.relearn) == [back]
    assert all(s.trusted for s in r.after(back + CONFIG.relearn_s))


# ------------------------------------------------------------------ real footage

REAL_CLIPS = ["one-by-one-person-detection.mp4", "bottle-detection.mp4", "car-detection.mp4"]


def clip_frames(path: Path, seconds: float = 60.0) -> Iterator[Frame]:
    """The clip sampled at 5 fps by its own timestamps, as the camera stage does."""
    capture = cv2.VideoCapture(str(path))
    assert capture.isOpened(), f"cannot open {path}"
    next_t = 0.0
    try:
        while capture.grab():
            t = capture.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
            if t > seconds:
                break
            if t + 1e-6 < next_t:
                continue
            next_t += STEP
            ok, image = capture.retrieve()
            assert ok
            yield t, image, None
    finally:
        capture.release()


@pytest.mark.parametrize("name", REAL_CLIPS)
def test_real_footage_gives_no_view_change(name: str, shared_data: Path) -> None:
    path = shared_data / "video" / "intel-sample-videos" / name
    r = run(clip_frames(path))
    assert len(r.statuses) > 100
    assert r.changes == []
    assert not any(s.relearn for _, s in r.statuses)
    changed, spread, sharpness = r.figures()
    assert changed < CONFIG.moved_frac
    assert spread > CONFIG.uniform_spread
    assert sharpness > CONFIG.blur_ratio
    report(name, r)


# ------------------------------------------------------------------ state and odd input


def test_a_restarted_monitor_still_knows_the_view() -> None:
    """State saved before a restart, the camera moved during the restart: the resumed monitor
    sees the move at once; a fresh one would take the new view as the scene."""
    frames = list(scene_frames(30, edit=shifted(40, 30, 15.0)))
    before = [f for f in frames if f[0] < 15.0]
    after = [f for f in frames if f[0] >= 15.0]
    monitor = ViewMonitor(CAMERA)
    run(before, monitor)
    state = monitor.to_state()
    carried = json.loads(
        json.dumps(
            {k: base64.b64encode(v).decode() if isinstance(v, bytes) else v
             for k, v in state.items()}
        )
    )  # fmt: skip
    assert len(json.dumps(carried)) < 64_000
    resumed = run(after, ViewMonitor.from_state(carried))
    assert resumed.events()[0] == ("moved", "start", 15.0 + CONFIG.moved_after_s)
    assert run(after).changes == []


def test_a_restart_during_a_tamper_still_ends_it() -> None:
    frames = list(scene_frames(30, edit=covered(10.0, 20.0)))
    monitor = ViewMonitor(CAMERA)
    first = run([f for f in frames if f[0] < 15.0], monitor)
    assert first.events() == [("covered", "start", 12.0)]
    resumed = ViewMonitor.from_state(monitor.to_state())
    second = run([f for f in frames if f[0] >= 15.0], resumed)
    assert second.events() == [("covered", "end", 20.0 + CONFIG.back_after_s)]
    assert not any(s.relearn for _, s in second.statuses)


@pytest.mark.parametrize(
    ("state", "problem"),
    [
        ({"version": 99, "camera_id": CAMERA}, "version"),
        ({"version": 1}, "camera_id"),
        (
            {"version": 1, "camera_id": CAMERA, "frame_size": [640, 360],
             "reference_png": b"not a png", "known_png": b"", "started": 0.0},
            "reference_png",
        ),
    ],
)  # fmt: skip
def test_a_broken_state_is_refused_clearly(state: dict[str, object], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        ViewMonitor.from_state(state)


def test_time_going_back_starts_over_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    frames = list(scene_frames(12))
    monitor = ViewMonitor(CAMERA)
    run(frames, monitor)
    with caplog.at_level(logging.WARNING, logger="detectors.view"):
        status = monitor.update(frames[0][1], 0.0)
    assert "time went back" in caplog.text and CAMERA in caplog.text
    assert status.quiet and not status.trusted and status.changes == ()


def test_a_new_resolution_starts_over() -> None:
    frames = list(scene_frames(12))
    monitor = ViewMonitor(CAMERA)
    run(frames, monitor)
    small = cv2.resize(frames[-1][1], (320, 180))
    status = monitor.update(small, 12.2)
    assert status.quiet and status.changes == ()


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (np.zeros((90, 160, 3), dtype=np.float32), "uint8"),
        (np.zeros((90, 160, 4), dtype=np.uint8), "shape"),
        (np.zeros((90,), dtype=np.uint8), "shape"),
        (np.zeros((4, 4), dtype=np.uint8), "8x8"),
    ],
)
def test_an_unusable_image_is_a_clear_error(image: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ViewMonitor(CAMERA).update(image, 0.0)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "exclude",
    [
        None,
        [],
        [[np.nan, 0, 10, 10]],
        [[50, 50, 10, 10]],  # inverted
        [[-500, -500, 5000, 5000]],  # beyond the frame: nothing visible
        "not boxes",
    ],
)
def test_odd_inputs_do_not_raise(exclude: object) -> None:
    monitor = ViewMonitor(CAMERA)
    grey = np.random.default_rng(0).integers(0, 255, (60, 80), dtype=np.uint8)
    for i in range(40):
        status = monitor.update(grey, i * STEP, exclude)  # type: ignore[arg-type]
        assert status.changes == ()
    black = np.zeros((8, 8, 1), dtype=np.uint8)
    monitor.reset()
    assert monitor.update(black, 0.0).quiet


# ------------------------------------------------------------------ configuration


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"moved_frac": 1.5}, "0 < moved_frac < 1"),
        ({"work_width": 8}, "work_width >= 32"),
        ({"relearn_tau_s": 100.0}, "relearn_tau_s < reference_tau_s"),
        ({"tamper_after_s": -1.0}, "durations >= 0"),
    ],
)
def test_a_bad_config_names_the_threshold(change: dict[str, float], named: str) -> None:
    with pytest.raises(ValueError, match=named):
        ViewConfig(**change)  # type: ignore[arg-type]


def test_settings_become_the_monitor_config() -> None:
    settings = ViewSettings(
        relearn_s=12.0, moved_after_s=4.0, tamper_after_s=1.0, moved_frac=0.7,
        uniform_spread=5.0, blur_ratio=0.3,
    )  # fmt: skip
    config = view_config(settings)
    assert (config.relearn_s, config.moved_after_s, config.tamper_after_s) == (12.0, 4.0, 1.0)
    assert (config.moved_frac, config.uniform_spread, config.blur_ratio) == (0.7, 5.0, 0.3)
    assert view_config(ViewSettings()) == ViewConfig()
    with pytest.raises(ValueError, match="moved_frak"):
        ViewSettings(moved_frak=0.5)  # type: ignore[call-arg]
