"""Run the dumping detector on a video file, as fast as it goes: `pantau detect-file`.

The same steps as a camera through Kafka: frames sampled at the camera's detect fps on the
file's own clock, the camera's motion gate, resized and JPEG-encoded as the camera ingest
publishes them (so the detector sees the same frames and pixels), YOLO, tracking, the
static-object model and the dumping state machine, the evidence pack. Only the clock differs
from a live camera: the video's position replaces the wall clock, so an hour of footage takes
as long as the machine needs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
from tqdm import tqdm

from detectors.backends import Backend
from detectors.camera import CameraPipeline
from detectors.detections import Detections, kept_classes
from detectors.dumping import DumpingRecord
from detectors.events import EventClock
from detectors.view import ViewChange
from pantau.imaging import encode_jpeg
from pantau.messages import CameraView, DumpingEvent
from pantau.motion import MotionGate
from pantau.sampling import FileClock, FpsSampler
from pantau.settings import CameraSettings, Settings

log = logging.getLogger(__name__)

Image = npt.NDArray[np.uint8]


DetectFn = Callable[[Sequence[Image]], list[Detections]]


class FileError(RuntimeError):
    """The video cannot be read."""


@dataclass
class FileStats:
    frames_read: int = 0
    frames_gated: int = 0
    """Sampled frames the motion gate held back, as the camera would have."""
    frames_detected: int = 0
    video_s: float = 0.0
    events: int = 0
    by_phase: dict[str, int] = field(default_factory=dict)
    view_changes: int = 0
    failures: int = 0
    """Frames the camera's pipeline failed on (logged; it started over)."""


def sampled_frames(
    path: Path, fps: float, *, progress: bool = False
) -> Iterator[tuple[float, Image]]:
    """(seconds into the file, BGR image) at most `fps` per second of video."""
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise FileError(f"cannot open video {path}")
    total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) or None
    bar = tqdm(total=total, desc=path.name, unit="frame", disable=not progress, leave=False)
    sampler = FpsSampler(fps)
    clock = FileClock(capture.get(cv2.CAP_PROP_FPS), name=path.name)
    try:
        while True:
            if not capture.grab():
                return
            bar.update(1)
            t = clock.time(float(capture.get(cv2.CAP_PROP_POS_MSEC)) / 1000.0)
            if not sampler.take(t):
                continue
            ok, image = capture.retrieve()
            if not ok or image is None:
                # A damaged frame in a readable file is a gap, as a camera would have one.
                log.warning("%s: the frame at %.2f s does not decode; skipped", path.name, t)
                continue
            yield t, np.asarray(image, dtype=np.uint8)
    finally:
        bar.close()
        capture.release()


def as_published(image: Image, max_width: int, quality: int) -> tuple[Image, bytes]:
    """The frame as the detector receives it from the camera ingest: decoded, and as sent."""
    jpeg, _, _ = encode_jpeg(image, max_width, quality)
    decoded = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    return np.asarray(decoded, np.uint8), jpeg


class FileRun:
    """One camera's pipeline over one file; `events()` yields messages as they happen."""

    def __init__(
        self,
        camera: CameraSettings,
        *,
        settings: Settings,
        backend: Backend,
        origin: datetime,
        dwell_s: float | None = None,
        evidence: bool = True,
    ) -> None:
        detector = settings.detector
        if detector is None:
            raise FileError("no detector configured (settings: detector)")
        self.camera = camera
        self._detect: DetectFn = backend.detect
        self._batch = detector.max_batch
        self.pipeline = CameraPipeline(
            camera,
            tracker=detector.tracker,
            dumping=settings.dumping,
            names=backend.names,
            clock=EventClock(origin),
            dwell_s=dwell_s,
            evidence=evidence,
            classes=kept_classes(detector, settings.dumping, backend.names),
        )
        self.gate = MotionGate(camera.motion_gate(settings.ingest.motion))
        self.stats = FileStats()
        # Every step the dumping logic took (for evaluation); a file run is finite, unlike
        # the Kafka service, which keeps none.
        self.records: list[DumpingRecord] = []
        # Video pixels per detect pixel (the frames are resized as the camera ingest does).
        self.scale = 1.0
        # The camera's view changes (moved, covered, blurred), on the file's clock.
        self.view_changes: list[ViewChange] = []

    def events(self, path: Path, *, progress: bool = False) -> Iterator[DumpingEvent | CameraView]:
        """The camera's messages as they happen: dumping events, and its view changes."""
        pending: list[tuple[float, Image, bytes]] = []

        def run(batch: list[tuple[float, Image, bytes]]) -> Iterator[DumpingEvent | CameraView]:
            found = self._detect([image for _, image, _ in batch])
            for (t, image, jpeg), detections in zip(batch, found, strict=True):
                self.stats.frames_detected += 1
                yield from self._frame(t, image, detections, jpeg)

        for t, raw in sampled_frames(path, self.camera.fps, progress=progress):
            self.stats.frames_read += 1
            self.stats.video_s = t
            if not self.gate.decide(raw, t).publish:
                self.stats.frames_gated += 1
                continue
            image, jpeg = as_published(raw, self.camera.max_width, self.camera.jpeg_quality)
            self.scale = raw.shape[1] / image.shape[1]
            pending.append((t, image, jpeg))
            if len(pending) >= self._batch:
                yield from run(pending)
                pending = []
        if pending:
            yield from run(pending)
        yield from self._count(self.pipeline.flush())

    def _frame(
        self, t: float, image: Image, detections: Detections, jpeg: bytes
    ) -> Iterator[DumpingEvent | CameraView]:
        """One frame through the camera's pipeline. A frame the pipeline fails on costs
        only itself, as in `pantau detect`: the failure is logged and the pipeline starts
        over; the run goes on."""
        try:
            _, records, messages = self.pipeline.frame(t, image, detections, jpeg)
        except Exception:
            self.stats.failures += 1
            log.exception(
                "camera %s: the pipeline failed on the frame at %.3f s; it starts over",
                self.camera.id, t,
            )  # fmt: skip
            messages = self.pipeline.restart(t)
            records = []
        self.records.extend(records)
        yield from self._count(messages)
        changes = self.pipeline.take_view_changes()
        self.view_changes.extend(changes)
        for view in self.pipeline.view_messages(changes):
            self.stats.view_changes += 1
            yield view

    def _count(self, messages: list[DumpingEvent]) -> Iterator[DumpingEvent]:
        for message in messages:
            self.stats.events += 1
            self.stats.by_phase[message.phase] = self.stats.by_phase.get(message.phase, 0) + 1
            yield message
