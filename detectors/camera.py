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
    ) -> None:
        self.camera = camera
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
        self._start()

    def _start(self) -> None:
        camera, dumping = self.camera, self._dumping
        self.tracker = (
            ByteTracker(camera.id, self._tracker_settings)
            if self._tracker_settings.enabled
            else None
        )
        zones = camera_zones(camera, self._dwell_s, dumping.default_dwell_s)
        self.detector = DumpingDetector(
            camera.id, zones, StaticObjectModel(camera.id, zones), dumping_config(dumping)
        )
        recorder = (
            EvidenceRecorder(camera.id, evidence_config(dumping), clock=self._clock.at)
            if self._evidence and dumping.enabled
            else None
        )
        self.gate = EventGate(self._mapper, recorder)
        self.size = None

    def frame(
        self,
        t: float,
        image: npt.NDArray[np.uint8],
        detections: Detections,
        jpeg: bytes | None = None,
    ) -> tuple[Detections, list[DumpingRecord], list[DumpingEvent]]:
        """The tracked detections, the dumping logic's steps and the messages due now.
        `jpeg`: the frame as it arrived, which the evidence buffer keeps as it is."""
        size = (int(image.shape[1]), int(image.shape[0]))
        finished: list[DumpingEvent] = []
        if self.size is not None and size != self.size:
            log.info(
                "camera %s: resolution changed from %dx%d to %dx%d; its scene models start over",
                self.camera.id,
                *self.size,
                *size,
            )
            finished = self.restart()
        self.size = size
        tracked = self.tracker.update(detections, t) if self.tracker else detections
        if not self.dumping_enabled:
            return tracked, [], finished
        self.gate.frame(t, image, tracked, jpeg)
        records = self.detector.process(image, t, tracked)
        return tracked, records, finished + self.gate.records(records)

    def flush(self) -> list[DumpingEvent]:
        return self.gate.flush()

    def restart(self) -> list[DumpingEvent]:
        """Start over: new tracker, static-object model, dumping state and evidence buffer.

        Returns the messages that finish the old pipeline's alerts: the evidence packs
        waiting for their post-roll are written with the frames there are, and go out as
        one more step of their events, which stay alerted (nobody saw the objects go; the
        new models learn whatever lies there as the scene). Should that fail as well (the
        restart may follow a failure), the packs are lost, not the restart."""
        try:
            finished = self.flush()
        except Exception:
            log.exception(
                "camera %s: the evidence of its pending alerts could not be finished",
                self.camera.id,
            )
            finished = []
        self._start()
        return finished
