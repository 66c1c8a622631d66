"""The bad-input corpus through every way in, with the whole pipeline running.

MQTT payloads, HTTP bodies and items, and raw Kafka records on the readings, frames,
detections, camera-health, dumping-event, alert and action topics (tests/corpus.py), each
followed by valid messages on the same sensor, camera or partition. Afterwards:

- every valid message is stored exactly once (and the stream processor acted on the valid
  dumping event and the operator's action behind the garbage);
- every bad input is on its dead-letter topic, with a reason, from every stage that reads it,
  and in the `dead_letters` table;
- every process is still running, and its supervisor restarted none of them.

The counts are printed (`-s`) and written to the test's folder as bad-input-report.json.
"""

from __future__ import annotations

import json
import random
import socket
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from pantau import kafka
from pantau.codec import decode_as, encode
from pantau.ids import stable_id, utcnow
from pantau.messages import (
    AlarmAction,
    Alert,
    Box,
    CameraHeartbeat,
    CameraView,
    DeadLetter,
    Detections,
    DumpingEvent,
    EvidenceRef,
    Frame,
    Message,
    SensorReading,
)
from pantau.poison import MAX_ORIGINAL_BYTES
from pantau.topics import Topics
from tests.corpus import (
    Bad,
    frame_records,
    http_bodies,
    jpeg,
    kafka_records,
    reading_items,
    reading_payloads,
)
from tests.integration.conftest import Pipeline, gateway_login

MQTT_SENSOR = "aq-pasar-tanjung"
HTTP_SENSOR = "aq-alun-alun"
KAFKA_SENSOR = "wl-sadar-magersari"
CAMERA = "demo-table"
# Which stages read each topic, hence dead-letter what they cannot use on it.
READERS = {
    "readings": {"sink", "streams"},
    "camera_health": {"sink", "streams"},
    "camera_view": {"sink", "streams"},
    "detections": {"sink"},
    "dumping_events": {"sink", "streams"},
    "alerts": {"sink", "notify"},
    "alarm_actions": {"sink", "streams"},
    "frames": {"detect"},
}


@dataclass
class Ledger:
    """What was sent, and the dead letters it must produce: (stage, source, original) → n,
    or for HTTP items (whose original is the ingest's own encoding of the item) a count."""

    expected_letters: Counter[tuple[str, str, bytes]] = field(default_factory=Counter)
    expected_counts: Counter[tuple[str, str]] = field(default_factory=Counter)
    inputs: Counter[str] = field(default_factory=Counter)
    names: dict[tuple[str, str, bytes], str] = field(default_factory=dict)

    def expect(self, stages: set[str], source: str, original: bytes, name: str) -> None:
        for stage in stages:
            key = (stage, source, original[:MAX_ORIGINAL_BYTES])
            self.expected_letters[key] += 1
            self.names[key] = name

    def missing(self, seen: Counter[tuple[str, str, bytes]]) -> list[str]:
        counts = _per_source(seen)
        missing = [
            f"{key[0]} did not dead-letter {self.names[key]}"
            for key, n in self.expected_letters.items()
            if seen[key] < n
        ]
        missing += [
            f"{stage}: {counts[(stage, source)]} of {n} dead letters from {source}"
            for (stage, source), n in self.expected_counts.items()
            if counts[(stage, source)] < n
        ]
        return sorted(missing)

    def unexpected(self, seen: Counter[tuple[str, str, bytes]]) -> list[str]:
        """Dead letters of valid input, or more than one per bad input and stage."""
        extra = [
            f"{stage} dead-lettered from {source}: {original[:120]!r}"
            for (stage, source, original), n in seen.items()
            if (stage, source) not in self.expected_counts
            and n > self.expected_letters[(stage, source, original)]
        ]
        counts = _per_source(seen)
        extra += [
            f"{stage}: {counts[(stage, source)]} dead letters from {source}, expected {n}"
            for (stage, source), n in self.expected_counts.items()
            if counts[(stage, source)] != n
        ]
        return extra


def _per_source(seen: Counter[tuple[str, str, bytes]]) -> Counter[tuple[str, str]]:
    counts: Counter[tuple[str, str]] = Counter()
    for (stage, source, _original), n in seen.items():
        counts[(stage, source)] += n
    return counts


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def post(url: str, body: bytes, login: tuple[str, str]) -> tuple[int, Any]:
    assert url.startswith("http://127.0.0.1:")
    headers = {
        "Content-Type": "application/json",
        "Authorization": "Bearer {}.{}".format(*login),
    }
    req = urllib.request.Request(url, data=body, headers=headers)  # noqa: S310
    try:
        with urllib.request.urlopen(req, timeout=60) as response:  # noqa: S310
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def mqtt_publish(pipeline: Pipeline, topic: str, payloads: list[bytes]) -> None:
    settings = pipeline.settings.mqtt
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{pipeline.tag}-corpus")
    client.username_pw_set(*gateway_login(pipeline.settings))
    client.connect(settings.host, settings.port)
    client.loop_start()
    try:
        for payload in payloads:
            client.publish(topic, payload, qos=1).wait_for_publish(timeout=30)
    finally:
        client.disconnect()
        client.loop_stop()


def reading_payload(sensor_id: str, at: datetime, seq: int, **values: float) -> dict[str, Any]:
    return {"sensorId": sensor_id, "dateObserved": at.isoformat(), "seq": seq, **values}


def test_no_bad_input_stops_the_pipeline(isolated_pipeline: Pipeline, tmp_path: Path) -> None:
    pipeline = isolated_pipeline
    topics = Topics(pipeline.settings.kafka)
    ledger = Ledger()
    status_dir = tmp_path / "health"
    pipeline.env.update(
        {
            "PANTAU__RUNTIME__STATUS_DIR": str(status_dir),
            # No channel to deliver to: the notifier only queues (and dead-letters).
            "PANTAU__NOTIFY__ROUTES": "[]",
            "PANTAU__DETECT__MAX_FRAME_AGE_S": "0",
            "PANTAU__DUMPING__EVIDENCE__DIR": str(tmp_path / "evidence"),
        }
    )
    kafka.ensure_topics(pipeline.settings.kafka, topics.specs())
    port = free_port()
    processes = {
        "ingest-sensors": pipeline.start("ingest-sensors", "ingest", "sensors"),
        "ingest-http": pipeline.start("ingest-http", "ingest", "http", "--port", str(port)),
        "sink": pipeline.start("sink", "sink"),
        "streams": pipeline.start("streams", "streams"),
        "notify": pipeline.start("notify", "notify"),
        "detect": pipeline.start("detect", "detect"),
    }
    pipeline.wait_for(
        "the MQTT subscription",
        lambda: "subscribed to" in pipeline.log_of(processes["ingest-sensors"]),
    )
    pipeline.wait_for(
        "the HTTP listener", lambda: "listening on" in pipeline.log_of(processes["ingest-http"])
    )
    base = utcnow().replace(microsecond=random.randrange(1_000_000)) - timedelta(minutes=5)
    valid_readings: list[tuple[str, datetime, int]] = []  # (sensor, time, quantities)

    # ---------------------------------------------------------------- MQTT
    mqtt_topic = f"{pipeline.settings.mqtt.topic_prefix}/{MQTT_SENSOR}"
    payloads: list[bytes] = []
    for n, bad in enumerate(reading_payloads(MQTT_SENSOR, base)):
        assert bad.data is not None
        payloads.append(bad.data)
        ledger.expect({"ingest.sensors"}, mqtt_topic, bad.data, f"MQTT: {bad.name}")
        ledger.inputs["mqtt"] += 1
        at = base + timedelta(seconds=n + 1)
        payloads.append(json.dumps(reading_payload(MQTT_SENSOR, at, 100 + n, pm25=20.0)).encode())
        valid_readings.append((MQTT_SENSOR, at, 1))
    # The same reading twice: the second is a duplicate. A lower seq arriving late is fine.
    first = json.dumps(reading_payload(MQTT_SENSOR, base + timedelta(hours=-1), 5000, pm25=21.0))
    late = json.dumps(reading_payload(MQTT_SENSOR, base + timedelta(hours=-2), 4000, pm25=22.0))
    payloads += [first.encode(), first.encode(), late.encode()]
    ledger.expect({"ingest.sensors"}, mqtt_topic, first.encode(), "MQTT: duplicate seq")
    ledger.inputs["mqtt"] += 1
    valid_readings += [
        (MQTT_SENSOR, base + timedelta(hours=-1), 1),
        (MQTT_SENSOR, base + timedelta(hours=-2), 1),
    ]
    mqtt_publish(pipeline, mqtt_topic, payloads)

    # ---------------------------------------------------------------- HTTP
    url = f"http://127.0.0.1:{port}/v1/readings"
    items = reading_items(HTTP_SENSOR, base)
    batch: list[Any] = []
    good_times: list[datetime] = []
    for n, (_name, item) in enumerate(items):
        batch.append(item)
        ledger.expected_counts[("ingest.http", "POST /v1/readings")] += 1
        ledger.inputs["http items"] += 1
        at = base + timedelta(seconds=n + 1)
        batch.append(reading_payload(HTTP_SENSOR, at, 100 + n, pm25=25.0, pm10=40.0))
        good_times.append(at)
    login = gateway_login(pipeline.settings, HTTP_SENSOR)
    status, answer = post(url, json.dumps(batch).encode(), login)
    assert status == 207, answer
    assert answer["accepted"] == len(good_times), answer
    assert answer["rejected"] == len(items), answer
    valid_readings += [(HTTP_SENSOR, at, 2) for at in good_times]
    for name, body, expected_status in http_bodies(HTTP_SENSOR, base):
        status, answer = post(url, body, login)
        assert status == expected_status, (name, status, answer)
        assert answer.get("error"), (name, answer)
        ledger.inputs["http bodies"] += 1

    # ---------------------------------------------------------------- Kafka
    producer = kafka.producer(pipeline.settings.kafka, "corpus")
    sent_valid: dict[str, list[Message]] = {}

    def produce(
        topic_name: str, topic: str, bads: list[Bad], valid: list[Message], key: bytes | None
    ) -> None:
        for bad in bads:
            record_key = None if bad.keyless else (bad.key or key)
            producer.send(topic, key=record_key, value=bad.data).get(timeout=30)
            ledger.expect(READERS[topic_name], topic, bad.data or b"", f"{topic}: {bad.name}")
            ledger.inputs[f"kafka {topic_name}"] += 1
        for message in valid:
            producer.send(topic, key=message.key, value=encode(message)).get(timeout=30)
        sent_valid[topic_name] = valid

    reading = SensorReading(
        id=stable_id("corpus-reading", base),
        ts_capture=base,
        seq=1,
        sensor_id=KAFKA_SENSOR,
        sensor_type="water_level",
        values={"waterLevel": 1.2},
        ts_ingest=base,
    )
    readings = [
        reading.model_copy(
            update={
                "id": stable_id("corpus-reading", base, n),
                "ts_capture": base + timedelta(seconds=n),
                "seq": n + 1,
            }
        )
        for n in range(5)
    ]
    produce("readings", topics.readings, kafka_records(reading), readings, reading.key)
    valid_readings += [(KAFKA_SENSOR, r.ts_capture, 1) for r in readings]

    heartbeat = CameraHeartbeat(
        id=stable_id("corpus-heartbeat", base),
        ts_capture=base,
        seq=1,
        camera_id=CAMERA,
        status="online",
        fps=5.0,
        frames_decoded=100,
        frames_published=50,
        frames_skipped=50,
        reconnects=0,
    )
    # A valid heartbeat without a key: the sink stores it; the stream processor cannot route
    # it to the camera's state and dead-letters it.
    keyless = heartbeat.model_copy(
        update={
            "id": stable_id("corpus-heartbeat", base, "keyless"),
            "ts_capture": base + timedelta(seconds=1),
        }
    )
    producer.send(topics.camera_health, key=None, value=encode(keyless)).get(timeout=30)
    ledger.expect({"streams"}, topics.camera_health, encode(keyless), "heartbeat without a key")
    ledger.inputs["kafka camera_health"] += 1
    produce(
        "camera_health", topics.camera_health, kafka_records(heartbeat), [heartbeat], heartbeat.key
    )
    # The end of a view change that never started: stored, and no alarm.
    view = CameraView(
        id=stable_id("corpus-view", base),
        ts_capture=base,
        seq=1,
        camera_id=CAMERA,
        condition="moved",
        phase="end",
        changed_frac=0.02,
        brightness_spread=50.0,
        sharpness_ratio=1.0,
    )
    produce("camera_view", topics.camera_view, kafka_records(view), [view], view.key)

    detections = Detections(
        id=stable_id("corpus-detections", base),
        ts_capture=base,
        seq=1,
        camera_id=CAMERA,
        frame_id=stable_id("corpus-frame-for-detections", base),
        width=640,
        height=360,
        model="corpus",
        inference_ms=10.0,
        ts_detected=base,
        boxes=(
            Box(class_id=0, label="person", confidence=0.9, x1=1, y1=2, x2=30, y2=60, track_id=3),
        ),
    )
    produce(
        "detections", topics.detections, kafka_records(detections), [detections], detections.key
    )

    event = DumpingEvent(
        id=stable_id("corpus-event", base),
        ts_capture=base,
        seq=1,
        event_id=stable_id("corpus-event-id", base),
        phase="new",
        version=1,
        camera_id=CAMERA,
        state="alerted",
        appeared_at=base - timedelta(seconds=40),
        owner_left_at=base - timedelta(seconds=35),
        alerted_at=base,
        box=Box(class_id=None, label="object", confidence=0.8, x1=100, y1=200, x2=140, y2=260),
        owner_track_id=4,
        confidence=0.8,
        evidence=(EvidenceRef(kind="alert", uri="file:///evidence/x.jpg", sha256="0" * 64),),
    )
    produce("dumping_events", topics.dumping_events, kafka_records(event), [event], event.key)

    alert = Alert(
        id=stable_id("corpus-alert", base),
        ts_capture=base,
        seq=1,
        alarm_id=stable_id("corpus-alarm", base),
        version=0,
        source_kind="sensor",
        source_id=KAFKA_SENSOR,
        alarm_type="water-high",
        severity="major",
        state="OPEN",
        count=1,
        last_value=3.5,
        opened_at=base,
        updated_at=base,
    )
    produce("alerts", topics.alerts, kafka_records(alert), [alert], alert.key)

    action = AlarmAction(
        id=stable_id("corpus-action", base),
        ts_capture=base,
        seq=1,
        action="ack",
        source_kind="dumping",
        source_id=CAMERA,
        alarm_id=UUID(int=0),
        by="corpus",
    )
    # The valid action acknowledges the dumping alarm, once it exists (below).
    produce("alarm_actions", topics.alarm_actions, kafka_records(action), [], action.key)

    frame = Frame(
        id=stable_id("corpus-frame", base),
        ts_capture=utcnow(),
        seq=1,
        camera_id=CAMERA,
        width=640,
        height=360,
        ts_ingest=utcnow(),
        jpeg=jpeg(640, 360),
    )
    frames = [
        frame.model_copy(update={"id": stable_id("corpus-frame", base, n), "seq": n + 1})
        for n in range(3)
    ]
    produce("frames", topics.frames, kafka_records(frame) + frame_records(frame), frames, frame.key)
    producer.flush()

    # ---------------------------------------------------------------- the valid ones, once
    def stored_readings() -> bool:
        for sensor_id, at, quantities in valid_readings:
            rows = pipeline.scalar(
                "SELECT count(*) FROM sensor_readings WHERE sensor_id = %s AND time = %s",
                sensor_id,
                at,
            )
            if rows != quantities:
                return False
        return True

    pipeline.wait_for("every valid reading stored", stored_readings, timeout=180)
    pipeline.wait_for(
        "the stream processor's dumping alarm for the valid event",
        lambda: (
            pipeline.scalar("SELECT count(*) FROM alerts WHERE event_id = %s", event.event_id) == 1
        ),
        timeout=120,
    )
    alarm_id = pipeline.scalar("SELECT alarm_id FROM alerts WHERE event_id = %s", event.event_id)
    ack = action.model_copy(update={"alarm_id": alarm_id})
    producer.send(topics.alarm_actions, key=ack.key, value=encode(ack)).get(timeout=30)
    producer.close()
    pipeline.wait_for(
        "the operator's acknowledgement behind the bad actions",
        lambda: pipeline.scalar("SELECT state FROM alerts WHERE alarm_id = %s", alarm_id) == "ACK",
        timeout=120,
    )
    checks = {
        "camera_health": ("SELECT count(*) FROM camera_health WHERE heartbeat_id = ANY(%s)",
                          [heartbeat.id, keyless.id], 2),
        "camera_view_changes": ("SELECT count(*) FROM camera_view_changes WHERE id = ANY(%s)",
                                [view.id], 1),
        "detections": ("SELECT count(*) FROM detections WHERE frame_id = ANY(%s)",
                       [detections.frame_id], 1),
        "dumping_events": ("SELECT count(*) FROM dumping_events WHERE event_id = ANY(%s)",
                           [event.event_id], 1),
        "alerts": ("SELECT count(*) FROM alerts WHERE alarm_id = ANY(%s)", [alert.alarm_id], 1),
    }  # fmt: skip
    for table, (query, ids, count) in checks.items():
        pipeline.wait_for(
            f"the valid {table} row",
            lambda query=query, ids=ids, count=count: pipeline.scalar(query, ids) == count,
            timeout=60,
        )
    frame_ids = {f.id for f in frames}

    def detected() -> bool:
        found = set()
        for record in pipeline.read_topic(topics.detections):
            try:
                found.add(decode_as(record.value or b"", Detections).frame_id)
            except ValueError:
                continue  # the corpus's own garbage on that topic
        return frame_ids <= found

    pipeline.wait_for("detections for the valid frames behind the bad ones", detected, timeout=180)

    # ---------------------------------------------------------------- the bad ones, dead letters
    def letters() -> Counter[tuple[str, str, bytes]]:
        seen: Counter[tuple[str, str, bytes]] = Counter()
        for topic in topics.all_dead_letter_topics():
            for record in pipeline.read_topic(topic, timeout=20):
                letter = decode_as(record.value, DeadLetter)
                assert letter.error.strip(), letter
                seen[(letter.stage, letter.source_topic, letter.original)] += 1
        return seen

    try:
        pipeline.wait_for(
            "every bad input dead-lettered", lambda: not ledger.missing(letters()), timeout=180
        )
    except AssertionError:
        missing = ledger.missing(letters())
        raise AssertionError("not dead-lettered:\n  " + "\n  ".join(missing)) from None
    seen = letters()
    # Nothing valid was dead-lettered, nor anything twice by one stage: every dead letter is
    # one the ledger expects.
    assert not ledger.unexpected(seen), "\n".join(ledger.unexpected(seen))
    total_letters = sum(seen.values())
    pipeline.wait_for(
        "the dead letters in their table",
        lambda: (
            pipeline.scalar(
                "SELECT count(*) FROM dead_letters WHERE source_topic = ANY(%s) OR source_topic = %s",
                [t for t in topics.data_topics()] + [mqtt_topic],
                "POST /v1/readings",
            )
            >= total_letters
        ),
        timeout=90,
    )

    # ---------------------------------------------------------------- every process still up
    crashes = {}
    for name, process in processes.items():
        assert process.poll() is None, f"{name} exited:\n{pipeline.log_of(process)[-4000:]}"
        status = json.loads((status_dir / f"{name}.json").read_text())
        crashes[name] = sum(int(w["restarts"]) for w in status["workers"])
        assert all(w["state"] == "running" for w in status["workers"]), status
    assert crashes == dict.fromkeys(processes, 0), crashes
    for name, process in processes.items():
        assert pipeline.stop(process) == 0, f"{name}:\n{pipeline.log_of(process)[-4000:]}"

    report = {
        "inputs": dict(ledger.inputs),
        "inputs_total": sum(ledger.inputs.values()),
        "dead_letters": total_letters,
        "crashes": sum(crashes.values()),
        "valid_lost": 0,
        # Readings, frames, two heartbeats, a view, detections, dumping event, alert, action.
        "valid_stored": len(valid_readings) + len(frames) + 7,
    }
    (tmp_path / "bad-input-report.json").write_text(json.dumps(report, indent=2))
    print("bad-input corpus:", json.dumps(report))
