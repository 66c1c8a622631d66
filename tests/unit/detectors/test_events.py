"""Dumping records → event messages: the clock, the versions, alerts held for evidence."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from detectors.detections import Detections
from detectors.dumping import DumpingRecord
from detectors.events import EventClock, EventGate, EventMapper
from detectors.evidence import EvidencePack
from pantau.codec import DecodeError, decode, decode_as, encode
from pantau.messages import DumpingEvent, EvidenceRef
from tests.factories import SAMPLES

ORIGIN = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)
EVENT = uuid.UUID("00000000-0000-0000-0000-00000000000a")


def record(phase: str, at: float, state: str = "alerted", **changes: Any) -> DumpingRecord:
    base = DumpingRecord(
        event_id=EVENT, phase=phase, version=0, state=state, camera_id="cam-1",  # type: ignore[arg-type]
        zone_id="tepi", candidate_id=1, at=at, appeared_at=10.0, owner_left_at=12.0,
        alerted_at=42.0, ended_at=None, box=(100.0, 200.0, 130.0, 240.0), class_id=None,
        class_confidence=0.0, owner_track_id=7, owner_class_id=0, owner_box=None,
        owner_seen_at=11.0, confidence=0.7, before_at=7.0,
    )  # fmt: skip
    return replace(base, **changes)


class FakeRecorder:
    """Stands in for EvidenceRecorder: a pack is ready `post_roll` seconds after its alert."""

    def __init__(self, post_roll: float) -> None:
        self.post_roll = post_roll
        self.t = 0.0
        self.started: dict[uuid.UUID, float] = {}

    def add_frame(
        self, t: float, image: object, detections: object, jpeg: bytes | None = None
    ) -> None:
        self.t = t

    def on_record(self, r: DumpingRecord) -> None:
        self.started[r.event_id] = r.at

    def stills(self, event_id: uuid.UUID) -> EvidencePack:
        still = EvidenceRef(kind="alert", uri="file:///e/alert.jpg", sha256="ab" * 32)
        return EvidencePack(event_id, (still,))

    def ready(self) -> list[EvidencePack]:
        done = [e for e, at in self.started.items() if self.t >= at + self.post_roll]
        for e in done:
            del self.started[e]
        still = EvidenceRef(kind="alert", uri="file:///e/alert.jpg", sha256="ab" * 32)
        clip = EvidenceRef(kind="clip", uri="file:///e/clip.webm", sha256="cd" * 32)
        return [EvidencePack(e, (still, clip)) for e in done]

    def flush(self) -> list[EvidencePack]:
        self.t = float("inf")
        return self.ready()


IMAGE = np.zeros((4, 4, 3), dtype=np.uint8)


def test_clock_maps_frame_seconds_to_utc() -> None:
    assert EventClock(ORIGIN).at(42.5) == ORIGIN + timedelta(seconds=42.5)
    assert EventClock.epoch().at(0) == datetime(1970, 1, 1, tzinfo=UTC)
    with pytest.raises(ValueError, match="timezone-aware"):
        EventClock(datetime(2026, 1, 1))


def test_messages_count_versions_per_event_and_keep_its_id() -> None:
    mapper = EventMapper(EventClock(ORIGIN), {24: "backpack"})
    new = mapper.message(record("new", 42.0))
    update = mapper.message(record("update", 50.0, class_id=24))
    end = mapper.message(record("end", 60.0, state="cleaned", ended_at=60.0))
    assert [(m.phase, m.version, m.seq) for m in (new, update, end)] == [
        ("new", 0, 0), ("update", 1, 1), ("end", 2, 2)
    ]  # fmt: skip
    assert {m.event_id for m in (new, update, end)} == {EVENT}
    assert len({m.id for m in (new, update, end)}) == 3
    assert new.appeared_at == ORIGIN + timedelta(seconds=10)
    assert new.box.label == "object" and new.box.class_id is None
    assert update.box.label == "backpack"
    assert end.ended_at == ORIGIN + timedelta(seconds=60) and end.state == "cleaned"


def test_an_alert_goes_out_with_its_stills_and_the_clip_follows() -> None:
    gate = EventGate(EventMapper(EventClock(ORIGIN), {}), FakeRecorder(post_roll=5.0))  # type: ignore[arg-type]
    out = []
    for t, records in [(42.0, [record("new", 42.0)]), (44.0, [record("update", 44.0)]),
                       (46.0, []), (47.0, [])]:  # fmt: skip
        gate.frame(t, IMAGE, Detections.empty())
        out.append((t, gate.records(records)))
    released = {t: [(m.phase, m.version, len(m.evidence)) for m in ms] for t, ms in out}
    assert released == {
        42.0: [("new", 0, 1)],  # at once, with the stills
        44.0: [("update", 1, 1)],
        46.0: [],
        47.0: [("update", 2, 2)],  # the post-roll is over: the clip joins the stills
    }


def test_an_event_that_ended_before_its_clip_ends_once_with_it() -> None:
    gate = EventGate(EventMapper(EventClock(ORIGIN), {}), FakeRecorder(post_roll=5.0))  # type: ignore[arg-type]
    gate.frame(42.0, IMAGE, Detections.empty())
    gate.records([record("new", 42.0)])
    gate.frame(43.0, IMAGE, Detections.empty())
    ended = gate.records([record("end", 43.0, state="picked_up", ended_at=43.0)])
    gate.frame(47.0, IMAGE, Detections.empty())
    clip = gate.records([])
    assert ended == []  # held back until the clip is written
    assert [(m.phase, m.state, m.version) for m in clip] == [("end", "picked_up", 1)]
    assert [r.kind for r in clip[0].evidence] == ["alert", "clip"]
    # It says when the object went, not when the clip was finished.
    assert clip[0].ended_at == ORIGIN + timedelta(seconds=43.0)


def test_without_evidence_messages_go_at_once_and_flush_finishes_clips() -> None:
    gate = EventGate(EventMapper(EventClock(ORIGIN), {}), None)
    assert [m.phase for m in gate.records([record("new", 42.0)])] == ["new"]

    waiting = EventGate(EventMapper(EventClock(ORIGIN), {}), FakeRecorder(post_roll=5.0))  # type: ignore[arg-type]
    waiting.frame(42.0, IMAGE, Detections.empty())
    assert [m.phase for m in waiting.records([record("new", 42.0)])] == ["new"]
    assert [(m.phase, len(m.evidence)) for m in waiting.flush()] == [("update", 2)]


GOLDEN = Path(__file__).parents[1] / "pantau" / "golden"


def test_a_version_1_event_from_an_older_detector_still_decodes() -> None:
    # Bytes as detectors sent them before `evidence_error` (schema_version 1).
    data = (GOLDEN / "dumping_event.v1.bin").read_bytes()
    assert b'"schema_version":1' in data and b"evidence_error" not in data
    current = SAMPLES["dumping_event"]
    for event in (decode(data), decode_as(data, DumpingEvent)):
        assert isinstance(event, DumpingEvent)
        assert event.schema_version == 1 and event.evidence_error is None
        assert event == current.model_copy(update={"schema_version": 1, "evidence_error": None})


def test_events_are_version_2_and_a_version_1_event_cannot_carry_an_evidence_error() -> None:
    event = EventMapper(EventClock(ORIGIN), {}).message(record("new", 42.0), (), "clip missing: x")
    again = decode_as(encode(event), DumpingEvent)
    assert (again.schema_version, again.evidence_error) == (2, "clip missing: x")
    forged = encode(event).replace(b'"schema_version":2', b'"schema_version":1')
    with pytest.raises(
        DecodeError, match="evidence_error is a schema_version 2 field; this message says 1"
    ):
        decode_as(forged, DumpingEvent)
