"""The detector service: a Kafka consumer group on frames, YOLO, detections back to Kafka.

Offsets are committed only after the detections of every frame in the batch are
acknowledged by Kafka, so a crash re-detects some frames rather than losing them; the
detections carry a stable id derived from the frame id, and the sink stores them once.

Two batches are in hand at a time: while the network looks at one (on its own thread; the
inference runtimes release the GIL), the camera pipelines of the one before run here. One
process then uses both cores of a small machine instead of taking turns between them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
from kafka import KafkaProducer

from detectors.annotate import draw_boxes, write_png
from detectors.backends import Backend
from detectors.camera import CameraPipeline
from detectors.detections import Detections
from detectors.events import EventClock
from pantau import kafka
from pantau.codec import DecodeError, decode_as, encode
from pantau.consumers import BatchConsumer, Record, open_consumer
from pantau.failpoints import Failpoints
from pantau.ids import stable_id, utcnow
from pantau.kafka import DeadLetters
from pantau.messages import Detections as DetectionsMessage
from pantau.messages import Frame
from pantau.settings import CameraSettings, Settings
from pantau.topics import Topics

log = logging.getLogger(__name__)

_STATS_EVERY_S = 30.0


@dataclass
class DetectStats:
    frames: int = 0
    boxes: int = 0
    events: int = 0
    skipped: int = 0
    dead_letters: int = 0
    inference_s: float = 0.0
    started: float = field(default_factory=time.monotonic)
    by_label: dict[str, int] = field(default_factory=dict)

    def fps(self) -> float:
        return self.frames / max(time.monotonic() - self.started, 1e-6)


@dataclass
class _Batch:
    """Records polled together, their frames and images, and the network's answer to come."""

    records: list[Record]
    frames: list[Frame]
    images: list[npt.NDArray[np.uint8]]
    found: Future[tuple[list[Detections], float]] | None


class DetectorService:
    def __init__(
        self,
        settings: Settings,
        backend: Backend,
        consumer: BatchConsumer,
        producer: KafkaProducer,
        *,
        snapshot_dir: Path | None = None,
        failpoints: Failpoints | None = None,
    ) -> None:
        self._settings = settings
        self._backend = backend
        self._consumer = consumer
        self._producer = producer
        self._topics = Topics(settings.kafka)
        self._dead_letters = DeadLetters(producer, stage="detect")
        self._snapshot_dir = snapshot_dir
        self._last_snapshot: dict[str, float] = {}
        self._failpoints = failpoints or Failpoints()
        self._cameras = {camera.id: camera for camera in settings.cameras}
        # Per camera: its pipeline after YOLO, and the frame time it last saw.
        self._pipelines: dict[str, tuple[CameraPipeline, float]] = {}
        self.stats = DetectStats()

    def run(self, stop: threading.Event, *, max_frames: int | None = None) -> DetectStats:
        max_batch = self._settings.detector.max_batch if self._settings.detector else 1
        last_report = time.monotonic()
        inference = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inference")
        pending: _Batch | None = None
        try:
            while not stop.is_set():
                # With a batch in hand, only what has already arrived: it is not held back.
                records = self._consumer.poll(max_batch, 0.0 if pending is not None else 0.5)
                batch = self._start(records, inference) if records else None
                if pending is not None:
                    self._finish(pending)
                pending = batch
                if time.monotonic() - last_report >= _STATS_EVERY_S:
                    last_report = time.monotonic()
                    self._log_stats()
                if max_frames is not None and self.stats.frames >= max_frames:
                    break
            if pending is not None:
                self._finish(pending)
        finally:
            inference.shutdown(wait=True)
        self._log_stats()
        return self.stats

    def close(self) -> None:
        """Leave the consumer group at once (not after a session timeout) and flush."""
        for pipeline, _ in self._pipelines.values():
            # Alerts still waiting for their post-roll go out with the evidence there is.
            for event in pipeline.flush():
                self._producer.send(self._topics.dumping_events, key=event.key, value=encode(event))
        self._producer.flush(timeout=30)
        self._producer.close(timeout=10)
        self._consumer.close()

    def _start(self, records: list[Record], inference: ThreadPoolExecutor) -> _Batch:
        """Decode a batch and hand its images to the network."""
        frames: list[Frame] = []
        images: list[npt.NDArray[np.uint8]] = []
        max_age = self._settings.detect.max_frame_age_s
        now = utcnow()
        for record in records:
            frame = self._decode(record)
            if frame is None:
                continue
            if max_age > 0 and (now - frame.ts_capture).total_seconds() > max_age:
                # Behind: a stale frame is worth less than keeping up. The oldest go first
                # (they come first in each partition), the newest are detected; the dumping
                # logic counts time, not frames, so it only sees fewer of them.
                self.stats.skipped += 1
                continue
            image = cv2.imdecode(np.frombuffer(frame.jpeg, dtype=np.uint8), cv2.IMREAD_COLOR)
            if image is None:
                self._reject(
                    record, f"frame {frame.id} from camera {frame.camera_id}: JPEG does not decode"
                )
                continue
            frames.append(frame)
            images.append(np.asarray(image, dtype=np.uint8))
        found = inference.submit(self._detect, images) if frames else None
        return _Batch(records, frames, images, found)

    def _detect(self, images: list[npt.NDArray[np.uint8]]) -> tuple[list[Detections], float]:
        started = time.perf_counter()
        results = self._backend.detect(images)
        return results, time.perf_counter() - started

    def _finish(self, batch: _Batch) -> None:
        """Track, run the dumping logic, publish; commit once Kafka has it all."""
        if batch.found is not None:
            results, elapsed = batch.found.result()
            self.stats.inference_s += elapsed
            per_frame_ms = elapsed * 1000.0 / len(batch.frames)
            for frame, image, found in zip(batch.frames, batch.images, results, strict=True):
                self._publish(frame, image, found, per_frame_ms)
        # At-least-once: everything derived from these records is in Kafka before the commit.
        self._producer.flush()
        self._failpoints.hit("detect.before_commit")
        self._consumer.commit(batch.records)

    def _publish(
        self,
        frame: Frame,
        image: npt.NDArray[np.uint8],
        found: Detections,
        per_frame_ms: float,
    ) -> None:
        # Frames of a camera arrive in order (one partition per camera key), and batches are
        # finished in order, so each camera's tracker and dumping logic see capture order.
        pipeline, t = self._pipeline(frame)
        found, _, events = pipeline.frame(t, image, found, frame.jpeg)
        for event in events:
            self._producer.send(self._topics.dumping_events, key=event.key, value=encode(event))
            self.stats.events += 1
        boxes = found.to_boxes(self._backend.names, frame.width, frame.height)
        message = DetectionsMessage(
            id=stable_id("detections", frame.id, self._backend.name),
            ts_capture=frame.ts_capture,
            seq=frame.seq,
            camera_id=frame.camera_id,
            frame_id=frame.id,
            width=frame.width,
            height=frame.height,
            model=self._backend.name,
            inference_ms=round(per_frame_ms, 2),
            ts_detected=utcnow(),
            boxes=boxes,
        )
        self._producer.send(self._topics.detections, key=message.key, value=encode(message))
        self.stats.frames += 1
        self.stats.boxes += len(boxes)
        for box in boxes:
            self.stats.by_label[box.label] = self.stats.by_label.get(box.label, 0) + 1
        if boxes and self._snapshot_dir is not None:
            self._maybe_snapshot(message, image)

    def _pipeline(self, frame: Frame) -> tuple[CameraPipeline, float]:
        """The camera's pipeline and the frame's time on its clock: a file's position when
        the frame comes from a file (so a replay gives the offline run's event ids), the
        capture time otherwise."""
        if frame.source_pos_ms is not None:
            t = frame.source_pos_ms / 1000.0
        else:
            t = frame.ts_capture.timestamp()
        current = self._pipelines.get(frame.camera_id)
        if current is not None and t >= current[1] - 1.0:
            self._pipelines[frame.camera_id] = (current[0], t)
            return current[0], t
        if current is not None:
            log.info("camera %s: frame time went back (a replay); its state starts over",
                     frame.camera_id)  # fmt: skip
        detector = self._settings.detector
        assert detector is not None
        camera = self._cameras.get(frame.camera_id) or CameraSettings.model_validate(
            {"id": frame.camera_id, "url": "unconfigured"}
        )
        if frame.source_pos_ms is not None:
            origin = frame.ts_capture - timedelta(seconds=t)
            clock = EventClock(origin)
        else:
            clock = EventClock.epoch()
        dumping = self._settings.dumping
        if dumping.enabled and not detector.tracker.enabled:
            dumping = dumping.model_copy(update={"enabled": False})
        pipeline = CameraPipeline(
            camera,
            tracker=detector.tracker,
            dumping=dumping,
            names=self._backend.names,
            clock=clock,
        )
        self._pipelines[frame.camera_id] = (pipeline, t)
        return pipeline, t

    def _decode(self, record: Record) -> Frame | None:
        try:
            return decode_as(record.value or b"", Frame)
        except DecodeError as exc:
            self._reject(record, str(exc))
            return None

    def _reject(self, record: Record, reason: str) -> None:
        self.stats.dead_letters += 1
        self._dead_letters.reject(record, reason)

    def _maybe_snapshot(self, message: DetectionsMessage, image: np.ndarray) -> None:
        assert self._snapshot_dir is not None
        now = time.monotonic()
        last = self._last_snapshot.get(message.camera_id)
        if last is not None and now - last < self._settings.detect.snapshot_interval_s:
            return
        self._last_snapshot[message.camera_id] = now
        caption = f"{message.camera_id} {message.ts_capture:%Y-%m-%d %H:%M:%S} UTC {message.model}"
        write_png(
            self._snapshot_dir / f"{message.camera_id}.png",
            draw_boxes(image, message.boxes, caption),
        )

    def _log_stats(self) -> None:
        if not self.stats.frames:
            return
        log.info(
            "detector: %d frames (%.1f fps), %.1f ms inference per frame, "
            "%d boxes, %d dumping event messages, %d frames skipped (too old), %d dead letters",
            self.stats.frames,
            self.stats.fps(),
            self.stats.inference_s * 1000.0 / self.stats.frames,
            self.stats.boxes,
            self.stats.events,
            self.stats.skipped,
            self.stats.dead_letters,
        )


def build(settings: Settings, backend_factory: Callable[[], Backend]) -> DetectorService:
    """Wire a service from settings: topics, clients and the backend."""
    topics = Topics(settings.kafka)
    kafka.wait_until_ready(settings.kafka)
    kafka.ensure_topics(settings.kafka, topics.specs())
    backend = backend_factory()
    # kafka-python: frames arrive at tens per second, far below what it can fetch.
    consumer = open_consumer(
        settings.kafka,
        client="kafka-python",
        group_id=settings.detect.group_id,
        topics=[topics.frames],
        name="detect",
    )
    producer = kafka.producer(settings.kafka, "detect")
    return DetectorService(
        settings,
        backend,
        consumer,
        producer,
        snapshot_dir=settings.detect.snapshot_dir,
        failpoints=Failpoints(settings.debug.failpoints),
    )
