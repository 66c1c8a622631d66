"""From the dumping logic's records to `events.dumping.v1` messages.

The dumping logic counts time in float seconds on the frames' own clock: a live camera's
capture time, or a file's position. `EventClock` turns those seconds into UTC datetimes; the
event id stays the logic's own, computed from the camera and the clock seconds, so a file
replayed through Kafka and the same file run offline give the same ids.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt

from detectors.detections import Detections
from detectors.dumping import DumpingConfig, DumpingRecord, Phase
from detectors.evidence import EvidenceConfig, EvidencePack, EvidenceRecorder
from detectors.view import ViewChange
from pantau.ids import stable_id
from pantau.messages import Box, CameraView, DumpingEvent, EvidenceRef
from pantau.settings import DumpingSettings


@dataclass(frozen=True)
class EventClock:
    """Seconds on a camera's frame clock → UTC: `origin` is the datetime of second 0."""

    origin: datetime

    def __post_init__(self) -> None:
        if self.origin.tzinfo is None:
            raise ValueError(f"clock origin must be timezone-aware, got {self.origin!r}")

    @classmethod
    def epoch(cls) -> EventClock:
        """For live cameras, whose frame clock is already Unix time."""
        return cls(datetime(1970, 1, 1, tzinfo=UTC))

    def at(self, seconds: float) -> datetime:
        return self.origin + timedelta(seconds=seconds)

    def maybe(self, seconds: float | None) -> datetime | None:
        return None if seconds is None else self.at(seconds)


# The lifecycle state each phase announces, in the words the storage and the wall use.
_STATE = {
    "alerted": "alerted",
    "cleaned": "cleaned",
    "picked_up": "picked_up",
    "expired": "expired",
}


class EventMapper:
    """One camera's records → messages, with the camera's own monotonic sequence."""

    def __init__(self, clock: EventClock, names: Mapping[int, str]) -> None:
        self.clock = clock
        self.names = names
        self._next_seq = 0
        # Versions are counted here: the evidence adds a step the logic does not know of.
        self._versions: dict[uuid.UUID, int] = {}

    def export_state(self) -> dict[str, Any]:
        return {
            "next_seq": self._next_seq,
            "versions": {str(event): version for event, version in self._versions.items()},
        }

    def import_state(self, state: Mapping[str, Any]) -> None:
        """Go on counting where a previous detector stopped: the next step of an event it
        raised gets the next version, and the camera's sequence keeps rising."""
        self._next_seq = max(self._next_seq, int(state["next_seq"]))
        for event, version in state["versions"].items():
            self._versions[uuid.UUID(event)] = int(version)

    def forget(self, event_id: uuid.UUID) -> None:
        """The event has ended and sent its last step: its version count is not needed."""
        self._versions.pop(event_id, None)

    def _take_seq(self) -> int:
        seq = self._next_seq
        self._next_seq += 1
        return seq

    def view_message(self, change: ViewChange) -> CameraView:
        """The camera-view message of a view change, on the same clock and sequence."""
        return CameraView(
            id=stable_id(
                "camera-view", change.camera_id, f"{change.at:.3f}", change.condition, change.phase
            ),
            ts_capture=self.clock.at(change.at),
            seq=self._take_seq(),
            camera_id=change.camera_id,
            condition=change.condition,
            phase=change.phase,
            changed_frac=round(min(max(change.changed_frac, 0.0), 1.0), 4),
            brightness_spread=round(min(max(change.brightness_spread, 0.0), 256.0), 2),
            sharpness_ratio=round(min(max(change.sharpness_ratio, 0.0), 1000.0), 3),
            relearn_s=round(max(change.relearn_s, 0.0), 1),
        )

    def message(
        self,
        record: DumpingRecord,
        evidence: tuple[EvidenceRef, ...] = (),
        evidence_error: str | None = None,
    ) -> DumpingEvent:
        version = self._versions.get(record.event_id, -1) + 1
        self._versions[record.event_id] = version
        x1, y1, x2, y2 = record.box
        label = "object" if record.class_id is None else self.names.get(record.class_id, "object")
        return DumpingEvent(
            id=stable_id("dumping-event", record.event_id, version),
            ts_capture=self.clock.at(record.at),
            seq=self._take_seq(),
            event_id=record.event_id,
            phase=record.phase,
            version=version,
            camera_id=record.camera_id,
            zone_id=record.zone_id,
            state=_STATE[record.state],
            appeared_at=self.clock.at(record.appeared_at),
            owner_left_at=self.clock.maybe(record.owner_left_at),
            alerted_at=self.clock.at(record.alerted_at),
            ended_at=self.clock.maybe(record.ended_at),
            box=Box(
                class_id=record.class_id,
                label=label,
                confidence=round(min(max(record.confidence, 0.0), 1.0), 4),
                x1=float(x1),
                y1=float(y1),
                x2=float(x2),
                y2=float(y2),
                track_id=None,
            ),
            owner_track_id=record.owner_track_id,
            confidence=round(min(max(record.confidence, 0.0), 1.0), 4),
            evidence=evidence,
            evidence_error=evidence_error,
        )


def dumping_config(settings: DumpingSettings) -> DumpingConfig:
    return DumpingConfig(
        attend_ratio=settings.attend_ratio,
        associate_ratio=max(settings.associate_ratio, settings.attend_ratio),
        max_age_s=settings.max_age_s,
        trash_bag_class=settings.trash_bag_class,
    )


def evidence_config(settings: DumpingSettings) -> EvidenceConfig:
    evidence = settings.evidence
    return EvidenceConfig(
        root=evidence.dir,
        pre_roll_s=evidence.pre_roll_s,
        post_roll_s=evidence.post_roll_s,
        blur_bystanders=evidence.blur_bystanders,
        keep_originals=evidence.keep_originals,
        jpeg_quality=evidence.jpeg_quality,
        buffer_s=max(evidence.buffer_s, evidence.pre_roll_s),
    )


class EventGate:
    """Turns a camera's records into messages in order. An alert goes out at once with the
    stills of its evidence (before, alert, owner); the clip needs the post-roll after the
    alert, and follows as one more step of the event (an `update`; or, when the event ended
    meanwhile, its `end`, held back until then) carrying the whole pack. So every event has
    one `new` and at most one `end`.

    Every message carries the evidence as it stands, and why any of it is missing (an
    evidence store that is full or unwritable holds no event back)."""

    def __init__(self, mapper: EventMapper, recorder: EvidenceRecorder | None) -> None:
        self.mapper = mapper
        self.recorder = recorder
        # Events whose clip is still being recorded: their latest record.
        self._latest: dict[uuid.UUID, DumpingRecord] = {}
        self._packs: dict[uuid.UUID, EvidencePack] = {}

    def frame(
        self,
        t: float,
        image: npt.NDArray[np.uint8],
        detections: Detections,
        jpeg: bytes | None = None,
    ) -> None:
        if self.recorder is not None:
            self.recorder.add_frame(t, image, detections, jpeg)

    def records(self, records: list[DumpingRecord]) -> list[DumpingEvent]:
        """The records of the latest frame; returns the messages due now."""
        out: list[DumpingEvent] = []
        for record in records:
            event = record.event_id
            if record.phase == "end" and event in self._latest:
                # The clip is still being recorded: the one `end` goes out with it, at most
                # the post-roll later.
                self._latest[event] = record
                continue
            if record.phase == "new" and self.recorder is not None:
                self.recorder.on_record(record)
                self._packs[event] = self.recorder.stills(event)
                self._latest[event] = record
            elif event in self._latest:
                self._latest[event] = record
            pack = self._packs.get(event) or EvidencePack(event, ())
            out.append(self.mapper.message(record, pack.refs, pack.error))
            if record.phase == "end" and event not in self._latest:
                self._done(event)
        if self.recorder is not None:
            for pack in self.recorder.ready():
                out.extend(self._release(pack))
        return out

    def export_state(self) -> list[dict[str, Any]]:
        """The evidence of the open events, as plain data: a restarted detector's next step
        of an event carries the stills (and clip) it already had, not an empty pack. A clip
        still being recorded is not kept (its frames are not): that event goes on with its
        stills."""
        return [
            {
                "event_id": str(pack.event_id),
                "refs": [ref.model_dump(mode="json") for ref in pack.refs],
                "error": pack.error,
            }
            for pack in self._packs.values()
        ]

    def import_state(self, packs: Sequence[Mapping[str, Any]]) -> None:
        for raw in packs:
            event_id = uuid.UUID(str(raw["event_id"]))
            refs = tuple(EvidenceRef.model_validate(ref) for ref in raw["refs"])
            error = raw.get("error")
            self._packs[event_id] = EvidencePack(
                event_id, refs, None if error is None else str(error)
            )

    def flush(self) -> list[DumpingEvent]:
        """At the end of a file or on shutdown: finish the packs with what there is."""
        out: list[DumpingEvent] = []
        if self.recorder is not None:
            for pack in self.recorder.flush():
                out.extend(self._release(pack))
        return out

    def _release(self, pack: EvidencePack) -> list[DumpingEvent]:
        event_id = pack.event_id
        latest = self._latest.pop(event_id, None)
        if latest is None:
            return []
        self._packs[event_id] = pack
        phase: Phase = "end" if latest.phase == "end" else "update"
        message = self.mapper.message(replace(latest, phase=phase), pack.refs, pack.error)
        if phase == "end":
            self._done(event_id)
        return [message]

    def _done(self, event_id: uuid.UUID) -> None:
        self._packs.pop(event_id, None)
        self.mapper.forget(event_id)
