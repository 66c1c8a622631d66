"""Readings through MQTT → Kafka → faust → alerts → notifier → Telegram Bot API and SMTP, on the
real services, with a local Telegram impersonator and a real SMTP server."""

from __future__ import annotations

import json
import re
import signal
import socket
import threading
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from kafka import KafkaProducer

from pantau import kafka
from pantau.codec import decode_as, encode
from pantau.ids import stable_id
from pantau.messages import Alert, CameraHeartbeat, SensorReading
from pantau.settings import load_settings
from pantau.topics import Topics
from streams.engine import Engine
from streams.state import new_state
from tests.integration.conftest import BASE_CONFIG, Pipeline
from tests.integration.test_sensor_pipeline import publish, wait_subscribed

TOKEN = "123456:TEST-TOKEN"
WATER = "wl-brantas-lengkong"
UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
RULES = (
    "[{type: threshold, id: water-high, sensor_type: water_level, quantity: waterLevel, "
    "raise_above: 3.0, clear_below: 2.7}, "
    "{type: threshold, id: tps-full, sensor_type: waste_container, tps_only: true, "
    "quantity: fillingLevel, raise_above: 0.9, clear_below: 0.6}]"
)


class Recorder:
    """What the fake Telegram API and the SMTP server received."""

    def __init__(self) -> None:
        self.telegram: list[dict[str, Any]] = []
        self.emails: list[Any] = []
        self.lock = threading.Lock()

    def telegram_alarm_ids(self) -> Counter[str]:
        with self.lock:
            return Counter(m for call in self.telegram for m in set(UUID_RE.findall(call["text"])))


@pytest.fixture
def recorder() -> Iterator[tuple[Recorder, str, int]]:
    rec = Recorder()

    class Telegram(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            with rec.lock:
                payload = json.loads(body) if body.startswith(b"{") else {"text": ""}
                rec.telegram.append({"path": self.path, **payload})
            answer = json.dumps({"ok": True, "result": {"message_id": len(rec.telegram)}})
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(answer.encode())

        def log_message(self, *_args: Any) -> None:
            return

    class Mailbox:
        async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:
            with rec.lock:
                rec.emails.append(envelope)
            return "250 OK"

    http = ThreadingHTTPServer(("127.0.0.1", 0), Telegram)
    threading.Thread(target=http.serve_forever, daemon=True).start()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        smtp_port = probe.getsockname()[1]
    smtp = Controller(Mailbox(), hostname="127.0.0.1", port=smtp_port)
    smtp.start()
    try:
        yield (
            rec,
            f"http://127.0.0.1:{http.server_address[1]}",
            smtp_port,
        )
    finally:
        smtp.stop()
        http.shutdown()


def alert_env(base_url: str, smtp_port: int) -> dict[str, str]:
    return {
        "PANTAU__STREAMS__RULES": RULES,
        "PANTAU__STREAMS__CAMERA_OFFLINE_AFTER_S": "4",
        "PANTAU__STREAMS__CHECK_INTERVAL_S": "0.5",
        "PANTAU__NOTIFY__TELEGRAM__BASE_URL": base_url,
        "PANTAU__NOTIFY__TELEGRAM__TOKEN": TOKEN,
        "PANTAU__NOTIFY__EMAIL__HOST": "127.0.0.1",
        "PANTAU__NOTIFY__EMAIL__PORT": str(smtp_port),
        "PANTAU__NOTIFY__RETRY_INITIAL_S": "0.2",
        "PANTAU__NOTIFY__ROUTES": (
            '[{name: command-center, telegram_chat_ids: ["-1001"], emails: [cc@example.org]}]'
        ),
    }


def reading(sensor_id: str, t: datetime, seq: int, **values: float) -> bytes:
    return json.dumps(
        {"sensorId": sensor_id, "dateObserved": t.isoformat(), "seq": seq, **values}
    ).encode()


def alerts_of(pipeline: Pipeline, alarm_type: str) -> list[Alert]:
    topic = Topics(pipeline.settings.kafka).alerts
    found = [decode_as(r.value, Alert) for r in pipeline.read_topic(topic)]
    return sorted((a for a in found if a.alarm_type == alarm_type), key=lambda a: a.version)


def test_threshold_crossing_notifies_once_updates_then_clears_and_camera_goes_offline(
    pipeline: Pipeline, recorder: tuple[Recorder, str, int]
) -> None:
    rec, base_url, smtp_port = recorder
    for key, value in alert_env(base_url, smtp_port).items():
        pipeline.env[key] = value
    ingest = pipeline.start("ingest-sensors", "ingest", "sensors")
    pipeline.start("streams", "streams")
    pipeline.start("notify", "notify")
    pipeline.start("sink", "sink")
    wait_subscribed(pipeline, ingest)

    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=2)
    # Below, across (alarm), back between the levels, across again (same alarm, updated).
    levels = [2.0, 3.2, 2.9, 3.4]
    publish(
        pipeline,
        WATER,
        [
            reading(WATER, t0 + timedelta(seconds=10 * i), i + 1, waterLevel=v)
            for i, v in enumerate(levels)
        ],
    )
    pipeline.wait_for(
        "the update of the water-high alarm", lambda: len(alerts_of(pipeline, "water-high")) >= 2
    )
    pipeline.wait_for(
        "one Telegram message and one email",
        lambda: len(rec.telegram) >= 1 and len(rec.emails) >= 1,
    )
    opened, updated = alerts_of(pipeline, "water-high")
    assert (opened.state, opened.change, opened.notify) == ("OPEN", "opened", True)
    assert (updated.alarm_id, updated.change, updated.count) == (opened.alarm_id, "updated", 2)
    assert updated.notify is False
    assert updated.place is not None and updated.place.desa == "Lengkong"

    # Below the clear level: the alarm clears, and people hear about that once too.
    publish(pipeline, WATER, [reading(WATER, t0 + timedelta(seconds=50), 9, waterLevel=2.5)])
    pipeline.wait_for("the clear", lambda: len(alerts_of(pipeline, "water-high")) == 3)
    cleared = alerts_of(pipeline, "water-high")[-1]
    assert (cleared.alarm_id, cleared.state) == (opened.alarm_id, "CLEARED")
    pipeline.wait_for(
        "the clear's notifications", lambda: len(rec.telegram) >= 2 and len(rec.emails) >= 2
    )

    # A camera that stops sending heartbeats raises an offline alarm.
    topics = Topics(pipeline.settings.kafka)
    producer = KafkaProducer(bootstrap_servers=pipeline.settings.kafka.bootstrap_servers)
    beat = CameraHeartbeat(
        id=stable_id("beat", pipeline.tag),
        ts_capture=datetime.now(UTC),
        seq=1,
        camera_id="demo-table",
        status="online",
        fps=5.0,
        frames_decoded=10,
        frames_published=10,
        frames_skipped=0,
        reconnects=0,
    )
    producer.send(topics.camera_health, key=beat.key, value=encode(beat))
    producer.flush()
    producer.close()
    pipeline.wait_for(
        "the camera-offline alarm",
        lambda: len(alerts_of(pipeline, "camera-offline")) >= 1,
        timeout=60,
    )
    offline = alerts_of(pipeline, "camera-offline")[0]
    assert (offline.source_id, offline.state, offline.notify) == ("demo-table", "OPEN", True)
    pipeline.wait_for("the offline notification", lambda: len(rec.telegram) >= 3, timeout=30)

    # Exactly: opened, cleared and camera offline; nothing for the update.
    assert len(rec.telegram) == 3
    assert len(rec.emails) == 3
    assert all(call["path"] == f"/bot{TOKEN}/sendMessage" for call in rec.telegram)
    assert all(call["chat_id"] == "-1001" for call in rec.telegram)
    assert rec.telegram_alarm_ids() == Counter({str(opened.alarm_id): 2, str(offline.alarm_id): 1})
    assert "Lengkong" in rec.telegram[0]["text"]
    assert "WIB" in rec.telegram[0]["text"]
    # The delivery log and the alarm reach the database with their stage times.
    pipeline.wait_for(
        "notifications and ts_notified stored",
        lambda: (
            pipeline.scalar(
                "SELECT count(*) FROM alerts WHERE alarm_id = %s AND ts_notified IS NOT NULL "
                "AND state = 'CLEARED'",
                opened.alarm_id,
            )
            == 1
        ),
    )
    assert (
        pipeline.scalar(
            "SELECT count(*) FROM notifications WHERE status = 'sent' AND alarm_id = %s",
            opened.alarm_id,
        )
        == 4
    )  # two state changes x (telegram, email)


def expected_notified(pipeline: Pipeline, batches: dict[str, list[SensorReading]]) -> Counter[str]:
    """Run the same engine over the same inputs: the alarm versions people must hear of."""
    engine = Engine(load_settings(BASE_CONFIG, pipeline.env))
    counts: Counter[str] = Counter()
    for sensor_id, readings in batches.items():
        state = new_state("sensor", sensor_id)
        for r in readings:
            for alert in engine.on_reading(state, r, ts_rule=datetime.now(UTC)).alerts:
                if alert.notify:
                    counts[str(alert.alarm_id)] += 1
    return counts


def test_killing_the_stream_worker_mid_stream_loses_and_repeats_no_notification(
    pipeline: Pipeline, recorder: tuple[Recorder, str, int]
) -> None:
    rec, base_url, smtp_port = recorder
    for key, value in alert_env(base_url, smtp_port).items():
        pipeline.env[key] = value
    # Every crossing a new alarm and a notification: many effects to lose or repeat.
    pipeline.env["PANTAU__STREAMS__COOLDOWN_S"] = "0"
    topics = Topics(pipeline.settings.kafka)
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=6)
    pattern = {"wl-brantas-lengkong": [2.0, 3.1, 2.8, 3.2, 2.5], "wl-sadar-magersari": [1.5, 2.3, 1.9],
               "tps-gedeg-01": [0.3, 0.95, 0.7, 0.92, 0.4], "tps-sooko-01": [0.5, 0.91, 0.55]}  # fmt: skip
    quantity = {"wl": "waterLevel", "tp": "fillingLevel"}
    rounds = 150
    batches: dict[str, list[SensorReading]] = {
        sensor_id: [
            SensorReading(
                id=stable_id("kill-test", pipeline.tag, sensor_id, i),
                ts_capture=start + timedelta(seconds=5 * i),
                seq=i,
                sensor_id=sensor_id,
                sensor_type="water_level" if sensor_id.startswith("wl") else "waste_container",
                values={quantity[sensor_id[:2]]: levels[i % len(levels)]},
                ts_ingest=start + timedelta(seconds=5 * i),
            )
            for i in range(rounds)
        ]
        for sensor_id, levels in pattern.items()
    }
    expected = expected_notified(pipeline, batches)
    total = sum(expected.values())
    assert total > 200

    pipeline.start("notify", "notify")
    first = pipeline.start("streams", "streams")
    pipeline.wait_for(
        "the stream worker", lambda: "Worker ready" in pipeline.log_of(first), timeout=120
    )

    def produce() -> None:
        # Idempotent, like every Pantau producer: a retry never reorders a sensor's readings.
        producer = kafka.producer(pipeline.settings.kafka, "test-sensors")
        for i in range(rounds):
            for readings in batches.values():
                producer.send(topics.readings, key=readings[i].key, value=encode(readings[i]))
            producer.flush()
            threading.Event().wait(0.04)
        producer.close()

    source = threading.Thread(target=produce)
    source.start()
    # Killed while readings still arrive and alarms are being raised.
    pipeline.wait_for("some alerts", lambda: len(rec.telegram) >= 10, timeout=60, every=0.05)
    first.send_signal(signal.SIGKILL)
    first.wait()
    # Killed on purpose: no longer a process whose death fails the waits below.
    pipeline.processes = [p for p in pipeline.processes if p[1] is not first]
    sent_at_kill = len(rec.telegram)
    assert source.is_alive(), "the readings were all sent before the kill"
    pipeline.start("streams-restarted", "streams")
    source.join()
    # The stream processor saw the readings in the order they were sent.
    stored = [decode_as(r.value, SensorReading) for r in pipeline.read_topic(topics.readings)]
    for sensor_id, readings in batches.items():
        assert [r for r in stored if r.sensor_id == sensor_id] == readings

    pipeline.wait_for("every notification", lambda: len(rec.telegram) >= total, timeout=240)
    # A little longer: a repeat would arrive now.
    threading.Event().wait(5)
    got = rec.telegram_alarm_ids()
    assert got == expected, f"{sum(got.values())} sent, {total} expected; killed at {sent_at_kill}"
    assert len(rec.emails) == total


def test_a_worker_that_stops_consuming_is_replaced_and_nothing_is_lost(
    pipeline: Pipeline, recorder: tuple[Recorder, str, int]
) -> None:
    rec, base_url, smtp_port = recorder
    for key, value in alert_env(base_url, smtp_port).items():
        pipeline.env[key] = value
    pipeline.env["PANTAU__STREAMS__STALL_AFTER_S"] = "5"
    # The first worker silently stops taking readings, as faust's fetcher occasionally does.
    pipeline.env["PANTAU__DEBUG__FAILPOINTS"] = '["streams.stall"]'
    streams = pipeline.start("streams", "streams")
    pipeline.start("notify", "notify")
    topics = Topics(pipeline.settings.kafka)
    producer = kafka.producer(pipeline.settings.kafka, "test-sensors")
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
    for i, level in enumerate([2.0, 3.3]):
        r = SensorReading(
            id=stable_id("stall-test", pipeline.tag, i),
            ts_capture=t0 + timedelta(seconds=10 * i),
            seq=i,
            sensor_id=WATER,
            sensor_type="water_level",
            values={"waterLevel": level},
            ts_ingest=t0 + timedelta(seconds=10 * i),
        )
        kafka.publish(producer, topics.readings, r)
    producer.flush()
    producer.close()

    pipeline.wait_for("the replacement worker's alarm", lambda: len(rec.telegram) >= 1, timeout=120)
    log = pipeline.log_of(streams)
    assert "failpoint streams.stall reached" in log
    assert "no progress for 5 s on" in log
    # Its supervisor replaced it at once (exit code 75 skips the back-off).
    assert "(exited with code 75" in log and "restarting in 0.0 s" in log
    opened = alerts_of(pipeline, "water-high")
    assert [(a.change, a.last_value) for a in opened] == [("opened", 3.3)]
