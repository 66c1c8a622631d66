"""The motion gate: synthetic scenes with known motion, the shared clip, and the camera loop."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from ingest.camera import CameraIngest
from ingest.sampling import FpsSampler
from pantau.codec import decode_as
from pantau.messages import CameraHeartbeat
from pantau.motion import GateDecision, MotionGate, small_gray
from pantau.settings import MotionSettings, settings_from_mapping
from pantau.topics import Topics
from tests.conftest import SAMPLE_CLIP

W, H = 640, 360
FPS = 5.0
Image = np.ndarray[Any, np.dtype[np.uint8]]
Decided = list[tuple[float, GateDecision]]


# ------------------------------------------------------------------ tiny scene factories


def street(seed: int = 1) -> Image:
    """A textured static scene (grey levels 60..200), so that shifts and noise matter."""
    rng = np.random.default_rng(seed)
    coarse = rng.normal(0.0, 1.0, (H // 8, W // 8)).astype(np.float32)
    fine = cv2.resize(coarse, (W, H), interpolation=cv2.INTER_CUBIC)
    scaled = (fine - fine.min()) / (fine.max() - fine.min()) * 140 + 60
    return cv2.cvtColor(scaled.astype(np.uint8), cv2.COLOR_GRAY2BGR)


def with_person(scene: Image, x: float, y: int = 200) -> Image:
    """A dark 36x90 px figure (a person at a few tens of metres) with its left edge at x."""
    image = scene.copy()
    left, right = max(0, round(x)), min(W, round(x) + 36)
    if left < right:
        image[y : y + 90, left:right] = (40, 50, 60)
    return image


def noisy(image: Image, rng: np.random.Generator, sigma: float) -> Image:
    noise = rng.standard_normal(image.shape, dtype=np.float32) * np.float32(sigma)
    return np.clip(image + noise, 0, 255).astype(np.uint8)


def frame_times(start: float, end: float, fps: float = FPS) -> list[float]:
    first = round(start * fps)
    return [i / fps for i in range(first, round(end * fps))]


def run(gate: MotionGate, frames: Iterable[tuple[float, Image]]) -> Decided:
    return [(t, gate.decide(image, t)) for t, image in frames]


def published(decided: Decided) -> list[float]:
    return [t for t, d in decided if d.publish]


def reasons(decided: Decided) -> set[str]:
    return {d.reason for _, d in decided}


def still(scene: Image, times: list[float]) -> list[tuple[float, Image]]:
    return [(t, scene) for t in times]


# ------------------------------------------------------------------ synthetic scenes


def test_static_scene_publishes_only_the_periodic_static_check() -> None:
    decided = run(MotionGate(MotionSettings()), still(street(), frame_times(0, 20)))
    assert reasons(decided) == {"static_check", "skip"}
    assert published(decided) == [0.0, 2.0, 4.0, 6.0, 8.0, 10.0, 12.0, 14.0, 16.0, 18.0]


@pytest.mark.parametrize("interval", [1.0, 2.0, 5.0])
def test_static_interval_is_configurable(interval: float) -> None:
    gate = MotionGate(MotionSettings(static_interval_s=interval))
    times = published(run(gate, still(street(), frame_times(0, 20))))
    assert times == [i * interval for i in range(round(20 / interval))]


def test_person_walking_through_is_published_then_held_then_skipped() -> None:
    scene = street()
    speed = 120.0  # px/s: a brisk walk across a 640 px detect frame at this scale
    enters, leaves = 4.0, 4.0 + (W + 36) / speed
    frames = [
        (t, with_person(scene, -36 + speed * (t - enters)) if enters <= t < leaves else scene)
        for t in frame_times(0, 20)
    ]
    decided = run(MotionGate(MotionSettings()), frames)
    in_view = [d for t, d in decided if enters + 0.3 <= t <= leaves - 0.3]
    assert len(in_view) > 20 and all(d.publish and d.reason == "motion" for d in in_view)
    last_motion = max(t for t, d in decided if d.reason == "motion")
    # A walker leaves no trail in a background that learns over seconds: motion ends as the
    # figure leaves the frame; then hold_s = 3 s, then skips.
    assert leaves - 0.5 <= last_motion < leaves
    after = [(t, d.reason) for t, d in decided if t > last_motion]
    assert [t for t, r in after if r == "hold"] == pytest.approx(
        [t for t, _ in after if t <= last_motion + 3.0 + 1e-9]
    )
    first_skip = min(t for t, r in after if r == "skip")
    assert first_skip == pytest.approx(last_motion + 3.2)
    assert "motion" not in {r for t, r in after}


def test_person_who_stops_is_published_until_absorbed_then_held_then_static_checks() -> None:
    scene = street()
    stops_at, x_stop = 6.0, 300.0

    def frame(t: float) -> Image:
        if t < 4.0:
            return scene
        return with_person(scene, x_stop - 60.0 * max(0.0, stops_at - t))

    decided = run(MotionGate(MotionSettings()), [(t, frame(t)) for t in frame_times(0, 40)])
    moving = [d for t, d in decided if 4.2 <= t <= stops_at]
    assert all(d.reason == "motion" for d in moving)
    last_motion = max(t for t, d in decided if d.reason == "motion")
    # Standing still, they differ from the learning background for ~2 x background_s (5 s).
    assert stops_at + 5.0 < last_motion < stops_at + 15.0
    holds = [t for t, d in decided if d.reason == "hold"]
    assert holds and min(holds) > last_motion and max(holds) <= last_motion + 3.0 + 1e-9
    later = [(t, d.reason) for t, d in decided if t > last_motion + 3.0 + 1e-9]
    assert {r for _, r in later} == {"skip", "static_check"}
    checks = [t for t, r in later if r == "static_check"]
    assert [b - a for a, b in itertools.pairwise(checks)] == pytest.approx(
        [2.0] * (len(checks) - 1)
    )


@pytest.mark.parametrize("sigma", [4.0, 10.0, 20.0])
def test_sensor_noise_alone_is_skipped(sigma: float) -> None:
    rng = np.random.default_rng(7)
    scene = street()
    frames = [(t, noisy(scene, rng, sigma)) for t in frame_times(0, 20)]
    decided = run(MotionGate(MotionSettings()), frames)
    assert reasons(decided) == {"static_check", "skip"}
    assert len(published(decided)) == 10


def test_slow_lighting_ramp_is_skipped() -> None:
    # A minute of dawn: the whole scene brightens from 40% to 100%, and the left side gains
    # up to 40 more grey levels than the right (the sun coming round a building).
    scene = street().astype(np.float32)
    gradient = np.linspace(40.0, 0.0, W, dtype=np.float32)[None, :, None]
    frames = []
    for t in frame_times(0, 60):
        share = t / 60.0
        lit = scene * (0.4 + 0.6 * share) + gradient * share
        frames.append((t, np.clip(lit, 0, 255).astype(np.uint8)))
    decided = run(MotionGate(MotionSettings()), frames)
    assert reasons(decided) == {"static_check", "skip"}


def test_auto_exposure_step_is_not_motion() -> None:
    scene = street()
    brighter = np.clip(scene.astype(np.float32) * 1.25, 0, 255).astype(np.uint8)
    frames = [(t, scene if t < 5.0 else brighter) for t in frame_times(0, 10)]
    decided = run(MotionGate(MotionSettings()), frames)
    assert "motion" not in reasons(decided)


def test_person_under_noise_and_lighting_change_is_still_seen() -> None:
    rng = np.random.default_rng(3)
    scene = street()
    frames = []
    for t in frame_times(0, 10):
        image = with_person(scene, 60.0 * t) if t >= 5.0 else scene
        image = np.clip(image.astype(np.float32) * (0.8 + 0.02 * t), 0, 255).astype(np.uint8)
        frames.append((t, noisy(image, rng, 10.0)))
    decided = run(MotionGate(MotionSettings()), frames)
    assert all(d.reason == "motion" for t, d in decided if t >= 5.2)


# ------------------------------------------------------------------ time, not frames


@pytest.mark.parametrize("fps", [2.0, 5.0, 10.0, 25.0])
def test_timers_follow_frame_times_not_frame_counts(fps: float) -> None:
    scene = street()
    # Someone crosses between 2 s and 4 s; the rest of the minute is still.
    frames = [
        (t, with_person(scene, 300.0 * (t - 2.0)) if 2.0 <= t < 4.0 else scene)
        for t in frame_times(0, 20, fps)
    ]
    decided = run(MotionGate(MotionSettings()), frames)
    last_motion = max(t for t, d in decided if d.reason == "motion")
    last_hold = max(t for t, d in decided if d.reason == "hold")
    assert 4.0 - 1 / fps - 1e-9 <= last_motion < 4.0
    # hold_s is 3 s of capture time whatever the frame rate.
    assert last_motion + 3.0 - 1 / fps < last_hold <= last_motion + 3.0 + 1e-9
    checks = [t for t, d in decided if d.reason == "static_check"]
    assert [b - a for a, b in itertools.pairwise(checks[1:])] == pytest.approx(
        [2.0] * (len(checks) - 2), abs=1 / fps
    )


def test_a_live_clock_far_from_zero_works_the_same() -> None:
    # Live streams are stamped with a monotonic clock: large, arbitrary offsets.
    offset = 873_421.117
    times = [offset + t for t in frame_times(0, 10)]
    decided = run(MotionGate(MotionSettings()), still(street(), times))
    assert [t - offset for t in published(decided)] == pytest.approx([0.0, 2.0, 4.0, 6.0, 8.0])


def test_time_going_backwards_starts_over() -> None:
    gate = MotionGate(MotionSettings())
    scene = street()
    run(gate, still(scene, frame_times(0, 10)))
    # The file looped: the first frame of the new pass is shown to the detector again.
    assert gate.decide(scene, 0.0).reason == "static_check"
    assert gate.decide(scene, 0.2).reason == "skip"


def test_reset_publishes_the_next_frame() -> None:
    gate = MotionGate(MotionSettings())
    scene = street()
    run(gate, still(scene, frame_times(0, 1)))
    gate.reset()
    assert gate.decide(scene, 1.0).reason == "static_check"


# ------------------------------------------------------------------ options


def test_presence_hint_keeps_a_still_person_published() -> None:
    present: Callable[[float], bool] = lambda t: 4.0 <= t < 8.0  # noqa: E731
    gate = MotionGate(MotionSettings(), presence=present)
    decided = run(gate, still(street(), frame_times(0, 12)))
    assert [t for t, d in decided if d.reason == "presence"] == frame_times(4, 8)
    assert reasons(decided) == {"static_check", "presence", "skip"}


def test_disabled_gate_publishes_every_frame() -> None:
    decided = run(MotionGate(MotionSettings(enabled=False)), still(street(), frame_times(0, 5)))
    assert all(d.publish and d.reason == "disabled" for _, d in decided)


@pytest.mark.parametrize(
    ("threshold", "min_area", "expected"),
    [
        (20.0, 0.003, "motion"),  # defaults: a 36x90 px figure is about 1.4% of the frame
        (20.0, 0.05, "skip"),  # asks for 5% of the frame
        (200.0, 0.003, "skip"),  # asks for a change no figure here makes
    ],
)
def test_threshold_and_min_area(threshold: float, min_area: float, expected: str) -> None:
    gate = MotionGate(MotionSettings(threshold=threshold, min_area=min_area))
    scene = street()
    gate.decide(scene, 0.0)
    assert gate.decide(with_person(scene, 300.0), 0.2).reason == expected


@pytest.mark.parametrize(
    ("shape", "expected"),
    [
        ((360, 640, 3), (90, 160)),  # the detect substream
        ((432, 768, 3), (54, 96)),  # the demo clip
        ((1080, 1920, 3), (67, 120)),  # a main stream
        ((480, 640), (120, 160)),  # already grey
        ((50, 100, 3), (50, 100)),  # too small to halve
    ],
)
def test_small_gray_halves_to_a_small_grey_frame(
    shape: tuple[int, ...], expected: tuple[int, int]
) -> None:
    assert small_gray(np.zeros(shape, np.uint8)).shape == expected


def test_small_gray_rejects_an_empty_image() -> None:
    with pytest.raises(ValueError, match="non-empty image"):
        small_gray(np.zeros((0, 0, 3), np.uint8))


def test_camera_motion_keys_override_the_ingest_wide_ones(tmp_path: Path) -> None:
    settings = settings_from_mapping(
        {
            "ingest": {"motion": {"threshold": 30, "hold_s": 5}},
            "cameras": [
                {"id": "plain", "url": "a.mp4"},
                {"id": "tuned", "url": "b.mp4", "motion": {"hold_s": 1, "static_interval_s": 4}},
                {"id": "off", "url": "c.mp4", "motion": {"enabled": False}},
            ],
        },
        tmp_path,
    )
    default = settings.ingest.motion
    plain, tuned, off = (c.motion_gate(default) for c in settings.cameras)
    assert (plain.threshold, plain.hold_s, plain.static_interval_s) == (30, 5, 2)
    assert (tuned.threshold, tuned.hold_s, tuned.static_interval_s) == (30, 1, 4)
    assert not off.enabled and off.threshold == 30


# ------------------------------------------------------------------ the shared clip


@pytest.fixture(scope="module")
def clip_decisions(shared_data: Path) -> list[tuple[float, GateDecision, float]]:
    """(time, decision, frame-to-frame change) for the whole clip sampled at 5 fps."""
    capture = cv2.VideoCapture(str(SAMPLE_CLIP))
    sampler = FpsSampler(FPS)
    gate = MotionGate(MotionSettings())
    rows: list[tuple[float, GateDecision, float]] = []
    previous: np.ndarray | None = None
    try:
        while capture.grab():
            t = capture.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
            if not sampler.take(t):
                continue
            ok, image = capture.retrieve()
            assert ok
            # An independent yardstick: share of a 96 px grey thumbnail that changed by more
            # than 25 levels since the previous sampled frame (0.2 s ago).
            thumb = cv2.cvtColor(cv2.resize(image, (96, 54)), cv2.COLOR_BGR2GRAY).astype(int)
            moved = 0.0 if previous is None else float(np.mean(np.abs(thumb - previous) > 25))
            previous = thumb
            rows.append((t, gate.decide(image, t), moved))
    finally:
        capture.release()
    assert len(rows) > 600  # 139 s at 5 fps
    return rows


def test_clip_empty_table_at_the_start_gets_only_static_checks(
    clip_decisions: list[tuple[float, GateDecision, float]],
) -> None:
    # Nobody is in view for the first 5.5 s.
    start = [(t, d) for t, d, _ in clip_decisions if t < 5.5]
    assert len(start) >= 26
    assert [round(t, 1) for t in published(start)] == [0.0, 2.0, 4.0]


def test_clip_every_frame_with_a_walking_person_is_published(
    clip_decisions: list[tuple[float, GateDecision, float]],
) -> None:
    walking = [(t, d) for t, d, moved in clip_decisions if moved >= 0.01]
    assert len(walking) > 100
    missed = [round(t, 1) for t, d in walking if not d.publish]
    assert missed == []
    # The first person walks in at about 6 s and is published from the first frame on.
    first = min(t for t, d, _ in clip_decisions if d.reason == "motion")
    assert 5.5 <= first <= 6.5


def test_clip_gate_skips_when_the_scene_is_still(
    clip_decisions: list[tuple[float, GateDecision, float]],
) -> None:
    decided = [(t, d) for t, d, _ in clip_decisions]
    skipped = [t for t, d in decided if d.reason == "skip"]
    # The empty start and the long still stretch before the 118 s arrival.
    assert any(t < 6.0 for t in skipped) and any(105.0 < t < 118.0 for t in skipped)
    assert len(skipped) >= 0.05 * len(decided)
    # Skips never run longer than the static check interval.
    for a, b in itertools.pairwise(published(decided)):
        assert b - a <= 2.0 + 1e-3


# ------------------------------------------------------------------ the camera loop


class FakeFuture:
    def add_errback(self, callback: Callable[[BaseException], None]) -> FakeFuture:
        return self


class FakeProducer:
    """Stands in for KafkaProducer: records what would have been sent, opens no socket."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes]] = []
        self.lock = threading.Lock()

    def send(self, topic: str, *, key: bytes, value: bytes) -> FakeFuture:
        with self.lock:
            self.sent.append((topic, value))
        return FakeFuture()

    def flush(self, timeout: float | None = None) -> None:
        return None


def test_camera_loop_gates_the_empty_table_and_its_counters_add_up(
    shared_data: Path, tmp_path: Path
) -> None:
    settings = settings_from_mapping(
        {"cameras": [{"id": "demo-table", "url": str(SAMPLE_CLIP), "fps": 5}]}, tmp_path
    )
    topics = Topics(settings.kafka)
    producer = FakeProducer()
    ingest = CameraIngest(
        settings.cameras[0],
        settings.ingest,
        producer,  # type: ignore[arg-type]
        topics,
        max_message_bytes=settings.kafka.max_message_bytes,
        realtime=False,
        max_frames=3,
    )
    stats = ingest.run(threading.Event())

    # 0, 2 and 4 s of the empty table: three static checks, the rest skipped.
    assert stats.published == 3
    assert stats.decoded == stats.published + stats.skipped
    assert stats.skipped == stats.sampled_out + stats.gated_out + stats.dropped
    assert stats.gate["static_check"] == 3 and stats.gate["skip"] == stats.gated_out >= 15
    assert stats.sampled_out >= 15  # the 10 fps clip sampled at 5 fps
    assert "static_check 3" in stats.gate_summary()

    frames = [v for topic, v in producer.sent if topic == topics.frames]
    assert len(frames) == 3
    beats = [
        decode_as(v, CameraHeartbeat) for topic, v in producer.sent if topic == topics.camera_health
    ]
    last = beats[-1]
    assert last.status == "ended"
    assert (last.frames_decoded, last.frames_published, last.frames_skipped) == (
        stats.decoded,
        3,
        stats.skipped,
    )
    assert last.frames_decoded == last.frames_published + last.frames_skipped
