"""What happens to one camera's frames after YOLO, the same in `pantau detect` (frames from
Kafka) and `pantau detect-file` (frames from a file): tracking, the static-object model, the
dumping state machine, the evidence pack and the event messages."""

from __future__ import annotations

import logging
from collections.abc import Mapping

import numpy as np
import numpy.typing as npt

from detectors.detections import Detections
from detectors.dumping import DumpingDetector, DumpingRecord
from detectors.events import EventClock, EventGate, EventMapper, dumping_config, evidence_config
from detectors.evidence import EvidenceRecorder
from detectors.static_objects import StaticObjectModel
from detectors.tracking import ByteTracker
from detectors.zones import CameraZones
from pantau.messages import DumpingEvent
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
    tracked detections and the dumping-event messages due now."""

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
    ) -> None:
        self.camera = camera
        if dumping.enabled and not tracker.enabled:
            raise ValueError(
                f"camera {camera.id}: the dumping logic needs track ids; expected "
                "detector.tracker.enabled with dumping.enabled, got the tracker off"
            )
        self.tracker = ByteTracker(camera.id, tracker) if tracker.enabled else None
        self.dumping_enabled = dumping.enabled
        zones = camera_zones(camera, dwell_s, dumping.default_dwell_s)
        self.detector = DumpingDetector(
            camera.id, zones, StaticObjectModel(camera.id, zones), dumping_config(dumping)
        )
        recorder = (
            EvidenceRecorder(camera.id, evidence_config(dumping), clock=clock.at)
            if evidence and dumping.enabled
            else None
        )
        self.gate = EventGate(EventMapper(clock, names), recorder)

    def frame(
        self,
        t: float,
        image: npt.NDArray[np.uint8],
        detections: Detections,
        jpeg: bytes | None = None,
    ) -> tuple[Detections, list[DumpingRecord], list[DumpingEvent]]:
        """The tracked detections, the dumping logic's steps and the messages due now.
        `jpeg`: the frame as it arrived, which the evidence buffer keeps as it is."""
        tracked = self.tracker.update(detections, t) if self.tracker else detections
        if not self.dumping_enabled:
            return tracked, [], []
        self.gate.frame(t, image, tracked, jpeg)
        records = self.detector.process(image, t, tracked)
        return tracked, records, self.gate.records(records)

    def flush(self) -> list[DumpingEvent]:
        return self.gate.flush()
