"""A dumping scene through the real pipeline — camera ingest → Kafka → detector (YOLO,
ByteTrack, static objects, dumping logic, evidence) → events.dumping.v1 → sink → PostgreSQL —
gives the same event as `pantau detect-file` on the same file, with its evidence on disk."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from detectors.evaluation.synthetic import SceneSpec, SyntheticScene, write_scene
from pantau.evidence_store import file_uri_path
from tests.integration.conftest import Pipeline


def _evidence_intact(evidence: list[dict[str, Any]]) -> None:
    assert {ref["kind"] for ref in evidence} == {"before", "alert", "owner", "clip"}
    for ref in evidence:
        data = file_uri_path(ref["uri"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == ref["sha256"], ref["uri"]


def test_kafka_path_and_offline_run_find_the_same_left_bag(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    scene = SyntheticScene(SceneSpec(scenario="drop_and_leave", seed=0))
    video, _ = write_scene(scene, tmp_path / "scene")
    drop_at = scene.truth.drop_at
    zones = scene.truth.camera_zones(dwell_s=30)
    assert drop_at is not None

    camera = tmp_path / "camera.yaml"
    camera.write_text(
        yaml.safe_dump({"id": "demo-table", "fps": 5, "max_width": 640, "zones": zones})
    )
    origin = datetime(2026, 1, 1, tzinfo=UTC)
    out = pipeline.run(
        "detect-file", str(video), "--camera-config", str(camera), "--json",
        "--start", origin.isoformat(), "--evidence-dir", str(tmp_path / "evidence-offline"),
        timeout=600,
    )  # fmt: skip
    offline = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    alerts = [e for e in offline if e["phase"] == "new"]
    assert len(alerts) == 1, offline
    offline_alert = alerts[0]
    # Found within the dwell time plus 2 s of the drop.
    alert_s = (datetime.fromisoformat(offline_alert["alerted_at"]) - origin).total_seconds()
    assert drop_at + 30 <= alert_s <= drop_at + 32, (drop_at, alert_s)
    # The alert carries the stills at once; the clip follows in the event's last step.
    assert {ref["kind"] for ref in offline_alert["evidence"]} == {"before", "alert", "owner"}
    last = [e for e in offline if e["event_id"] == offline_alert["event_id"]][-1]
    assert last["version"] > offline_alert["version"]
    _evidence_intact(last["evidence"])

    env = {
        "PANTAU__CAMERAS__0__URL": str(video),
        "PANTAU__CAMERAS__0__ZONES": json.dumps(zones),
        # The motion gate stays on: the offline run holds back the same frames the camera
        # does (it decides on the file's clock either way).
        # The file is published faster than real time; none of it may be skipped as stale.
        "PANTAU__DETECT__MAX_FRAME_AGE_S": "0",
        "PANTAU__DUMPING__EVIDENCE__DIR": str(tmp_path / "evidence-kafka"),
    }
    pipeline.start("detect", "detect", env=env)
    pipeline.start("sink", "sink", env=env)
    pipeline.run("ingest", "camera", "--no-realtime", env=env, timeout=300)
    pipeline.wait_for(
        "the dumping event with its whole evidence pack in PostgreSQL",
        lambda: (
            (
                pipeline.scalar(
                    "SELECT count(*) FROM dumping_events WHERE jsonb_array_length(evidence) = 4"
                )
                or 0
            )
            >= 1
        ),
        timeout=400,
    )
    with pipeline.db() as conn:
        rows = conn.execute(
            "SELECT event_id::text, zone_id, state, x1, y1, x2, y2, evidence, "
            "extract(epoch FROM alerted_at - appeared_at) FROM dumping_events"
        ).fetchall()
    assert len(rows) == 1, rows
    event_id, zone_id, state, x1, y1, x2, y2, evidence, unattended = rows[0]
    # The same event: same id (camera + appearance on the file's clock + box), zone, box.
    assert event_id == offline_alert["event_id"]
    assert zone_id == offline_alert["zone_id"] == "pavement"
    assert state == offline_alert["state"] == "alerted"
    box = offline_alert["box"]
    assert [x1, y1, x2, y2] == [box["x1"], box["y1"], box["x2"], box["y2"]]
    _evidence_intact(evidence)
    assert abs(unattended - 30) < 3, unattended
    # JSON columns hold objects, not JSON text in a string (the wall reads labels ->> 'table').
    # The sink records its metrics every sink.metrics_interval_s, perhaps after the event.
    pipeline.wait_for(
        "the sink's own metrics in PostgreSQL",
        lambda: (pipeline.scalar("SELECT count(*) FROM pipeline_metrics") or 0) > 0,
        timeout=60,
    )
    assert (
        pipeline.scalar(
            "SELECT count(*) FROM pipeline_metrics WHERE jsonb_typeof(labels) <> 'object'"
        )
        == 0
    )
    assert pipeline.scalar("SELECT count(*) FROM pipeline_metrics") > 0
    # The bag the scene dropped, found within dwell + 2 s of the drop.
    bx1, by1, bx2, by2 = scene.truth.object_box or (0, 0, 0, 0)
    assert x1 < bx2 and bx1 < x2 and y1 < by2 and by1 < y2
