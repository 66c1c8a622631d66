"""The detector's word on a camera's picture through the real services: cameras.view.v1 →
faust → alerts → PostgreSQL (and the notifier → the Telegram Bot API, in Bahasa Indonesia).

A covered lens raises camera_tampered, which clears when the picture is back; a camera turned
onto another view raises camera_view_changed, which stays open for a person after detection
resumed; every view message is stored, and garbage on the topic is a dead letter of each
stage that reads it while the stream processor goes on.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from pantau import kafka
from pantau.codec import decode_as
from pantau.ids import stable_id
from pantau.messages import CameraView, DeadLetter
from pantau.topics import Topics
from tests.integration.conftest import Pipeline
from tests.integration.test_alerts_pipeline import (
    Recorder,
    alert_env,
    alerts_of,
    recorder,  # noqa: F401 - the fixture, used by name
)
from tests.integration.test_escalation import worker_ready

CAMERA = "demo-table"  # configured in configs/pantau.yaml (desa Sooko)
GARBAGE = b'{"kind": "camera_view", "camera_id": "demo-table", "condition": "tilted"'


def view(pipeline: Pipeline, i: int, at: datetime, condition: str, phase: str) -> CameraView:
    start = phase == "start"
    return CameraView(
        id=stable_id("camera-view-test", pipeline.tag, i),
        ts_capture=at,
        seq=i,
        camera_id=CAMERA,
        condition=condition,
        phase=phase,
        changed_frac=0.78 if condition == "moved" and start else 0.04,
        brightness_spread=3.1 if condition == "covered" and start else 52.0,
        sharpness_ratio=0.97,
        relearn_s=60.0 if condition == "moved" and start else 0.0,
    )


def stored(pipeline: Pipeline, query: str, *params: object) -> list[tuple[Any, ...]]:
    with pipeline.db() as conn:
        return conn.execute(query, params).fetchall()  # type: ignore[arg-type]


def test_covered_and_moved_camera_raise_their_alarms_and_every_view_is_stored(
    isolated_pipeline: Pipeline,
    recorder: tuple[Recorder, str, int],  # noqa: F811 - the fixture
) -> None:
    pipeline = isolated_pipeline
    rec, base_url, smtp_port = recorder
    pipeline.env.update(alert_env(base_url, smtp_port))
    topics = Topics(pipeline.settings.kafka)
    pipeline.start("sink", "sink")
    pipeline.start("notify", "notify")
    streams = pipeline.start("streams", "streams")
    worker_ready(pipeline, streams)

    now = datetime.now(UTC) - timedelta(seconds=30)
    views = [
        view(pipeline, 0, now, "covered", "start"),
        view(pipeline, 1, now + timedelta(seconds=5), "covered", "end"),
        view(pipeline, 2, now + timedelta(seconds=6), "moved", "start"),
        view(pipeline, 3, now + timedelta(seconds=9), "moved", "end"),
    ]
    producer = kafka.producer(pipeline.settings.kafka, "test-detector")
    kafka.publish(producer, topics.camera_view, views[0])
    # Between the start and the end: the end must still be applied after it.
    producer.send(topics.camera_view, key=CAMERA.encode(), value=GARBAGE)
    for message in views[1:]:
        kafka.publish(producer, topics.camera_view, message)
    producer.flush()
    producer.close()

    pipeline.wait_for(
        "the tampered alarm cleared and the view-changed note",
        lambda: (
            len(alerts_of(pipeline, "camera_tampered")) >= 2
            and len(alerts_of(pipeline, "camera_view_changed")) >= 2
        ),
        timeout=90,
    )
    tampered = alerts_of(pipeline, "camera_tampered")
    assert [(a.version, a.change, a.state, a.notify) for a in tampered] == [
        (0, "opened", "OPEN", True),
        (1, "cleared", "CLEARED", True),
    ]
    assert {a.source_kind for a in tampered} == {"camera"}
    assert tampered[0].place is not None and tampered[0].place.desa == "Sooko"
    changed = alerts_of(pipeline, "camera_view_changed")
    assert [(a.version, a.change, a.state, a.notify) for a in changed] == [
        (0, "opened", "OPEN", True),
        (1, "updated", "OPEN", False),
    ]
    assert changed[1].cleared_at is None

    # The alarms' latest states and every version, as stored by the sink.
    def alarms_stored() -> bool:
        rows = stored(
            pipeline,
            "SELECT alarm_type, state, version FROM alerts WHERE source_id = %s",
            CAMERA,
        )
        return sorted(rows) == [
            ("camera_tampered", "CLEARED", 1),
            ("camera_view_changed", "OPEN", 1),
        ]

    pipeline.wait_for("both alarms stored", alarms_stored, timeout=60)
    history = stored(
        pipeline,
        "SELECT a.alarm_type, h.version, h.state, h.change FROM alarm_history h "
        "JOIN alerts a USING (alarm_id, opened_at) WHERE a.source_id = %s "
        "ORDER BY 1, 2",
        CAMERA,
    )
    assert history == [
        ("camera_tampered", 0, "OPEN", "opened"),
        ("camera_tampered", 1, "CLEARED", "cleared"),
        ("camera_view_changed", 0, "OPEN", "opened"),
        ("camera_view_changed", 1, "OPEN", "updated"),
    ]

    # Every view message, once, as the detector sent it.
    pipeline.wait_for(
        "the view changes stored",
        lambda: len(stored(pipeline, "SELECT id FROM camera_view_changes")) >= len(views),
        timeout=60,
    )
    rows = stored(
        pipeline,
        "SELECT id, time, camera_id, condition, phase, changed_frac, relearn_s "
        "FROM camera_view_changes ORDER BY time",
    )
    assert rows == [
        (v.id, v.ts_capture, v.camera_id, v.condition, v.phase, v.changed_frac, v.relearn_s)
        for v in views
    ]

    # The garbage: a dead letter of each stage that reads the topic, with what was sent.
    def letters() -> dict[str, DeadLetter]:
        found = [
            decode_as(r.value, DeadLetter)
            for r in pipeline.read_topic(topics.dead_letters(topics.camera_view))
        ]
        return {letter.stage: letter for letter in found}

    pipeline.wait_for("the dead letters", lambda: {"streams", "sink"} <= set(letters()))
    for letter in letters().values():
        assert letter.original == GARBAGE
        assert letter.source_topic == topics.camera_view
        assert letter.source_key == CAMERA

    # People hear of the covered camera and the turned one, in Bahasa Indonesia; the view
    # relearnt tells nobody.
    def telegram_texts() -> list[str]:
        ids = {str(tampered[0].alarm_id), str(changed[0].alarm_id)}
        with rec.lock:
            return [c["text"] for c in rec.telegram if any(i in c.get("text", "") for i in ids)]

    pipeline.wait_for("three Telegram messages", lambda: len(telegram_texts()) >= 3, timeout=60)
    texts = telegram_texts()
    assert len(texts) == 3
    assert sum("Kamera tertutup atau buram" in t for t in texts) == 2
    assert any("Alarm selesai/kembali normal: Kamera tertutup atau buram" in t for t in texts)
    assert sum("Pandangan kamera berubah" in t for t in texts) == 1
    assert any("zona pengawasan" in t for t in texts)
    assert streams.poll() is None
