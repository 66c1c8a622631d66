"""A real frame from the shared clip through Kafka, YOLO and the sink into PostgreSQL."""

from __future__ import annotations

import pytest

from pantau.codec import decode_as
from pantau.messages import CameraHeartbeat, Detections, Frame
from pantau.topics import Topics
from tests.integration.conftest import Pipeline

CAMERA = "demo-table"


def test_person_in_a_shared_clip_frame_is_detected_and_stored(pipeline: Pipeline) -> None:
    topics = Topics(pipeline.settings.kafka)
    # Nine seconds into the clip a person stands at the table.
    out = pipeline.run("ingest", "camera", "--no-realtime", "--start-s", "9", "--max-frames", "6")
    assert f"camera {CAMERA}: decoded" in out and "published 6" in out

    frames = [decode_as(r.value, Frame) for r in pipeline.read_topic(topics.frames)]
    assert len(frames) == 6
    assert all(
        f.camera_id == CAMERA and f.width == 640 and f.jpeg[:2] == b"\xff\xd8" for f in frames
    )
    assert [f.seq for f in frames] == list(range(frames[0].seq, frames[0].seq + 6))
    frame_ids = [f.id for f in frames]

    # The frames were published before the detector started: none may be skipped as stale.
    pipeline.start("detect", "detect", env={"PANTAU__DETECT__MAX_FRAME_AGE_S": "0"})
    # Keep every box: the six frames are stamped within a fraction of a second (--no-realtime)
    # and the sink otherwise stores a tracked object at most once per detection_sample_s.
    pipeline.start("sink", "sink", env={"PANTAU__SINK__DETECTION_SAMPLE_S": "0"})
    pipeline.wait_for(
        "a person detection row for this test's frames",
        lambda: (
            pipeline.scalar(
                "SELECT count(*) FROM detections WHERE label = 'person' AND frame_id = ANY(%s)",
                frame_ids,
            )
            >= 1
        ),
    )

    detections = [decode_as(r.value, Detections) for r in pipeline.read_topic(topics.detections)]
    assert sorted(d.frame_id for d in detections) == sorted(frame_ids)
    people = [b for d in detections for b in d.boxes if b.label == "person"]
    assert people and max(b.confidence for b in people) > 0.5
    # Every stored row matches a box the detector published, no more.
    pipeline.wait_for(
        "all detection rows",
        lambda: (
            pipeline.scalar("SELECT count(*) FROM detections WHERE frame_id = ANY(%s)", frame_ids)
            == sum(len(d.boxes) for d in detections)
        ),
        timeout=30,
    )

    beats = [decode_as(r.value, CameraHeartbeat) for r in pipeline.read_topic(topics.camera_health)]
    assert beats and beats[-1].status == "ended" and beats[-1].frames_published == 6
    pipeline.wait_for(
        "heartbeat rows",
        lambda: (
            pipeline.scalar(
                "SELECT count(*) FROM camera_health WHERE heartbeat_id = ANY(%s)",
                [b.id for b in beats],
            )
            == len(beats)
        ),
        timeout=30,
    )
    snapshot = pipeline.settings.detect.snapshot_dir
    assert snapshot is not None and (snapshot / f"{CAMERA}.png").stat().st_size > 10_000


def test_motion_gate_publishes_few_frames_of_a_still_scene_and_counters_add_up(
    pipeline: Pipeline,
) -> None:
    topics = Topics(pipeline.settings.kafka)
    # The table is empty for the first 5.5 s of the clip: only the periodic static checks
    # (ingest.motion.static_interval_s of clip time) are worth a detector's time.
    interval_ms = pipeline.settings.ingest.motion.static_interval_s * 1000
    assert 3 * interval_ms < 5500
    out = pipeline.run("ingest", "camera", "--no-realtime", "--max-frames", "3")
    assert "published 3" in out and "static_check 3" in out

    frames = [decode_as(r.value, Frame) for r in pipeline.read_topic(topics.frames)]
    positions = sorted(f.source_pos_ms or 0.0 for f in frames)
    assert positions == pytest.approx([0.0, interval_ms, 2 * interval_ms], abs=100.0)

    beats = [decode_as(r.value, CameraHeartbeat) for r in pipeline.read_topic(topics.camera_health)]
    last = max(beats, key=lambda b: b.seq)
    assert last.status == "ended" and last.frames_published == 3
    # Two intervals of a 10 fps clip (a frame every 100 ms) decoded, 3 frames published, the
    # rest skipped.
    assert last.frames_decoded >= 0.75 * 2 * interval_ms / 100
    for beat in beats:
        assert beat.frames_decoded == beat.frames_published + beat.frames_skipped


def test_unreachable_camera_reconnects_with_heartbeats_and_never_logs_its_password(
    pipeline: Pipeline,
) -> None:
    topics = Topics(pipeline.settings.kafka)
    secret_url = "rtsp://admin:Rahasia-123@127.0.0.1:9/Streaming/Channels/102"
    process = pipeline.start(
        "camera",
        "ingest",
        "camera",
        "--duration",
        "6",
        env={"PANTAU__CAMERAS__0__URL": secret_url, "PANTAU__LOGGING__LEVEL": "DEBUG"},
    )
    assert process.wait(timeout=60) == 0, pipeline.log_of(process)
    log = pipeline.log_of(process)
    assert "Rahasia-123" not in log
    assert "rtsp://***@127.0.0.1:9/Streaming/Channels/102" in log
    assert "retrying in" in log

    beats = [decode_as(r.value, CameraHeartbeat) for r in pipeline.read_topic(topics.camera_health)]
    assert len(beats) >= 3
    statuses = {b.status for b in beats[:-1]}
    assert "reconnecting" in statuses
    assert statuses <= {"connecting", "reconnecting"}
    assert all("Rahasia-123" not in (b.last_error or "") for b in beats)
    assert beats[-1].status == "ended" and beats[-1].frames_published == 0
