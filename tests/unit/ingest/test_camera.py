"""The camera ingest's decisions, without a camera or a broker: it keeps trying an
unreachable camera with growing, capped waits, starts over after a dropped stream, publishes
what it reads, and says so in its heartbeats."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pytest

from ingest.camera import CameraError, CameraIngest
from pantau.codec import decode
from pantau.messages import CameraHeartbeat, Frame
from pantau.settings import CameraSettings, IngestSettings, KafkaSettings
from pantau.topics import Topics

SECRET_URL = "rtsp://admin:hunter2@10.0.0.9/stream1"


class _Future:
    def add_errback(self, _callback: Any) -> None:
        pass


class _Producer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes]] = []
        self.lock = threading.Lock()

    def send(self, topic: str, *, key: bytes, value: bytes) -> _Future:
        with self.lock:
            self.sent.append((topic, value))
        return _Future()

    def flush(self, timeout: float | None = None) -> None:
        pass


class _Source:
    """A camera that refuses `refusals` connections, then streams `frames` frames and drops
    the stream (`drop_after`) or ends (a file)."""

    def __init__(self, refusals: list[int], frames: int, *, drops: int = 0) -> None:
        self.refusals = list(refusals)  # per connection round: how many opens fail first
        self.frames = frames
        self.drops = drops
        self.is_file = True
        self.safe_name = "rtsp://10.0.0.9/stream1"
        self.opens = 0
        self._t = 0.0
        self._left = 0

    def open(self) -> None:
        self.opens += 1
        if self.refusals and self.refusals[0] > 0:
            self.refusals[0] -= 1
            raise CameraError(f"cannot open {self.safe_name}")
        if self.refusals:
            self.refusals.pop(0)
        self._left = self.frames

    def grab(self) -> float | None:
        if self._left == 0:
            if self.drops > 0:
                self.drops -= 1
                raise CameraError(f"no frame from {self.safe_name}")
            return None
        self._left -= 1
        self._t += 0.2
        return self._t

    def retrieve(self) -> np.ndarray:
        # A different picture each time: the motion gate lets each through.
        rng = np.random.default_rng(int(self._t * 10))
        return rng.integers(0, 255, (72, 128, 3), dtype=np.uint8)

    def close(self) -> None:
        pass


class _Stop(threading.Event):
    """Records the ingest's waits between attempts instead of sleeping them."""

    def __init__(self) -> None:
        super().__init__()
        self.waits: list[float] = []
        self._main = threading.current_thread()

    def wait(self, timeout: float | None = None) -> bool:
        if threading.current_thread() is self._main:
            assert timeout is not None
            self.waits.append(timeout)
            return self.is_set()
        return super().wait(timeout)


def _ingest(source: _Source, producer: _Producer) -> CameraIngest:
    camera = CameraSettings.model_validate({"id": "tps-gedeg", "url": SECRET_URL, "fps": 5})
    ingest = IngestSettings.model_validate(
        {"reconnect_initial_s": 1.0, "reconnect_max_s": 4.0, "heartbeat_interval_s": 60}
    )
    runner = CameraIngest(
        camera,
        ingest,
        producer,
        Topics(KafkaSettings()),
        max_message_bytes=1_000_000,
    )
    runner.source = source
    return runner


def _sent(producer: _Producer) -> tuple[list[Frame], list[CameraHeartbeat]]:
    messages = [decode(value) for _, value in producer.sent]
    return (
        [m for m in messages if isinstance(m, Frame)],
        [m for m in messages if isinstance(m, CameraHeartbeat)],
    )


def test_an_unreachable_camera_is_tried_again_with_growing_capped_waits(
    caplog: pytest.LogCaptureFixture,
) -> None:
    source, producer, stop = _Source([5], frames=3), _Producer(), _Stop()
    stats = _ingest(source, producer).run(stop)

    # Ceilings 1, 2, 4, 4, 4 s (doubling, capped at reconnect_max_s), each jittered to
    # between half the ceiling and the ceiling.
    assert len(stop.waits) == 5
    for wait, ceiling in zip(stop.waits, [1, 2, 4, 4, 4], strict=True):
        assert ceiling / 2 <= wait <= ceiling
    assert stats.reconnects == 5 and source.opens == 6
    frames, beats = _sent(producer)
    assert [f.camera_id for f in frames] == ["tps-gedeg"] * 3
    assert beats[-1].status == "ended" and beats[-1].frames_published == 3
    assert beats[-1].reconnects == 5
    # The camera's password is never logged.
    assert "hunter2" not in caplog.text


def test_after_a_dropped_stream_the_waits_start_small_again() -> None:
    # Two refusals, a stream of 2 frames that drops, one refusal, then 2 frames to the end.
    source, producer, stop = _Source([2, 1], frames=2, drops=1), _Producer(), _Stop()
    stats = _ingest(source, producer).run(stop)

    first, second, dropped, again = stop.waits
    assert 0.5 <= first <= 1 and 1 <= second <= 2
    # A stream that worked resets the back-off: the next waits are short again.
    assert 0.5 <= dropped <= 1 and 1 <= again <= 2
    assert stats.reconnects == 4
    frames, _ = _sent(producer)
    assert len(frames) == 4
    # Frame times run on across the reconnect, in order.
    positions = [f.source_pos_ms for f in frames]
    assert positions == sorted(positions)


def test_a_stop_while_waiting_ends_the_run_and_says_so() -> None:
    source, producer, stop = _Source([100], frames=0), _Producer(), _Stop()
    stop.set()
    stats = _ingest(source, producer).run(stop)
    assert source.opens == 0 and stats.reconnects == 0
    _, beats = _sent(producer)
    assert [b.status for b in beats] == ["ended"]
