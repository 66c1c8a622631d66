"""What happens to one camera's frames after YOLO, the same in `pantau detect` (frames from
Kafka) and `pantau detect-file` (frames from a file): tracking, the static-object model, the
dumping state machine, the evidence pack and the event messages."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import numpy as np
import numpy.typing as npt

from detectors.detections import Detections, keep_classes
from detectors.dumping import DumpingDetector, DumpingRecord
from detectors.events import EventClock, EventGate, EventMapper, dumping_config, evidence_config
from detectors.evidence import EvidenceRecorder
from detectors.state import Snapshot, SnapshotError, decode_snapshot, encode_snapshot
from detectors.static_objects import StaticObjectModel
from detectors.tracking import ByteTracker
from detectors.view import ViewChange, ViewMonitor, view_config
from detectors.zones import CameraZones
from pantau.messages import CameraView, DumpingEvent
from pantau.settings import CameraSettings, DumpingSettings, TrackerSettings

log = logging.getLogger(__name__)


def camera_zones(
    camera: CameraSettings, dwell_s: float | None, default_dwell_s: float = 30.0
) -> CameraZones:
    """The camera's zones; `dwell_s` overrides every watch zone's dwell (and the whole-frame
    zone's when none is configured)."""
    if dwell_s is None:
        return CameraZones.from_settings(camera, default_dwell_s)
    zones = tuple(z.model_copy(update={"dwell_s": dwell_s}) for z in camera.zones)
    return CameraZones.from_settings(camera.model_copy(update={"zones": zones}), dwell_s)


class CameraPipeline:
    """One camera after the detector. Frames must come in capture order; `frame` returns the
    tracked detections and the dumping-event messages due now.

    Everything here learns the picture at one resolution (track boxes, the static-object
    model's background, the evidence buffer). A camera reconfigured to another resolution
    starts the pipeline over at its first frame of the new size, and so does `restart`
    after a failure; the alerts of the old pipeline are finished first (see `restart`)."""

    def __init__(
        self,
        camera: CameraSettings,
        *,
        tracker: TrackerSettings,
        dumping: DumpingSettings,
        names: Mapping[int, str],
        clock: EventClock,
        dwell_s: float | None = None,
        evidence: bool = True,
        classes: Mapping[int, float] | None = None,
    ) -> None:
        self.camera = camera
        # Class id -> least confidence of the boxes kept (`detections.kept_classes`); None
        # keeps every box.
        self.classes = classes
        if dumping.enabled and not tracker.enabled:
            raise ValueError(
                f"camera {camera.id}: the dumping logic needs track ids; expected "
                "detector.tracker.enabled with dumping.enabled, got the tracker off"
            )
        self._tracker_settings = tracker
        self._dumping = dumping
        self._dwell_s = dwell_s
        self._evidence = evidence
        self._clock = clock
        self.dumping_enabled = dumping.enabled
        # One mapper for the camera's life: its message sequence goes on across restarts.
        self._mapper = EventMapper(clock, names)
        # (width, height) of the frames the pipeline has seen; None before the first.
        self.size: tuple[int, int] | None = None
        # Frame time of the last frame the scene models took.
        self.last_t: float | None = None
        self._view_changes: list[ViewChange] = []
        self._backwards_told = False
        self._start()

    def _start(self) -> None:
        camera, dumping = self.camera, self._dumping
        self.tracker = (
            ByteTracker(camera.id, self._tracker_settings)
            if self._tracker_settings.enabled
            else None
        )
        zones = camera_zones(camera, self._dwell_s, dumping.default_dwell_s)
        self.static_model = StaticObjectModel(camera.id, zones)
        self.detector = DumpingDetector(
            camera.id, zones, self.static_model, dumping_config(dumping)
        )
        view = dumping.view
        self.view = (
            ViewMonitor(camera.id, view_config(view)) if dumping.enabled and view.enabled else None
        )
        recorder = (
            EvidenceRecorder(camera.id, evidence_config(dumping), clock=lambda t: self._clock.at(t))
            if self._evidence and dumping.enabled
            else None
        )
        self.gate = EventGate(self._mapper, recorder)
        self.size = None
        self.last_t = None
        self._view_since: float | None = None

    def frame(
        self,
        t: float,
        image: npt.NDArray[np.uint8],
        detections: Detections,
        jpeg: bytes | None = None,
    ) -> tuple[Detections, list[DumpingRecord], list[DumpingEvent]]:
        """The tracked detections, the dumping logic's steps and the messages due now.
        `jpeg`: the frame as it arrived, which the evidence buffer keeps as it is."""
        if self.classes is not None:
            detections = keep_classes(detections, self.classes)
        size = (int(image.shape[1]), int(image.shape[0]))
        finished: list[DumpingEvent] = []
        if self.size is not None and size != self.size:
            log.info(
                "camera %s: resolution changed from %dx%d to %dx%d; its scene models start over",
                self.camera.id,
                *self.size,
                *size,
            )
            finished = self.restart(t)
        if self.last_t is not None and t < self.last_t:
            # Callers hand frames in capture order; one that is not is left out of the scene
            # models (its boxes still go out), never a reason to stop.
            if not self._backwards_told:
                self._backwards_told = True
                log.warning(
                    "camera %s: a frame at %.3f came after one at %.3f; frames out of time "
                    "order are left out of the dumping logic",
                    self.camera.id, t, self.last_t,
                )  # fmt: skip
            return detections, [], finished
        self.size = size
        self.last_t = t
        tracked = self.tracker.update(detections, t) if self.tracker else detections
        if not self.dumping_enabled:
            return tracked, [], finished
        self.gate.frame(t, image, tracked, jpeg)
        records: list[DumpingRecord] = []
        judge = True
        if self.view is not None:
            exclude = self.detector.tracker.exclusion_boxes(t, tracked)
            status = self.view.update(image, t, exclude)
            self._view_changes.extend(status.changes)
            if status.relearn:
                records += self._relearn(t, size)
            if self._view_since is None:
                self._view_since = t
            # While the view monitor first learns the picture, the static-object model (which
            # has its own warm-up) already watches: a drop in the first seconds counts.
            warming = t - self._view_since < self.view.config.warmup_s
            judge = warming or (status.trusted and not status.quiet)
        if judge:
            records += self.detector.process(image, t, tracked)
        return tracked, records, finished + self.gate.records(records)

    def view_messages(self, changes: list[ViewChange]) -> list[CameraView]:
        """`cameras.view.v1` messages for view changes of this camera."""
        return [self._mapper.view_message(change) for change in changes]

    def take_view_changes(self) -> list[ViewChange]:
        """The view changes (moved, covered, blurred: start and end) since the last call."""
        changes, self._view_changes = self._view_changes, []
        return changes

    def _relearn(self, t: float, size: tuple[int, int]) -> list[DumpingRecord]:
        """The view changed for good: the scene models start over (quietly, while the view
        monitor relearns). The objects the old models followed cannot be found in the new
        view: alerted events end as expired, the others are forgotten."""
        self.static_model.reset()
        records = self.detector.tracker.update(
            t, (), Detections.empty(), width=size[0], height=size[1]
        )
        log.info(
            "camera %s: the view changed; its scene models start over (%d alerted events "
            "end as expired)",
            self.camera.id, len(records),
        )  # fmt: skip
        return records

    def flush(self) -> list[DumpingEvent]:
        return self.gate.flush()

    def restart(self, t: float | None = None) -> list[DumpingEvent]:
        """Start over: new tracker, static-object model, dumping state and evidence buffer.

        Returns the messages that finish the old pipeline's alerts: with a frame time `t`,
        each alerted event ends as expired (the new models cannot tell where its object
        is); the evidence packs waiting for their post-roll are written with the frames
        there are. Should that fail as well (the restart may follow a failure), those
        messages are lost, not the restart."""
        finished: list[DumpingEvent] = []
        try:
            if t is not None and self.size is not None and self.dumping_enabled:
                records = self.detector.tracker.update(
                    max(t, self.last_t or t), (), Detections.empty(),
                    width=self.size[0], height=self.size[1],
                )  # fmt: skip
                finished += self.gate.records(records)
            finished += self.flush()
        except Exception:
            log.exception(
                "camera %s: the alerts of its scene models could not be finished",
                self.camera.id,
            )
        self._start()
        return finished

    # ------------------------------------------------------------------ resuming

    def snapshot(self) -> bytes | None:
        """The camera's state as of its last frame (see `detectors.state`); None before
        the first frame or with the dumping logic off."""
        if not self.dumping_enabled or self.size is None or self.last_t is None:
            return None
        static_meta, arrays = self.static_model.export_state()
        parts: dict[str, Any] = {
            "static": static_meta,
            "dumping": self.detector.tracker.export_state(),
            "events": self._mapper.export_state(),
            "evidence": self.gate.export_state(),
            "last_track_id": ByteTracker.last_id(),
            # A file's frame clock starts at each run of its source: the saved cases keep the
            # times of the run that saw them, so their events keep their times and ids.
            "clock_origin": self._clock.origin.isoformat(),
            "view": None,
        }
        if self.view is not None:
            view, view_arrays = _bytes_out("view", self.view.to_state())
            parts["view"] = view
            arrays.update(view_arrays)
        return encode_snapshot(Snapshot(self.camera.id, self.last_t, self.size, parts, arrays))

    def restore(self, data: bytes, *, max_bytes: int) -> bool:
        """Take up a snapshot (of this camera, from this or another detector process).
        A snapshot that cannot be used is logged and ignored: the camera starts afresh."""
        try:
            snap = decode_snapshot(data, max_bytes=max_bytes)
            if snap.camera_id != self.camera.id:
                raise SnapshotError(f"it is camera {snap.camera_id!r}'s")
            parts = snap.parts
            clock = EventClock(datetime.fromisoformat(str(parts["clock_origin"])))
            self.static_model.import_state(parts["static"], snap.arrays)
            self.detector.tracker.import_state(parts["dumping"], snap.t)
            self._mapper.import_state(parts["events"])
            self.gate.import_state(parts.get("evidence") or [])
            ByteTracker.continue_ids_after(int(parts["last_track_id"]))
            if self.view is not None and parts.get("view") is not None:
                state = _bytes_in(parts["view"], snap.arrays)
                self.view = ViewMonitor.from_state(state, self.view.config)
        except Exception as exc:
            # Whatever is wrong with it (a damaged record, a foreign writer on the topic, a
            # field of the wrong shape), a snapshot is a convenience: never a reason to stop.
            log.warning(
                "camera %s: its saved detector state cannot be used (%s); it starts afresh",
                self.camera.id, exc,
            )  # fmt: skip
            self._start()
            return False
        self.size, self.last_t = snap.size, snap.t
        self._clock = self._mapper.clock = clock
        self._view_since = -float("inf")
        cases = self.detector.tracker.cases()
        log.info(
            "camera %s: resumed its detector state of t=%.3f: %d objects followed, %d of them "
            "alerted",
            self.camera.id, snap.t, len(cases), sum(c.state == "alerted" for c in cases),
        )  # fmt: skip
        return True


def _bytes_out(prefix: str, state: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A component's state with its bytes (PNG images) moved out as uint8 arrays."""
    plain: dict[str, Any] = {}
    arrays: dict[str, Any] = {}
    for key, value in state.items():
        if isinstance(value, bytes):
            name = f"{prefix}.{key}"
            arrays[name] = np.frombuffer(value, dtype=np.uint8)
            plain[key] = {"bytes": name}
        else:
            plain[key] = value
    return plain, arrays


def _bytes_in(plain: Mapping[str, Any], arrays: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in plain.items():
        if isinstance(value, dict) and "bytes" in value:
            array = arrays[value["bytes"]]
            if not isinstance(array, np.ndarray) or array.dtype != np.uint8:
                raise SnapshotError(f"{key}: expected bytes")
            out[key] = array.tobytes()
        else:
            out[key] = value
    return out
