"""Camera ingest: capture (RTSP, HTTP or a file) → sample → motion gate → resize → JPEG → Kafka.

One `CameraIngest` per camera, each in its own thread. Reconnects with back-off, publishes a
heartbeat every `ingest.heartbeat_interval_s`, and never logs a URL with its credentials.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Literal

# FFmpeg and OpenCV print their own warnings straight to stderr, past our credential scrubbing;
# keep them quiet unless an operator asks (set OPENCV_FFMPEG_LOGLEVEL / OPENCV_LOG_LEVEL).
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")

import cv2
import numpy as np
from kafka import KafkaProducer
from kafka.errors import KafkaTimeoutError

from ingest.sampling import Backoff, FpsSampler
from pantau.codec import encode
from pantau.ids import SeqCounter, utcnow, uuid7
from pantau.imaging import encode_jpeg
from pantau.kafka import publish
from pantau.logs import redact_url
from pantau.messages import CameraHeartbeat, Frame
from pantau.motion import MotionGate
from pantau.sampling import FileClock
from pantau.settings import CameraSettings, IngestSettings
from pantau.topics import Topics

log = logging.getLogger(__name__)

# OpenCV's FFmpeg backend otherwise waits 30 s on a dead camera before giving up.
_OPEN_TIMEOUT_MS = 10_000
_READ_TIMEOUT_MS = 10_000
# No decoded frame for this long while "online" means the stream stalled.
_STALL_S = 10.0
# Header room kept below the broker's message limit.
_HEADER_ROOM = 4096


class CameraError(RuntimeError):
    """The camera could not be opened or stopped delivering frames (message is URL-safe)."""


def is_file_source(url: str) -> bool:
    return "://" not in url or url.startswith("file://")


class VideoSource:
    """An OpenCV capture with a clock: the file's position, or wall-clock for live streams."""

    def __init__(self, url: str, *, realtime: bool, start_s: float = 0.0) -> None:
        self._url = url.removeprefix("file://")
        self.is_file = is_file_source(url)
        self._realtime = realtime
        self._start_s = start_s
        self._capture: cv2.VideoCapture | None = None
        self._wall0 = 0.0
        self._pos0 = 0.0
        self._clock: FileClock | None = None

    @property
    def safe_name(self) -> str:
        return redact_url(self._url)

    def open(self) -> None:
        self.close()
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, _OPEN_TIMEOUT_MS]
        params += [cv2.CAP_PROP_READ_TIMEOUT_MSEC, _READ_TIMEOUT_MS]
        capture = cv2.VideoCapture(self._url, cv2.CAP_FFMPEG, params)
        if not capture.isOpened():
            capture.release()
            raise CameraError(f"cannot open {self.safe_name}")
        if self.is_file and self._start_s > 0:
            capture.set(cv2.CAP_PROP_POS_MSEC, self._start_s * 1000.0)
        self._capture = capture
        self._wall0 = time.monotonic()
        self._pos0 = self._start_s if self.is_file else 0.0
        if self.is_file:
            self._clock = FileClock(capture.get(cv2.CAP_PROP_FPS), name=self.safe_name)

    def grab(self) -> float | None:
        """Advance one frame; returns its time in seconds, or None at the end of a file."""
        if self._capture is None:
            raise CameraError("capture is not open")
        started = time.monotonic()
        if not self._capture.grab():
            if self.is_file:
                return None
            raise CameraError(f"no frame from {self.safe_name} (stream ended or timed out)")
        if not self.is_file:
            now = time.monotonic()
            if now - started > _STALL_S:
                # A frozen camera keeps the connection open; after a read timeout the decoder
                # hands out a frame it had buffered, which is old. Reconnect instead.
                raise CameraError(f"{self.safe_name} stalled for {now - started:.0f} s")
            return now
        assert self._clock is not None
        t = self._clock.time(float(self._capture.get(cv2.CAP_PROP_POS_MSEC)) / 1000.0)
        if self._realtime:
            # Play a file at its own pace, as a camera would deliver it.
            ahead = (t - self._pos0) - (time.monotonic() - self._wall0)
            if ahead > 0:
                time.sleep(ahead)
        return t

    def retrieve(self) -> np.ndarray:
        if self._capture is None:
            raise CameraError("capture is not open")
        ok, image = self._capture.retrieve()
        if not ok or image is None:
            raise CameraError(f"could not decode a frame from {self.safe_name}")
        return np.asarray(image)

    def close(self) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None


@dataclass
class CameraStats:
    """Every decoded frame ends up published or skipped: decoded == published + skipped."""

    decoded: int = 0
    published: int = 0
    skipped: int = 0
    # The parts of `skipped`: above the camera's fps, judged static by the motion gate, or
    # dropped at send time (too large, producer buffer full).
    sampled_out: int = 0
    gated_out: int = 0
    dropped: int = 0
    gate: Counter[str] = field(default_factory=Counter)
    """Motion gate decisions by reason (motion, hold, static_check, skip, ...)."""
    reconnects: int = 0
    failed_sends: int = 0
    status: Literal["connecting", "online", "reconnecting", "stalled", "ended"] = "connecting"
    last_error: str | None = None
    last_decode: float = field(default_factory=time.monotonic)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def gate_summary(self) -> str:
        with self.lock:
            counts = sorted(self.gate.items())
        return ", ".join(f"{reason} {count}" for reason, count in counts) or "no frames"


class CameraIngest:
    """Runs one camera until `stop` is set, the file ends (unless looping) or `max_frames`."""

    def __init__(
        self,
        camera: CameraSettings,
        ingest: IngestSettings,
        producer: KafkaProducer,
        topics: Topics,
        *,
        max_message_bytes: int,
        realtime: bool = True,
        loop: bool = False,
        max_frames: int | None = None,
        start_s: float = 0.0,
    ) -> None:
        self.camera = camera
        self._ingest = ingest
        self._producer = producer
        self._topics = topics
        self._max_bytes = max_message_bytes - _HEADER_ROOM
        self._loop = loop
        self._max_frames = max_frames
        self.source = VideoSource(camera.url.get_secret_value(), realtime=realtime, start_s=start_s)
        self.stats = CameraStats()
        self.gate = MotionGate(camera.motion_gate(ingest.motion))
        self._frame_seq = SeqCounter()
        self._beat_seq = SeqCounter()
        self._last_beat_published = 0
        self._last_beat_time = time.monotonic()

    # ------------------------------------------------------------------ main loop

    def run(self, stop: threading.Event) -> CameraStats:
        beats = threading.Thread(
            target=self._heartbeat_loop,
            args=(stop,),
            name=f"heartbeat-{self.camera.id}",
            daemon=True,
        )
        beats.start()
        backoff = Backoff(self._ingest.reconnect_initial_s, self._ingest.reconnect_max_s)
        try:
            while not stop.is_set():
                try:
                    self.source.open()
                except CameraError as exc:
                    self._set_status("reconnecting", str(exc))
                    with self.stats.lock:
                        self.stats.reconnects += 1
                    delay = backoff.next_delay()
                    log.warning("camera %s: %s; retrying in %.1f s", self.camera.id, exc, delay)
                    stop.wait(delay)
                    continue
                log.info("camera %s: opened %s", self.camera.id, self.source.safe_name)
                backoff.reset()
                self._set_status("online", None)
                try:
                    finished = self._stream(stop)
                except CameraError as exc:
                    self._set_status("reconnecting", str(exc))
                    with self.stats.lock:
                        self.stats.reconnects += 1
                    log.warning("camera %s: %s; reconnecting", self.camera.id, exc)
                    stop.wait(backoff.next_delay())
                    continue
                if finished:
                    break
        finally:
            self.source.close()
            self._set_status("ended", self.stats.last_error)
            self._send_heartbeat()
            self._producer.flush(timeout=30)
        log.info(
            "camera %s: done — decoded %d, published %d, skipped %d (fps %d, motion gate %d, "
            "dropped %d), reconnects %d; gate: %s",
            self.camera.id,
            self.stats.decoded,
            self.stats.published,
            self.stats.skipped,
            self.stats.sampled_out,
            self.stats.gated_out,
            self.stats.dropped,
            self.stats.reconnects,
            self.stats.gate_summary(),
        )
        return self.stats

    def _stream(self, stop: threading.Event) -> bool:
        """Publish sampled frames; True when the work is done, False to reopen."""
        sampler = FpsSampler(self.camera.fps)
        # After a reconnect the scene may have changed: show the detector the first frame.
        self.gate.reset()
        while not stop.is_set():
            t = self.source.grab()
            if t is None:
                if self._loop:
                    self.source.open()
                    continue
                return True
            with self.stats.lock:
                self.stats.last_decode = time.monotonic()
                if self.stats.status == "stalled":
                    self.stats.status = "online"
            if not sampler.take(t):
                self._count("sampled_out")
                continue
            image = self.source.retrieve()
            decision = self.gate.decide(image, t)
            if not decision.publish:
                self._count("gated_out", decision.reason)
                continue
            sent = self._publish_frame(image, t)
            self._count("published" if sent else "dropped", decision.reason)
            if self._max_frames is not None and self.stats.published >= self._max_frames:
                return True
        return True

    def _count(
        self,
        outcome: Literal["published", "sampled_out", "gated_out", "dropped"],
        gate_reason: str | None = None,
    ) -> None:
        # One lock for the frame and its outcome, so a heartbeat never sees a frame counted as
        # decoded but not yet as published or skipped.
        with self.stats.lock:
            self.stats.decoded += 1
            if gate_reason is not None:
                self.stats.gate[gate_reason] += 1
            if outcome == "published":
                self.stats.published += 1
                return
            self.stats.skipped += 1
            if outcome == "sampled_out":
                self.stats.sampled_out += 1
            elif outcome == "gated_out":
                self.stats.gated_out += 1
            else:
                self.stats.dropped += 1

    def _publish_frame(self, image: np.ndarray, t: float) -> bool:
        """Encode and send one frame; False when it was dropped instead."""
        captured = utcnow()
        quality = self.camera.jpeg_quality
        jpeg, width, height = encode_jpeg(image, self.camera.max_width, quality)
        while len(jpeg) > self._max_bytes and quality > 40:
            quality -= 15
            jpeg, width, height = encode_jpeg(image, self.camera.max_width, quality)
        if len(jpeg) > self._max_bytes:
            log.error(
                "camera %s: frame of %d bytes exceeds the %d-byte message limit; skipped",
                self.camera.id,
                len(jpeg),
                self._max_bytes,
            )
            return False
        frame = Frame(
            id=uuid7(),
            ts_capture=captured,
            seq=next(self._frame_seq),
            camera_id=self.camera.id,
            width=width,
            height=height,
            source_pos_ms=t * 1000.0 if self.source.is_file else None,
            ts_ingest=utcnow(),
            jpeg=jpeg,
        )
        try:
            future = self._producer.send(self._topics.frames, key=frame.key, value=encode(frame))
        except KafkaTimeoutError:
            # The producer's buffer is full (broker unreachable): a stale frame is worth
            # nothing to a detector, so drop it and count it rather than stall the camera.
            return False
        future.add_errback(self._send_failed)
        return True

    def _send_failed(self, exc: BaseException) -> None:
        with self.stats.lock:
            self.stats.failed_sends += 1
            self.stats.last_error = f"publish failed: {type(exc).__name__}"
        log.error("camera %s: publishing a frame failed: %s", self.camera.id, exc)

    # ------------------------------------------------------------------ heartbeats

    def _set_status(
        self,
        status: Literal["connecting", "online", "reconnecting", "stalled", "ended"],
        error: str | None,
    ) -> None:
        with self.stats.lock:
            self.stats.status = status
            if error is not None:
                self.stats.last_error = error

    def _heartbeat_loop(self, stop: threading.Event) -> None:
        interval = self._ingest.heartbeat_interval_s
        while not stop.wait(interval):
            if self.stats.status == "ended":
                return
            self._send_heartbeat()

    def _send_heartbeat(self) -> None:
        now = time.monotonic()
        with self.stats.lock:
            if self.stats.status == "online" and now - self.stats.last_decode > _STALL_S:
                self.stats.status = "stalled"
            elapsed = max(now - self._last_beat_time, 1e-6)
            fps = (self.stats.published - self._last_beat_published) / elapsed
            self._last_beat_published = self.stats.published
            self._last_beat_time = now
            beat = CameraHeartbeat(
                id=uuid7(),
                ts_capture=utcnow(),
                seq=next(self._beat_seq),
                camera_id=self.camera.id,
                status=self.stats.status,
                fps=round(fps, 3),
                frames_decoded=self.stats.decoded,
                frames_published=self.stats.published,
                frames_skipped=self.stats.skipped,
                reconnects=self.stats.reconnects,
                last_error=self.stats.last_error,
            )
        try:
            publish(self._producer, self._topics.camera_health, beat)
        except KafkaTimeoutError:
            log.warning("camera %s: heartbeat not sent: producer buffer full", self.camera.id)
