"""A detector killed with an alerted dumping event open resumes the camera from its saved
state (detect.state.v1): the bag that was cleaned away while it was down ends the same event
as `cleaned`, once; nothing is raised again. Real Kafka, PostgreSQL and YOLO weights."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from detectors.evaluation.synthetic import SceneSpec, SyntheticScene, write_scene
from pantau.codec import decode_as
from pantau.messages import DumpingEvent
from pantau.topics import Topics
from tests.integration.conftest import Pipeline

FPS = 5
DWELL_S = 10


def dumping_events(pipeline: Pipeline) -> list[DumpingEvent]:
    topic = Topics(pipeline.settings.kafka).dumping_events
    return [decode_as(r.value, DumpingEvent) for r in pipeline.read_topic(topic)]


def drop_and_clean(
    folder: Path, camera_id: str, *, seed: int, fps: int = FPS
) -> tuple[dict[str, Any], SyntheticScene]:
    """A camera of a synthetic street: a bag left at ~6 s (alerted after the dwell), a cleaner
    taking it away at ~36 s, the spot empty to 80 s. Its settings, and the scene."""
    scene = SyntheticScene(
        SceneSpec("drop_and_clean", seed=seed, clean_after_s=30.0, duration_s=80.0)
    )
    video, _ = write_scene(scene, folder)
    camera = {
        "id": camera_id,
        "url": str(video),
        "fps": fps,
        "zones": scene.truth.camera_zones(DWELL_S),
    }
    return camera, scene


def alerted_part_one(pipeline: Pipeline, env: dict[str, str], camera_id: str) -> DumpingEvent:
    """The camera's first 28 s (past the alert: drop and dwell; before the cleaner comes)
    through the detector, until the alert, the clip step after it and the camera's saved
    state are on Kafka. The alert."""
    pipeline.run("ingest", "camera", "--no-realtime", "--max-frames", str(28 * FPS),
                 env=env, timeout=300)  # fmt: skip
    pipeline.wait_for(
        "the dumping alert",
        lambda: any(e.phase == "new" for e in dumping_events(pipeline)),
        timeout=300,
    )
    (alert,) = [e for e in dumping_events(pipeline) if e.phase == "new"]
    # The clip follows the alert after the post-roll; the state is written with that batch.
    state = Topics(pipeline.settings.kafka).detect_state
    pipeline.wait_for(
        "the step that brings the clip, and the camera's saved state",
        lambda: (
            any("clip" in {r.kind for r in e.evidence} for e in dumping_events(pipeline))
            and any(r.key == camera_id.encode() for r in pipeline.read_topic(state))
        ),
        timeout=120,
    )
    return alert


def detector_env(cameras: list[dict[str, Any]], folder: Path) -> dict[str, str]:
    """The cameras, every sampled frame published (so parts of a file cut it exactly), no
    frame too old to detect, evidence under `folder`."""
    return {
        "PANTAU__CAMERAS": json.dumps(cameras),
        "PANTAU__INGEST__MOTION__ENABLED": "false",
        "PANTAU__DETECT__MAX_FRAME_AGE_S": "0",
        "PANTAU__DUMPING__EVIDENCE__DIR": str(folder / "evidence"),
    }


def test_a_killed_detector_resumes_and_ends_the_event_of_a_bag_cleaned_while_it_was_down(
    isolated_pipeline: Pipeline, tmp_path: Path
) -> None:
    pipeline = isolated_pipeline
    camera, scene = drop_and_clean(tmp_path / "scene", "resume-cam", seed=7)
    truth = scene.truth
    assert truth.drop_at is not None and truth.removed_at is not None
    env = detector_env([camera], tmp_path)
    first = pipeline.start("detect", "detect", env=env)
    pipeline.start("sink", "sink", env=env)

    alert = alerted_part_one(pipeline, env, "resume-cam")
    # The state written with the alert's batch is in Kafka before that batch's commit; the
    # detector has finished the part: kill it, no clean shutdown, no flush.
    first.kill()
    first.wait(timeout=30)
    # Killed on purpose: not a process that died on its own.
    pipeline.processes = [entry for entry in pipeline.processes if entry[1] is not first]

    # Part two, while no detector runs: from 50 s, after the cleaner has left.
    pipeline.run("ingest", "camera", "--no-realtime", "--start-s", "50", env=env, timeout=300)
    second = pipeline.start("detect", "detect", env=env)
    pipeline.wait_for(
        "the event's end",
        lambda: any(e.phase == "end" for e in dumping_events(pipeline)),
        timeout=300,
    )
    ends = [e for e in dumping_events(pipeline) if e.phase == "end"]
    assert [(e.event_id, e.state) for e in ends] == [(alert.event_id, "cleaned")]
    end = ends[0]
    assert end.version > alert.version and end.seq > alert.seq
    assert end.ended_at is not None and end.alerted_at <= end.ended_at
    # The event keeps its times though the second part's frames came on a new file clock.
    assert (end.appeared_at, end.alerted_at) == (alert.appeared_at, alert.alerted_at)
    # ... and its evidence: the end carries the stills and the clip the first detector sent.
    assert {ref.kind for ref in end.evidence} == {"before", "alert", "owner", "clip"}
    assert [e.event_id for e in dumping_events(pipeline) if e.phase == "new"] == [alert.event_id]
    log = pipeline.log_of(second)
    assert "resumed its detector state" in log, log[-3000:]

    # Stored: the one event, ended as cleaned.
    pipeline.wait_for(
        "the ended event in PostgreSQL",
        lambda: (
            pipeline.scalar("SELECT state FROM dumping_events WHERE event_id = %s", alert.event_id)
            == "cleaned"
        ),
        timeout=120,
    )
    # One row: the event's end updated the row of its alert.
    assert pipeline.scalar("SELECT count(*) FROM dumping_events") == 1
    assert pipeline.scalar("SELECT jsonb_array_length(evidence) FROM dumping_events") == 4
