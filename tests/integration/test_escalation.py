"""An alarm nobody acknowledges is passed on to the next level once, through the real
services: readings → faust (its periodic checks) → alerts → notifier → the coordinator's
Telegram chat, and the alarm's history in PostgreSQL; a restart of the stream worker passes
nothing on again."""

from __future__ import annotations

import signal
import subprocess
import threading
from collections import Counter
from datetime import UTC, datetime, timedelta

from pantau import kafka
from pantau.ids import stable_id, uuid7
from pantau.messages import AlarmAction, Alert, SensorReading
from pantau.topics import Topics
from tests.integration.conftest import Pipeline
from tests.integration.test_alerts_pipeline import (
    UUID_RE,
    Recorder,
    alert_env,
    alerts_of,
    recorder,  # noqa: F401 - the fixture, used by name
)

WATER = "wl-brantas-lengkong"  # kecamatan Mojoanyar in configs/pantau.yaml
BIN = "tps-sooko-01"  # kecamatan Sooko
ESCALATE_AFTER_S = 8
ROUTES = (
    "[{name: command-center, telegram_chat_ids: ['-1001'], emails: [cc@example.org]}, "
    "{name: koordinator-mojoanyar, escalation_level: 1, kecamatan: [Mojoanyar], "
    "telegram_chat_ids: ['-2002']}, "
    "{name: koordinator-sooko, escalation_level: 1, kecamatan: [sooko], "
    "telegram_chat_ids: ['-3003']}]"
)


def chats(rec: Recorder, *alarms: Alert) -> Counter[str]:
    """Telegram messages per chat about these alarms (the outbox is shared with other tests,
    whose leftovers the notifier may deliver here too)."""
    ids = {str(a.alarm_id) for a in alarms}
    with rec.lock:
        return Counter(
            str(call["chat_id"])
            for call in rec.telegram
            if ids & set(UUID_RE.findall(call.get("text", "")))
        )


def worker_ready(pipeline: Pipeline, process: subprocess.Popen[bytes]) -> None:
    pipeline.wait_for(
        "the stream worker", lambda: "Worker ready" in pipeline.log_of(process), timeout=120
    )


def test_alarm_nobody_acknowledged_reaches_the_coordinator_once(
    pipeline: Pipeline,
    recorder: tuple[Recorder, str, int],  # noqa: F811 - the fixture
) -> None:
    rec, base_url, smtp_port = recorder
    pipeline.env.update(alert_env(base_url, smtp_port))
    pipeline.env["PANTAU__STREAMS__ESCALATE_AFTER_S"] = f"{{major: {ESCALATE_AFTER_S}}}"
    pipeline.env["PANTAU__NOTIFY__ROUTES"] = ROUTES
    topics = Topics(pipeline.settings.kafka)
    pipeline.start("sink", "sink")
    pipeline.start("notify", "notify")
    streams = pipeline.start("streams", "streams")
    worker_ready(pipeline, streams)

    # Two major alarms at once: the river's nobody takes, the full container's is acknowledged.
    now = datetime.now(UTC)
    producer = kafka.producer(pipeline.settings.kafka, "test-sensors")
    for i, (sensor_id, sensor_type, values) in enumerate(
        [
            (WATER, "water_level", {"waterLevel": 2.0}),
            (WATER, "water_level", {"waterLevel": 3.2}),
            (BIN, "waste_container", {"fillingLevel": 0.95}),
        ]
    ):
        t = now - timedelta(seconds=2 - i)
        reading = SensorReading(
            id=stable_id("escalation-test", pipeline.tag, i),
            ts_capture=t,
            seq=i,
            sensor_id=sensor_id,
            sensor_type=sensor_type,
            values=values,
            ts_ingest=t,
        )
        kafka.publish(producer, topics.readings, reading)
    producer.flush()
    pipeline.wait_for(
        "both alarms opened",
        lambda: bool(alerts_of(pipeline, "water-high") and alerts_of(pipeline, "tps-full")),
        timeout=60,
        every=0.2,
    )
    [bin_opened] = alerts_of(pipeline, "tps-full")
    ack = AlarmAction(
        id=uuid7(),
        ts_capture=datetime.now(UTC),
        seq=1,
        action="ack",
        source_kind="sensor",
        source_id=BIN,
        alarm_id=bin_opened.alarm_id,
        by="siti",
        device="telegram",
    )
    # Sent twice, as a bot restarting in the middle of a press might: decided once.
    for _ in range(2):
        kafka.publish(producer, topics.alarm_actions, ack)
    producer.flush()
    producer.close()

    pipeline.wait_for(
        "the river alarm passed on",
        lambda: any(a.change == "unacknowledged" for a in alerts_of(pipeline, "water-high")),
        timeout=60,
    )
    opened, passed_on = alerts_of(pipeline, "water-high")
    assert (passed_on.alarm_id, passed_on.state, passed_on.escalation) == (
        opened.alarm_id,
        "OPEN",
        1,
    )
    assert passed_on.notify is True
    assert passed_on.updated_at - opened.opened_at >= timedelta(seconds=ESCALATE_AFTER_S)
    pipeline.wait_for(
        "the coordinator's message", lambda: chats(rec, opened)["-2002"] == 1, timeout=30
    )
    with rec.lock:
        [to_coordinator] = [
            c
            for c in rec.telegram
            if str(c["chat_id"]) == "-2002" and str(opened.alarm_id) in c["text"]
        ]
    assert "Belum ditanggapi" in to_coordinator["text"]
    assert str(opened.alarm_id) in to_coordinator["text"]

    # A restart of the stream worker passes nothing on a second time.
    streams.send_signal(signal.SIGKILL)
    streams.wait()
    pipeline.processes = [p for p in pipeline.processes if p[1] is not streams]
    restarted = pipeline.start("streams-restarted", "streams")
    worker_ready(pipeline, restarted)
    # Many check intervals (0.5 s), and past the delay of the acknowledged alarm.
    past_its_delay = bin_opened.opened_at + timedelta(seconds=ESCALATE_AFTER_S + 3)
    threading.Event().wait(max(5.0, (past_its_delay - datetime.now(UTC)).total_seconds()))

    assert [a.change for a in alerts_of(pipeline, "water-high")] == ["opened", "unacknowledged"]
    assert [a.change for a in alerts_of(pipeline, "tps-full")] == ["opened", "acknowledged"]
    # The repeated ack was not refused either.
    assert pipeline.read_topic(topics.dead_letters(topics.alarm_actions)) == []
    # The command center heard of both openings; each coordinator of what was passed on only.
    assert chats(rec, opened, bin_opened) == Counter({"-1001": 2, "-2002": 1})
    pipeline.wait_for(
        "the escalation in the alarm's history",
        lambda: (
            pipeline.scalar(
                "SELECT count(*) FROM alarm_history WHERE alarm_id = %s "
                "AND change = 'unacknowledged' AND version = 1",
                opened.alarm_id,
            )
            == 1
        ),
        timeout=60,
    )
