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


def _events(pipeline: Pipeline) -> list[DumpingEvent]:
    topic = Topics(pipeline.settings.kafka).dumping_events
    return [decode_as(r.value, DumpingEvent) for r in pipeline.read_topic(topic)]


def test_a_killed_detector_resumes_and_ends_the_event_of_a_bag_cleaned_while_it_was_down(
    isolated_pipeline: Pipeline, tmp_path: Path
) -> None:
    pipeline = isolated_pipeline
    # A bag left at ~6 s; a cleaner takes it away at ~36 s; the spot stays empty to 80 s.
    scene = SyntheticScene(SceneSpec("drop_and_clean", seed=7, clean_after_s=30.0, duration_s=80.0))
    video, _ = write_scene(scene, tmp_path / "scene")
    truth = scene.truth
    assert truth.drop_at is not None and truth.removed_at is not None
    zones: list[dict[str, Any]] = truth.camera_zones(DWELL_S)
    env = {
        "PANTAU__CAMERAS__0__ID": "resume-cam",
        "PANTAU__CAMERAS__0__URL": str(video),
        "PANTAU__CAMERAS__0__FPS": str(FPS),
        "PANTAU__CAMERAS__0__ZONES": json.dumps(zones),
        # Every sampled frame is published, so the two parts below cut the file exactly.
        "PANTAU__INGEST__MOTION__ENABLED": "false",
        "PANTAU__DETECT__MAX_FRAME_AGE_S": "0",
        "PANTAU__DUMPING__EVIDENCE__DIR": str(tmp_path / "evidence"),
    }
    first = pipeline.start("detect", "detect", env=env)
    pipeline.start("sink", "sink", env=env)

    # Part one: up to 28 s, past the alert (drop + dwell), before the cleaner comes.
    pipeline.run("ingest", "camera", "--no-realtime", "--max-frames", str(28 * FPS),
                 env=env, timeout=300)  # fmt: skip
    pipeline.wait_for(
        "the dumping alert",
        lambda: any(e.phase == "new" for e in _events(pipeline)),
        timeout=300,
    )
    (alert,) = [e for e in _events(pipeline) if e.phase == "new"]
    # The clip follows the alert after the post-roll; the state written with that batch
    # goes to Kafka with it.
    pipeline.wait_for(
        "the step that brings the clip",
        lambda: any("clip" in {r.kind for r in e.evidence} for e in _events(pipeline)),
        timeout=120,
    )
    # The state written with the alert's batch is in Kafka before that batch's commit;
    # let the detector finish the part, then kill it: no clean shutdown, no flush.
    topics = Topics(pipeline.settings.kafka)
    pipeline.wait_for(
        "the camera's saved state",
        lambda: any(r.key == b"resume-cam" for r in pipeline.read_topic(topics.detect_state)),
        timeout=60,
    )
    first.kill()
    first.wait(timeout=30)
    # Killed on purpose: not a process that died on its own.
    pipeline.processes = [entry for entry in pipeline.processes if entry[1] is not first]

    # Part two, while no detector runs: from 50 s, after the cleaner has left.
    pipeline.run("ingest", "camera", "--no-realtime", "--start-s", "50", env=env, timeout=300)
    second = pipeline.start("detect", "detect", env=env)
    pipeline.wait_for(
        "the event's end",
        lambda: any(e.phase == "end" for e in _events(pipeline)),
        timeout=300,
    )
    ends = [e for e in _events(pipeline) if e.phase == "end"]
    assert [(e.event_id, e.state) for e in ends] == [(alert.event_id, "cleaned")]
    end = ends[0]
    assert end.version > alert.version and end.seq > alert.seq
    assert end.ended_at is not None and end.alerted_at <= end.ended_at
    # The event keeps its times though the second part's frames came on a new file clock.
    assert (end.appeared_at, end.alerted_at) == (alert.appeared_at, alert.alerted_at)
    # ... and its evidence: the end carries the stills and the clip the first detector sent.
    assert {ref.kind for ref in end.evidence} == {"before", "alert", "owner", "clip"}
    assert [e.event_id for e in _events(pipeline) if e.phase == "new"] == [alert.event_id]
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
