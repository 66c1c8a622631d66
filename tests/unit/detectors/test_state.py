"""A camera's detector state survives a restart: written as a snapshot, read back by a new
pipeline, which ends the open event when the object is gone. Damaged or foreign snapshots
are refused with a reason, never unpickled, and the camera starts afresh."""

from __future__ import annotations

import io
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from detectors.camera import CameraPipeline
from detectors.evaluation.synthetic import SceneSpec, SyntheticScene
from detectors.events import EventClock
from detectors.state import Snapshot, SnapshotError, decode_snapshot, encode_snapshot
from pantau.messages import DumpingEvent
from pantau.settings import CameraSettings, DumpingSettings, TrackerSettings

ORIGIN = datetime(2026, 12, 1, 1, 0, tzinfo=UTC)
LIMIT = 1 << 20


def test_a_snapshot_reads_back_as_written() -> None:
    snap = Snapshot(
        "cam-1", 12.5, (640, 360), {"a": [1, 2], "b": {"c": None}},
        {"x": np.arange(6, dtype=np.float16).reshape(2, 3), "m": np.packbits([1, 0, 1])},
    )  # fmt: skip
    back = decode_snapshot(encode_snapshot(snap), max_bytes=LIMIT)
    assert (back.camera_id, back.t, back.size, back.parts) == (
        "cam-1",
        12.5,
        (640, 360),
        snap.parts,
    )
    assert set(back.arrays) == {"x", "m"}
    np.testing.assert_array_equal(back.arrays["x"], snap.arrays["x"])


def _npz(**arrays: object) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)  # type: ignore[arg-type]
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "not a readable archive"),
        (b"\x00" * 100, "not a readable archive"),
        (b"x" * (LIMIT + 1), "at most"),
        # An archive of pickled objects is never unpickled.
        (_npz(**{"meta.json": np.array([{"format": 1}], dtype=object)}), "not a readable"),
        (_npz(**{"meta.json": np.frombuffer(b'{"format": "other"}', np.uint8)}), "expected a"),
        (_npz(**{"meta.json": np.frombuffer(b"[1, 2]", np.uint8)}), "expected a"),
        (_npz(other=np.zeros(3)), "not a readable archive"),
    ],
)
def test_what_is_not_a_snapshot_is_refused_with_a_reason(data: bytes, reason: str) -> None:
    with pytest.raises(SnapshotError, match=reason):
        decode_snapshot(data, max_bytes=LIMIT)


def test_an_archive_that_unpacks_to_far_more_than_it_weighs_is_refused() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        with archive.open("meta.json.npy", "w") as f:
            np.lib.format.write_array(f, np.frombuffer(b"{}", np.uint8))
        with archive.open("big.npy", "w") as f:
            np.lib.format.write_array(f, np.zeros(20 * LIMIT, dtype=np.uint8))
    with pytest.raises(SnapshotError, match="unpacked"):
        decode_snapshot(buffer.getvalue(), max_bytes=LIMIT)


# --------------------------------------------------------------------------- a whole camera


def pipeline_for(
    scene: SyntheticScene,
    evidence_dir: Path,
    camera_id: str = "tps",
    origin: datetime = ORIGIN,
    *,
    evidence: bool = False,
) -> CameraPipeline:
    camera = CameraSettings.model_validate(
        {"id": camera_id, "url": "synthetic", "zones": scene.truth.camera_zones(5.0)}
    )
    dumping = DumpingSettings.model_validate({"evidence": {"dir": str(evidence_dir)}})
    return CameraPipeline(
        camera,
        tracker=TrackerSettings(),
        dumping=dumping,
        names={0: "person"},
        clock=EventClock(origin),
        evidence=evidence,
    )


def test_a_restarted_pipeline_ends_the_event_of_an_object_taken_away_while_it_was_down(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    scene = SyntheticScene(SceneSpec("drop_and_clean", seed=7, clean_after_s=30.0, duration_s=80))
    removed_at = scene.truth.removed_at
    assert removed_at is not None
    frames = list(scene.frames())
    before = pipeline_for(scene, tmp_path)
    sent: list[DumpingEvent] = []
    for frame in frames:
        if frame.t >= removed_at - 8:
            break
        sent += before.frame(frame.t, frame.image, frame.truth.detections())[2]
    (alert,) = sent
    assert alert.phase == "new"
    saved = before.snapshot()
    assert saved is not None and len(saved) < 400_000

    # A file source read again later starts its clock anew: the event keeps its own times.
    after = pipeline_for(scene, tmp_path, origin=ORIGIN + timedelta(minutes=7))
    assert after.restore(saved, max_bytes=LIMIT)
    later: list[DumpingEvent] = []
    for frame in frames:
        if frame.t >= removed_at + 10:
            later += after.frame(frame.t, frame.image, frame.truth.detections())[2]
    assert [(e.event_id, e.phase, e.state) for e in later] == [(alert.event_id, "end", "cleaned")]
    assert later[0].version == alert.version + 1 and later[0].seq > alert.seq
    assert (later[0].appeared_at, later[0].alerted_at) == (alert.appeared_at, alert.alerted_at)
    assert later[0].ended_at is not None and later[0].ended_at > alert.alerted_at

    # The same snapshot is no other camera's, and damaged it is no one's: afresh, logged.
    other = pipeline_for(scene, tmp_path, camera_id="other")
    assert not other.restore(saved, max_bytes=LIMIT)
    assert not after.restore(saved[: len(saved) // 2], max_bytes=LIMIT)
    assert after.detector.tracker.cases() == ()
    assert "cannot be used" in caplog.text


@pytest.mark.parametrize(
    ("part", "value"),
    [
        ("static", ["not", "a", "mapping"]),
        ("dumping", {"cases": [{"state": "alerted"}], "ignored": [], "last_t": 1.0}),
        ("last_track_id", "many"),
        ("clock_origin", "yesterday"),
        ("events", None),
        ("evidence", [{"event_id": "not-a-uuid", "refs": []}]),
    ],
)
def test_a_snapshot_with_a_part_of_the_wrong_shape_starts_the_camera_afresh(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, part: str, value: object
) -> None:
    scene = SyntheticScene(SceneSpec("drop_and_leave", seed=3, duration_s=20))
    before = pipeline_for(scene, tmp_path)
    for frame in scene.frames():
        before.frame(frame.t, frame.image, frame.truth.detections())
    saved = before.snapshot()
    assert saved is not None
    snap = decode_snapshot(saved, max_bytes=LIMIT)
    forged = encode_snapshot(
        Snapshot(snap.camera_id, snap.t, snap.size, {**snap.parts, part: value}, snap.arrays)
    )

    after = pipeline_for(scene, tmp_path)
    assert not after.restore(forged, max_bytes=LIMIT)
    assert after.detector.tracker.cases() == ()
    assert "cannot be used" in caplog.text
    # The camera goes on from the next frame as a fresh one.
    frame = next(iter(scene.frames()))
    after.frame(frame.t, frame.image, frame.truth.detections())


def test_a_restarted_pipeline_ends_the_event_with_the_evidence_it_had(tmp_path: Path) -> None:
    scene = SyntheticScene(SceneSpec("drop_and_clean", seed=7, clean_after_s=30.0, duration_s=80))
    removed_at = scene.truth.removed_at
    assert removed_at is not None
    frames = list(scene.frames())
    before = pipeline_for(scene, tmp_path, evidence=True)
    sent: list[DumpingEvent] = []
    for frame in frames:
        if frame.t >= removed_at - 8:
            break
        sent += before.frame(frame.t, frame.image, frame.truth.detections())[2]
    # The alert with its stills, then the step that brought the clip.
    assert [e.phase for e in sent] == ["new", "update"]
    kept = {ref.kind for ref in sent[-1].evidence}
    assert kept == {"before", "alert", "owner", "clip"}
    saved = before.snapshot()
    assert saved is not None

    after = pipeline_for(scene, tmp_path, evidence=True)
    assert after.restore(saved, max_bytes=LIMIT)
    later: list[DumpingEvent] = []
    for frame in frames:
        if frame.t >= removed_at + 10:
            later += after.frame(frame.t, frame.image, frame.truth.detections())[2]
    (end,) = later
    assert (end.phase, end.state) == ("end", "cleaned")
    # The stored event keeps its evidence: the end carries what the update had.
    assert end.evidence == sent[-1].evidence
    assert end.version == sent[-1].version + 1
