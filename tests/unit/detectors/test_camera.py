"""One camera's pipeline after YOLO on a synthetic drop-and-leave scene (ground-truth boxes
for the network): a resolution change starts it over without forgetting the alert it was
finishing, and evidence that cannot be written leaves the events marked, not missing."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np
import pytest

from detectors.camera import CameraPipeline
from detectors.detections import Detections
from detectors.evaluation.synthetic import SceneSpec, SyntheticScene
from detectors.events import EventClock
from pantau.messages import DumpingEvent
from pantau.settings import CameraSettings, DumpingSettings, TrackerSettings

ORIGIN = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)
DWELL_S = 5.0
NAMES = {0: "person", 24: "backpack"}


def pipeline_for(scene: SyntheticScene, evidence_dir: Path) -> CameraPipeline:
    camera = CameraSettings.model_validate(
        {"id": "tps-gedeg", "url": "synthetic", "zones": scene.truth.camera_zones(DWELL_S)}
    )
    dumping = DumpingSettings.model_validate({"evidence": {"dir": str(evidence_dir)}})
    return CameraPipeline(
        camera, tracker=TrackerSettings(), dumping=dumping, names=NAMES, clock=EventClock(ORIGIN)
    )


def scaled(found: Detections, factor: float) -> Detections:
    return Detections(found.xyxy * factor, found.confidence, found.class_id, found.tracker_id)


def until_alert(
    pipeline: CameraPipeline, frames: Iterator[object]
) -> tuple[list[DumpingEvent], float]:
    """Feed frames until the alert; (every message so far, the alert frame's time)."""
    events: list[DumpingEvent] = []
    for frame in frames:
        _, _, out = pipeline.frame(frame.t, frame.image, frame.truth.detections())  # type: ignore[attr-defined]
        events += out
        if any(e.phase == "new" for e in out):
            return events, frame.t  # type: ignore[attr-defined]
    raise AssertionError(f"no alert: {[(e.phase, e.state) for e in events]}")


def test_a_resolution_change_starts_over_and_finishes_the_pending_alert(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    scene = SyntheticScene(SceneSpec("drop_and_leave", seed=0, duration_s=30.0))
    pipeline = pipeline_for(scene, tmp_path)
    frames = scene.frames()
    events, _ = until_alert(pipeline, frames)
    (alert,) = events
    # The stills went out with the alert; the clip waits for the post-roll.
    assert [r.kind for r in alert.evidence] == ["before", "alert", "owner"]
    old = (pipeline.tracker, pipeline.detector, pipeline.gate)

    larger: list[list[DumpingEvent]] = []
    with caplog.at_level(logging.INFO, logger="detectors.camera"):
        for frame in frames:
            image = np.asarray(cv2.resize(frame.image, (1280, 720)))
            larger.append(pipeline.frame(frame.t, image, scaled(frame.truth.detections(), 2.0))[2])

    # At the first larger frame the old pipeline's alert ends (the new models cannot tell
    # where its object is), once, with the evidence it had.
    finished = larger[0]
    assert [(e.event_id, e.phase, e.state) for e in finished] == [
        (alert.event_id, "end", "expired")
    ]
    assert [r.kind for r in finished[0].evidence] == ["before", "alert", "owner", "clip"]
    assert finished[0].evidence_error is None
    assert finished[0].seq > alert.seq and finished[0].version == alert.version + 1
    # A new pipeline, learning the larger picture: the bag already there is its scene.
    assert all(
        a is not b
        for a, b in zip(old, (pipeline.tracker, pipeline.detector, pipeline.gate), strict=True)
    )
    assert pipeline.size == (1280, 720)
    assert all(out == [] for out in larger[1:])
    assert [r.getMessage() for r in caplog.records if "resolution" in r.getMessage()] == [
        "camera tps-gedeg: resolution changed from 640x360 to 1280x720; its scene models start over"
    ]


def test_evidence_that_cannot_be_written_marks_the_events_and_the_camera_goes_on(
    tmp_path: Path,
) -> None:
    (tmp_path / "evidence").write_text("a file where the evidence folder should be")
    scene = SyntheticScene(SceneSpec("drop_and_leave", seed=0, duration_s=30.0))
    pipeline = pipeline_for(scene, tmp_path / "evidence" / "store")
    frames = scene.frames()
    events, alert_t = until_alert(pipeline, frames)
    for frame in frames:
        events += pipeline.frame(frame.t, frame.image, frame.truth.detections())[2]
    reason = "NotADirectoryError: [Errno 20] Not a directory"
    assert [(e.phase, e.evidence, e.evidence_error) for e in events] == [
        ("new", (), f"before, alert, owner missing: {reason}"),
        ("update", (), f"before, alert, owner, clip missing: {reason}"),
    ]
    assert str(tmp_path) not in (events[0].evidence_error or "")
    assert scene.truth.frames[-1].t > alert_t + 5.0
