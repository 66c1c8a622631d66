"""The detector service: a Kafka consumer group on frames, YOLO, detections back to Kafka.

Offsets are committed only after the detections of every frame in the batch are
acknowledged by Kafka, so a crash re-detects some frames rather than losing them; the
detections carry a stable id derived from the frame id, and the sink stores them once.

Two batches are in hand at a time: while the network looks at one (on its own thread; the
inference runtimes release the GIL), the camera pipelines of the one before run here. One
process then uses both cores of a small machine instead of taking turns between them.

No frame stops the service (`pantau.poison`): one that does not decode, whose JPEG is not
what its message says or is larger than `detect.max_frame_width` x `max_frame_height`
(read from the JPEG header, before decoding), one the network fails on by itself, or one
its camera's pipeline fails on, is a dead letter with the reason, and the next frame is
handled. A pipeline that failed starts over for that camera only. What stops it is what no
frame can cause: a network that fails on every frame and on a blank one, or Kafka not
taking what was produced (`InfrastructureError`); then nothing of the batch is committed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
from kafka import KafkaProducer
from kafka.errors import KafkaError
from kafka.future import Future as KafkaFuture

from detectors.annotate import draw_boxes, write_png
from detectors.backends import Backend
from detectors.camera import CameraPipeline
from detectors.detections import Detections, keep_classes, kept_classes
from detectors.events import EventClock
from detectors.region_detector import Frame as RegionFrame
from detectors.region_detector import RegionDetector
from detectors.state_topic import StateTopic, StateTopicError
from pantau import kafka
from pantau.codec import decode_as, describe, encode
from pantau.failpoints import Failpoints
from pantau.ids import stable_id, utcnow
from pantau.imaging import ImageError, jpeg_size
from pantau.kafka import BatchConsumer, DeadLetters, Record, open_consumer
from pantau.messages import CameraView, DumpingEvent, Frame
from pantau.messages import Detections as DetectionsMessage
from pantau.poison import BadInput, guard
from pantau.runtime import alive
from pantau.settings import CameraSettings, Settings
from pantau.topics import Topics

log = logging.getLogger(__name__)

_STATS_EVERY_S = 30.0
# A frame up to this much older than its camera's last one came out of order (a camera's
# clock stepping back a little, frames read again after a rebalance): its boxes go out
# untracked and the camera's pipeline skips it. Further back is a replay from the start.
_OUT_OF_ORDER_S = 1.0

# Frames read again after a restart are at most a batch older than the camera's saved state
# (it is written before each commit); frames much older than that are a replay.
_RESUME_BACK_S = 30.0

Image = npt.NDArray[np.uint8]


class BadFrame(BadInput):
    """The frame cannot be used as it is; the text says why."""


class InfrastructureError(RuntimeError):
    """What no frame can cause: the network or its runtime is broken, or Kafka did not take
    what was produced. The service stops with nothing of the batch committed, so the frames
    are read again once it is fixed; none of them is dead-lettered."""


@dataclass
class DetectStats:
    frames: int = 0
    boxes: int = 0
    events: int = 0
    skipped: int = 0
    dead_letters: int = 0
    resets: int = 0
    inference_s: float = 0.0
    started: float = field(default_factory=time.monotonic)
    by_label: dict[str, int] = field(default_factory=dict)

    def fps(self) -> float:
        return self.frames / max(time.monotonic() - self.started, 1e-6)


@dataclass(frozen=True)
class _Item:
    """A frame the network is to look at: its record, message and decoded picture."""

    record: Record
    frame: Frame
    image: Image

    @property
    def what(self) -> str:
        return f"frame {self.frame.id} from camera {self.frame.camera_id}"


@dataclass
class _Batch:
    """Records polled together, the frames among them, and the network's answer to come."""

    records: list[Record]
    items: list[_Item]
    found: Future[tuple[list[Detections], float]] | None


@dataclass
class _Camera:
    """A camera's pipeline after YOLO and the frame time it last saw."""

    pipeline: CameraPipeline
    t: float
    # Resumed from a snapshot of this frame time: frames up to it are already in the state
    # (read again after a restart), and are left out of the pipeline.
    resumed_until: float | None = None
    # When its state was last written (monotonic seconds), and whether one of its events
    # moved on since.
    saved_at: float = 0.0
    changed: bool = False


@dataclass(frozen=True)
class _Output:
    """What one frame produced, to be sent."""

    events: list[DumpingEvent]
    detections: DetectionsMessage
    views: list[CameraView] = field(default_factory=list)


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
        state: StateTopic | None = None,
    ) -> None:
        self._settings = settings
        self._backend = backend
        self._consumer = consumer
        self._producer = producer
        self._topics = Topics(settings.kafka)
        self._dead_letters = DeadLetters(producer, stage="detect")
        self._snapshot_dir = snapshot_dir
        self._state = state
        self._last_snapshot: dict[str, float] = {}
        self._failpoints = failpoints or Failpoints()
        self._cameras = {camera.id: camera for camera in settings.cameras}
        self._pipelines: dict[str, _Camera] = {}
        # Raises UnknownClassError at start-up for a class name the model does not know.
        detector = settings.detector
        self._classes = (
            None if detector is None else kept_classes(detector, settings.dumping, backend.names)
        )
        # Everything sent for the batch being finished: checked before its commit.
        self._sent: list[KafkaFuture] = []
        self._inference: ThreadPoolExecutor | None = None
        self.stats = DetectStats()
        regions = settings.detect.regions
        self._regions: RegionDetector | None = None
        if regions.enabled and detector is not None:
            self._regions = RegionDetector(
                backend, regions, detector.imgsz, iou=detector.iou, classes=self._classes
            )
            log.info(
                "detector: region-based, crops up to %dx%d at the frames' own resolution, "
                "whole frames every %.0f s per camera",
                detector.imgsz,
                detector.imgsz,
                regions.full_every_s,
            )

    def run(self, stop: threading.Event, *, max_frames: int | None = None) -> DetectStats:
        """Until `stop` is set (or `max_frames` are detected). Raises InfrastructureError
        when the network or Kafka fails whatever the input; nothing of the batch in hand is
        committed then."""
        max_batch = self._settings.detector.max_batch if self._settings.detector else 1
        last_report = time.monotonic()
        inference = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inference")
        self._inference = inference
        pending: _Batch | None = None
        try:
            while not stop.is_set():
                alive()
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
            self._inference = None
        self._log_stats()
        return self.stats

    def close(self) -> None:
        """Leave the consumer group at once (not after a session timeout) and flush."""
        for camera_id, camera in self._pipelines.items():
            # Alerts still waiting for their post-roll go out with the evidence there is.
            try:
                events = camera.pipeline.flush()
            except Exception:
                log.exception("camera %s: pending evidence not finished at shutdown", camera_id)
                continue
            for event in events:
                self._send_event(event)
        self._save_states(force=True)
        self._producer.flush(timeout=30)
        self._producer.close(timeout=10)
        self._consumer.close()
        if self._state is not None:
            self._state.close()

    # ------------------------------------------------------------------ one batch

    def _start(self, records: list[Record], inference: ThreadPoolExecutor) -> _Batch:
        """Decode a batch and hand its pictures to the network."""
        items: list[_Item] = []
        now = utcnow()
        for record in records:
            item = guard(
                partial(self._prepare, record, now),
                partial(self._reject, record),
                where=f"frame record {record.topic}[{record.partition}]@{record.offset}",
            )
            if item is not None:
                items.append(item)
        found = inference.submit(self._detect_items, items) if items else None
        return _Batch(records, items, found)

    def _prepare(self, record: Record, now: datetime) -> _Item | None:
        """The record's frame and picture; None for a frame too old to be worth detecting.
        Raises DecodeError or BadFrame for a frame that cannot be used."""
        frame = decode_as(record.value or b"", Frame)
        max_age = self._settings.detect.max_frame_age_s
        if max_age > 0 and (now - frame.ts_capture).total_seconds() > max_age:
            # Behind: a stale frame is worth less than keeping up. The oldest go first (they
            # come first in each partition), the newest are detected; the dumping logic
            # counts time, not frames, so it only sees fewer of them.
            self.stats.skipped += 1
            return None
        return _Item(record, frame, self._picture(frame))

    def _picture(self, frame: Frame) -> Image:
        """The frame's JPEG, decoded once its header says it is what the message says and
        no larger than the limits."""
        what = f"frame {frame.id} from camera {frame.camera_id}"
        try:
            width, height = jpeg_size(frame.jpeg)
        except ImageError as exc:
            raise BadFrame(f"{what}: {exc}") from exc
        limits = self._settings.detect
        if width > limits.max_frame_width or height > limits.max_frame_height:
            raise BadFrame(
                f"{what}: its JPEG is {width}x{height}, larger than the detector takes "
                f"(detect.max_frame_width x max_frame_height: "
                f"{limits.max_frame_width}x{limits.max_frame_height}); not decoded"
            )
        if (width, height) != (frame.width, frame.height):
            raise BadFrame(
                f"{what}: the message says {frame.width}x{frame.height}, "
                f"its JPEG header {width}x{height}"
            )
        # The size was checked on the header as stored: an EXIF rotation must not turn it.
        flags = cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION
        image = cv2.imdecode(np.frombuffer(frame.jpeg, dtype=np.uint8), flags)
        if image is None:
            raise BadFrame(f"{what}: JPEG does not decode")
        if image.shape[:2] != (height, width):
            raise BadFrame(
                f"{what}: its JPEG header says {width}x{height}, it decodes to "
                f"{image.shape[1]}x{image.shape[0]}"
            )
        return np.asarray(image, dtype=np.uint8)

    def _detect_items(self, items: list[_Item]) -> tuple[list[Detections], float]:
        if self._regions is None:
            return self._detect([item.image for item in items])
        started = time.perf_counter()
        frames = [RegionFrame(i.frame.camera_id, _frame_time(i.frame), i.image) for i in items]
        results = self._regions.detect(frames)
        return results, time.perf_counter() - started

    def _detect(self, images: list[Image]) -> tuple[list[Detections], float]:
        started = time.perf_counter()
        results = self._backend.detect(images)
        if len(results) != len(images):
            raise RuntimeError(
                f"detector {self._backend.name}: expected {len(images)} results, got {len(results)}"
            )
        return results, time.perf_counter() - started

    def _finish(self, batch: _Batch) -> None:
        """Track, run the dumping logic, publish; commit once Kafka has it all."""
        if batch.found is not None:
            results, elapsed = self._detections(batch)
            detected = sum(1 for found in results if found is not None)
            per_frame_ms = elapsed * 1000.0 / max(detected, 1)
            for item, found in zip(batch.items, results, strict=True):
                if found is None:
                    continue
                output = guard(
                    partial(self._process, item, found, per_frame_ms),
                    partial(self._pipeline_failed, item),
                    # Kafka refusing a record, or the state topic unreadable, is no fault
                    # of the frame.
                    infrastructure=(KafkaError, InfrastructureError),
                    where=item.what,
                )
                if output is not None:
                    self._publish(item, output)
        self._save_states()
        # At-least-once: everything derived from these records is in Kafka before the commit.
        self._producer.flush()
        self._verify_sent()
        self._failpoints.hit("detect.before_commit")
        self._consumer.commit(batch.records)

    def _detections(self, batch: _Batch) -> tuple[list[Detections | None], float]:
        """The network's answer per frame of the batch (None for a frame dead-lettered)."""
        assert batch.found is not None
        try:
            results, elapsed = batch.found.result()
        except Exception as exc:
            log.error(
                "detector %s failed on a batch of %d frames (%s); trying them one at a time",
                self._backend.name,
                len(batch.items),
                describe(exc),
                exc_info=exc,
            )
        else:
            self.stats.inference_s += elapsed
            return list(results), elapsed
        return self._one_at_a_time(batch.items)

    def _one_at_a_time(self, items: list[_Item]) -> tuple[list[Detections | None], float]:
        """After a failed batch: each frame alone, so that one frame the network cannot
        take costs only itself."""
        results: list[Detections | None] = []
        failures: list[tuple[_Item, BaseException]] = []
        elapsed = 0.0
        for item in items:
            try:
                found, seconds = self._on_inference_thread([item.image])
            except Exception as exc:
                failures.append((item, exc))
                results.append(None)
            else:
                elapsed += seconds
                results.append(found[0])
        self.stats.inference_s += elapsed
        if failures and len(failures) == len(items) and not self._network_works():
            first = failures[0][1]
            raise InfrastructureError(
                f"detector {self._backend.name} fails on every frame, one at a time, and on a "
                f"blank picture: the model or its runtime is broken ({describe(first)})"
            ) from first
        for item, error in failures:
            self._reject(
                item.record,
                f"{item.what}: the detector failed on this frame alone: {describe(error)}",
            )
        return results, elapsed

    def _network_works(self) -> bool:
        """Whether the network still answers on a blank picture (as at start-up)."""
        detector = self._settings.detector
        size = detector.imgsz if detector is not None else 640
        try:
            self._on_inference_thread([np.zeros((size, size, 3), dtype=np.uint8)])
        except Exception as exc:
            log.error("detector %s fails on a blank picture too: %s", self._backend.name, exc)
            return False
        log.warning(
            "detector %s works on a blank picture: the frames it failed on are dead letters",
            self._backend.name,
        )
        return True

    def _on_inference_thread(self, images: list[Image]) -> tuple[list[Detections], float]:
        # The backends are not safe for two callers at once: the next batch may be running.
        if self._inference is None:
            return self._detect(images)
        return self._inference.submit(self._detect, images).result()

    # ------------------------------------------------------------------ one frame

    def _process(self, item: _Item, found: Detections, per_frame_ms: float) -> _Output:
        """The frame through its camera's pipeline; the messages it produced."""
        frame = item.frame
        events: list[DumpingEvent] = []
        views: list[CameraView] = []
        camera = self._camera(frame)
        if camera is None:
            tracked = found if self._classes is None else keep_classes(found, self._classes)
        else:
            # Frames of a camera arrive in order (one partition per camera key), and batches
            # are finished in order, so each camera's pipeline sees capture order.
            tracked, _, events = camera.pipeline.frame(camera.t, item.image, found, frame.jpeg)
            views = camera.pipeline.view_messages(camera.pipeline.take_view_changes())
            camera.changed = camera.changed or bool(events or views)
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
            boxes=tracked.to_boxes(self._backend.names, frame.width, frame.height),
        )
        return _Output(events, message, views)

    def _publish(self, item: _Item, output: _Output) -> None:
        for event in output.events:
            self._send_event(event)
        for view in output.views:
            log.warning(
                "camera %s: its view is %s (%s): outline moved %.0f%%, spread %.1f, detail %.2f",
                view.camera_id, view.condition,
                "no dumping alarms until it is back" if view.phase == "start" else "back",
                100 * view.changed_frac, view.brightness_spread, view.sharpness_ratio,
            )  # fmt: skip
            self._sent.append(
                self._producer.send(self._topics.camera_view, key=view.key, value=encode(view))
            )
        message = output.detections
        self._sent.append(
            self._producer.send(self._topics.detections, key=message.key, value=encode(message))
        )
        self.stats.frames += 1
        self.stats.boxes += len(message.boxes)
        for box in message.boxes:
            self.stats.by_label[box.label] = self.stats.by_label.get(box.label, 0) + 1
        if message.boxes and self._snapshot_dir is not None:
            self._maybe_snapshot(message, item.image)

    def _send_event(self, event: DumpingEvent) -> None:
        self._sent.append(
            self._producer.send(self._topics.dumping_events, key=event.key, value=encode(event))
        )
        self.stats.events += 1

    def _pipeline_failed(self, item: _Item, reason: str) -> None:
        """The camera's pipeline raised on this frame: the frame is a dead letter, and the
        camera starts over (its state may be half updated); other cameras go on as they
        were."""
        self._reject(item.record, f"{item.what}: the camera pipeline failed: {reason}")
        camera_id = item.frame.camera_id
        camera = self._pipelines.get(camera_id)
        if camera is None:
            return
        self.stats.resets += 1
        log.warning("camera %s: its pipeline starts over after that failure", camera_id)
        for event in camera.pipeline.restart(camera.t):
            self._send_event(event)
        camera.changed = True

    def _camera(self, frame: Frame) -> _Camera | None:
        """The camera's pipeline at the frame's time (see `_frame_time`); None for a frame
        that came out of order, which the pipeline skips."""
        t = _frame_time(frame)
        current = self._pipelines.get(frame.camera_id)
        if current is not None and current.resumed_until is not None:
            if t <= current.resumed_until:
                return None
            current.resumed_until = None
        if current is not None and t >= current.t:
            current.t = t
            return current
        if current is not None and t >= current.t - _OUT_OF_ORDER_S:
            log.debug(
                "camera %s: frame %s at %.3f came after one at %.3f; its boxes go out untracked",
                frame.camera_id, frame.id, t, current.t,
            )  # fmt: skip
            return None
        if current is not None:
            log.info("camera %s: frame time went back (a replay); its state starts over",
                     frame.camera_id)  # fmt: skip
        detector = self._settings.detector
        assert detector is not None
        settings = self._cameras.get(frame.camera_id) or CameraSettings.model_validate(
            {"id": frame.camera_id, "url": "unconfigured"}
        )
        if frame.source_pos_ms is not None:
            clock = EventClock(frame.ts_capture - timedelta(seconds=t))
        else:
            clock = EventClock.epoch()
        dumping = self._settings.dumping
        if dumping.enabled and not detector.tracker.enabled:
            dumping = dumping.model_copy(update={"enabled": False})
        pipeline = CameraPipeline(
            settings,
            tracker=detector.tracker,
            dumping=dumping,
            names=self._backend.names,
            clock=clock,
            classes=self._classes,
        )
        camera = self._pipelines[frame.camera_id] = _Camera(pipeline, t, saved_at=time.monotonic())
        if current is None:
            self._resume(camera, frame.camera_id, t)
            if camera.resumed_until is not None:
                return None
        return camera

    def _resume(self, camera: _Camera, camera_id: str, t: float) -> None:
        """Take up the camera's latest saved state, if there is one to take up."""
        if self._state is None or not camera.pipeline.dumping_enabled:
            return
        try:
            saved = self._state.latest(camera_id)
        except (StateTopicError, KafkaError) as exc:
            raise InfrastructureError(
                f"camera {camera_id}: its saved state could not be read: {exc}"
            ) from exc
        if saved is None:
            return
        limit = self._settings.kafka.max_message_bytes + 64 * 1024
        if not camera.pipeline.restore(saved, max_bytes=limit):
            return
        resumed = camera.pipeline.last_t
        if resumed is not None and t < resumed - _RESUME_BACK_S:
            # Far older than the state: the source started over (a file replayed from its
            # start), not frames read again after a restart.
            log.info(
                "camera %s: frames at %.1f s are older than its saved state (%.1f s): a replay; "
                "it starts afresh",
                camera_id, t, resumed,
            )  # fmt: skip
            camera.pipeline.restart()
            return
        if resumed is not None and resumed >= t:
            camera.resumed_until = resumed
        camera.t = max(t, resumed or t)
        camera.changed = True

    def _save_states(self, *, force: bool = False) -> None:
        """Write the state of each camera whose events moved on in this batch, or whose
        last write is older than detect.state_interval_s, before the batch is committed."""
        if self._state is None:
            return
        interval = self._settings.detect.state_interval_s
        now = time.monotonic()
        for camera_id, camera in self._pipelines.items():
            if not (force or camera.changed or now - camera.saved_at >= interval):
                continue
            try:
                snapshot = camera.pipeline.snapshot()
            except Exception:
                # The state is a convenience for a restart: never a reason to stop detecting.
                log.exception("camera %s: its detector state could not be written", camera_id)
                continue
            camera.saved_at, camera.changed = now, False
            if snapshot is not None:
                self._sent.append(self._state.save(self._producer, camera_id, snapshot))

    def forget_cameras(self) -> None:
        """Partitions moved (a rebalance): the cameras' pipelines are dropped after their
        pending evidence is finished and their state written, and whichever process gets a
        camera next resumes it from that state."""
        for camera_id, camera in self._pipelines.items():
            try:
                for event in camera.pipeline.flush():
                    self._send_event(event)
                    camera.changed = True
            except Exception:
                log.exception("camera %s: pending evidence not finished at a rebalance", camera_id)
        # Saved after the packs are finished: the versions of the steps just sent are in it.
        self._save_states(force=True)
        self._pipelines.clear()
        if self._regions is not None:
            self._regions.forget()

    # ------------------------------------------------------------------ Kafka

    def _reject(self, record: Record, reason: str) -> None:
        self.stats.dead_letters += 1
        self._sent.append(self._dead_letters.reject(record, reason))

    def _verify_sent(self) -> None:
        """After a flush: every record of the batch is in Kafka, or nothing is committed."""
        sent, self._sent = self._sent, []
        # kafka-python answers every send with a future; a stand-in client may give none.
        failed = [f for f in sent if isinstance(f, KafkaFuture) and not f.succeeded()]
        if failed:
            first = failed[0].exception
            raise InfrastructureError(
                f"Kafka did not take {len(failed)} of the {len(sent)} records produced from "
                f"the batch (first: {first!r}); its offsets are not committed, and its frames "
                "will be read again"
            )

    def _maybe_snapshot(self, message: DetectionsMessage, image: Image) -> None:
        assert self._snapshot_dir is not None
        now = time.monotonic()
        last = self._last_snapshot.get(message.camera_id)
        if last is not None and now - last < self._settings.detect.snapshot_interval_s:
            return
        self._last_snapshot[message.camera_id] = now
        caption = f"{message.camera_id} {message.ts_capture:%Y-%m-%d %H:%M:%S} UTC {message.model}"
        try:
            write_png(
                self._snapshot_dir / f"{message.camera_id}.png",
                draw_boxes(image, message.boxes, caption),
            )
        except (OSError, cv2.error) as exc:
            # A picture for people to glance at: never a reason to hold detection back.
            log.warning("camera %s: snapshot not written: %s", message.camera_id, exc)

    def _log_stats(self) -> None:
        if not self.stats.frames:
            return
        log.info(
            "detector: %d frames (%.1f fps), %.1f ms inference per frame, "
            "%d boxes, %d dumping event messages, %d frames skipped (too old), "
            "%d dead letters, %d camera pipelines started over",
            self.stats.frames,
            self.stats.fps(),
            self.stats.inference_s * 1000.0 / self.stats.frames,
            self.stats.boxes,
            self.stats.events,
            self.stats.skipped,
            self.stats.dead_letters,
            self.stats.resets,
        )
        if self._regions is not None:
            log.info("detector regions: %s", self._regions.stats.summary())


def _frame_time(frame: Frame) -> float:
    """The frame's time on its camera's clock: a file's position when the frame comes from
    a file (so a replay gives the offline run's event ids), the capture time otherwise."""
    if frame.source_pos_ms is not None:
        return frame.source_pos_ms / 1000.0
    return frame.ts_capture.timestamp()


def build(settings: Settings, backend_factory: Callable[[], Backend]) -> DetectorService:
    """Wire a service from settings: topics, clients and the backend."""
    topics = Topics(settings.kafka)
    kafka.wait_until_ready(settings.kafka)
    kafka.ensure_topics(settings.kafka, topics.specs())
    backend = backend_factory()
    # kafka-python: frames arrive at tens per second, far below what it can fetch.
    holder: list[DetectorService] = []

    def forget_before_revoke() -> None:
        if holder:
            holder[0].forget_cameras()

    consumer = open_consumer(
        settings.kafka,
        client="kafka-python",
        group_id=settings.detect.group_id,
        topics=[topics.frames],
        name="detect",
        on_revoke=forget_before_revoke,
    )
    producer = kafka.producer(settings.kafka, "detect")
    service = DetectorService(
        settings,
        backend,
        consumer,
        producer,
        snapshot_dir=settings.detect.snapshot_dir,
        failpoints=Failpoints(settings.debug.failpoints),
        state=StateTopic(settings.kafka, topics.detect_state),
    )
    holder.append(service)
    return service
