"""MQTT → validation → Kafka → sink → PostgreSQL, with bad payloads dead-lettered."""

from __future__ import annotations

import json
import random
from collections import Counter
from datetime import timedelta

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from pantau.codec import decode_as
from pantau.ids import utcnow
from pantau.messages import DeadLetter, SensorReading
from pantau.topics import Topics
from tests.integration.conftest import Pipeline, gateway_login

SENSOR = "aq-pasar-tanjung"


def publish(pipeline: Pipeline, sensor_id: str, payloads: list[bytes]) -> None:
    settings = pipeline.settings.mqtt
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{pipeline.tag}-sensor")
    client.username_pw_set(*gateway_login(pipeline.settings, sensor_id))
    client.connect(settings.host, settings.port)
    client.loop_start()
    try:
        infos = [
            client.publish(f"{settings.topic_prefix}/{sensor_id}", payload, qos=1)
            for payload in payloads
        ]
        for info in infos:
            info.wait_for_publish(timeout=10)
    finally:
        client.disconnect()
        client.loop_stop()


def wait_subscribed(pipeline: Pipeline, process) -> None:  # type: ignore[no-untyped-def]
    pipeline.wait_for("the MQTT subscription", lambda: "subscribed to" in pipeline.log_of(process))


def test_valid_reading_is_stored_and_a_malformed_one_is_dead_lettered(pipeline: Pipeline) -> None:
    topics = Topics(pipeline.settings.kafka)
    ingest = pipeline.start("ingest-sensors", "ingest", "sensors")
    pipeline.start("sink", "sink")
    wait_subscribed(pipeline, ingest)

    t1 = utcnow().replace(microsecond=random.randrange(1_000_000))
    first = {
        "sensorId": SENSOR,
        "dateObserved": t1.isoformat(),
        "seq": 1,
        "pm25": 38.5,
        "pm10": 61.0,
    }
    publish(pipeline, SENSOR, [json.dumps(first).encode()])
    pipeline.wait_for(
        "the first reading in sensor_readings",
        lambda: (
            pipeline.scalar(
                "SELECT count(*) FROM sensor_readings WHERE sensor_id = %s AND time = %s",
                SENSOR,
                t1,
            )
            == 2
        ),
    )
    assert (
        pipeline.scalar(
            "SELECT value FROM sensor_readings WHERE sensor_id = %s AND time = %s AND quantity = 'pm25'",
            SENSOR,
            t1,
        )
        == 38.5
    )

    bad = json.dumps(
        {"sensorId": SENSOR, "dateObserved": t1.isoformat(), "pm25": "tinggi"}
    ).encode()
    t2 = t1 + timedelta(seconds=1)
    second = {"sensorId": SENSOR, "dateObserved": t2.isoformat(), "seq": 2, "pm25": 39.0}
    publish(pipeline, SENSOR, [bad, json.dumps(second).encode()])

    # The pipeline goes on after the bad payload.
    pipeline.wait_for(
        "the reading after the malformed one",
        lambda: (
            pipeline.scalar(
                "SELECT count(*) FROM sensor_readings WHERE sensor_id = %s AND time = %s",
                SENSOR,
                t2,
            )
            == 1
        ),
    )
    letters = [
        decode_as(r.value, DeadLetter)
        for r in pipeline.read_topic(topics.dead_letters(topics.readings))
    ]
    assert len(letters) == 1
    (letter,) = letters
    assert letter.original == bad
    assert letter.stage == "ingest.sensors" and letter.source_kind == "mqtt"
    assert letter.source_topic == f"{pipeline.settings.mqtt.topic_prefix}/{SENSOR}"
    assert "pm25 must be a number, got 'tinggi'" in letter.error
    pipeline.wait_for(
        "the dead letter in its table",
        lambda: (
            pipeline.scalar("SELECT error FROM dead_letters WHERE id = %s", letter.id)
            == letter.error
        ),
        timeout=30,
    )


def test_readings_sent_while_ingest_is_down_arrive_when_it_returns(pipeline: Pipeline) -> None:
    ingest = pipeline.start("ingest-sensors", "ingest", "sensors")
    wait_subscribed(pipeline, ingest)
    assert pipeline.stop(ingest) == 0

    start = utcnow().replace(microsecond=0) - timedelta(minutes=5)
    payloads = [
        json.dumps(
            {
                "sensorId": "wl-brantas-lengkong",
                "dateObserved": (start + timedelta(seconds=i)).isoformat(),
                "seq": i,
                "waterLevel": 2.0 + i / 100,
            }
        ).encode()
        for i in range(25)
    ]
    publish(pipeline, "wl-brantas-lengkong", payloads)

    pipeline.start("ingest-sensors-again", "ingest", "sensors")
    pipeline.start("sink", "sink")
    pipeline.wait_for(
        "all 25 readings held by the broker while ingest was down",
        lambda: (
            pipeline.scalar(
                "SELECT count(*) FROM sensor_readings WHERE sensor_id = 'wl-brantas-lengkong' "
                "AND time >= %s AND time < %s",
                start,
                start + timedelta(seconds=25),
            )
            == 25
        ),
    )


def test_two_ingest_processes_in_a_shared_group_take_each_reading_once(
    pipeline: Pipeline,
) -> None:
    # First a single ingest, as before the group: its persistent session holds the plain
    # subscription, which member 0 (the same session) must not go on receiving through.
    alone = pipeline.start("ingest-sensors-alone", "ingest", "sensors")
    wait_subscribed(pipeline, alone)
    assert pipeline.stop(alone) == 0
    group = {"PANTAU__MQTT__SHARED_GROUP": f"ingest-{pipeline.tag}"}
    members = [
        pipeline.start(f"ingest-sensors-{k}", "ingest", "sensors", "--member", str(k), env=group)
        for k in range(2)
    ]
    for member in members:
        wait_subscribed(pipeline, member)
    start = utcnow().replace(microsecond=0) - timedelta(minutes=10)
    sensor = "wl-brantas-lengkong"
    publish(
        pipeline,
        sensor,
        [
            json.dumps(
                {
                    "sensorId": sensor,
                    "dateObserved": (start + timedelta(seconds=i)).isoformat(),
                    "seq": i,
                    "waterLevel": 2.0 + i / 1000,
                }
            ).encode()
            for i in range(60)
        ],
    )
    topic = Topics(pipeline.settings.kafka).readings

    def taken() -> Counter[int]:
        return Counter(
            r.seq
            for r in (decode_as(m.value, SensorReading) for m in pipeline.read_topic(topic))
            if r.sensor_id == sensor
        )

    pipeline.wait_for("all 60 readings on Kafka", lambda: len(taken()) == 60)
    counts = taken()
    assert set(counts) == set(range(60))
    assert set(counts.values()) == {1}, "a reading was taken twice"
    accepted = []
    for member in members:
        assert pipeline.stop(member) == 0
        [line] = [x for x in pipeline.log_of(member).splitlines() if "sensors: accepted" in x]
        accepted.append(int(line.split("accepted ")[1].split(",")[0]))
    assert sum(accepted) == 60
    assert min(accepted) > 0, f"the broker gave one member every reading: {accepted}"
