"""HTTP → validation → Kafka: per-item results, converted values, dead letters with reasons."""

from __future__ import annotations

import json
import socket
import subprocess
import urllib.error
import urllib.request
from datetime import timedelta
from typing import Any

from pantau.codec import decode_as
from pantau.ids import utcnow
from pantau.messages import DeadLetter, SensorReading
from pantau.topics import Topics
from tests.conftest import REPO
from tests.integration.conftest import Pipeline

RIVER = "wl-brantas-lengkong"
CANAL = "wl-sadar-magersari"
AIR = "aq-alun-alun"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def request(
    url: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    """(status, decoded JSON body); error statuses are answers too, not exceptions."""
    assert url.startswith("http://127.0.0.1:")
    req = urllib.request.Request(url, data=body, headers=headers or {})  # noqa: S310 - checked above
    if body is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=60) as response:  # noqa: S310
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def start_http(pipeline: Pipeline, env: dict[str, str] | None = None) -> tuple[str, Any]:
    port = free_port()
    process = pipeline.start("ingest-http", "ingest", "http", "--port", str(port), env=env)
    pipeline.wait_for("the HTTP listener", lambda: "listening on" in pipeline.log_of(process))
    return f"http://127.0.0.1:{port}", process


def registry_override(pipeline: Pipeline, sensor_id: str, key: str, value: str) -> dict[str, str]:
    index = [s.id for s in pipeline.settings.sensors].index(sensor_id)
    return {f"PANTAU__SENSORS__{index}__{key.upper()}": value}


def test_a_mixed_batch_is_stored_item_by_item(pipeline: Pipeline) -> None:
    topics = Topics(pipeline.settings.kafka)
    # The canal gauge reports centimetres, declared in its registry entry.
    base, process = start_http(
        pipeline, registry_override(pipeline, CANAL, "units", "{waterLevel: cm}")
    )

    t = utcnow().replace(microsecond=0) - timedelta(seconds=30)
    items: list[dict[str, Any]] = [
        {
            "sensorId": RIVER,
            "dateObserved": t.isoformat(),
            "seq": 1,
            "waterLevel": 231,
            "unitCode": {"waterLevel": "CMT"},
        },
        {"sensorId": CANAL, "dateObserved": t.isoformat(), "seq": 40, "waterLevel": 185},
        {"sensorId": "ghost", "dateObserved": t.isoformat(), "pm25": 12},
        {
            "sensorId": AIR,
            "dateObserved": t.isoformat(),
            "pm25": 41.7,
            "unitCode": {"pm25": "CMT"},
        },
        {"sensorId": AIR, "seq": 3, "pm25": 41.7},
        {"sensorId": AIR, "dateObserved": (t + timedelta(hours=2)).isoformat(), "pm25": 41.7},
        {
            "sensorId": RIVER,
            "dateObserved": (t + timedelta(seconds=1)).isoformat(),
            "seq": 1,
            "waterLevel": 2.4,
        },
        {"sensorId": AIR, "dateObserved": (t + timedelta(seconds=2)).isoformat(), "pm25": 5000},
        {
            "sensorId": AIR,
            "dateObserved": (t + timedelta(seconds=3)).isoformat(),
            "pm25": 38.5,
            "pm10": 61,
        },
    ]
    status, body = request(f"{base}/v1/readings", json.dumps(items).encode())

    assert status == 207, body
    assert (body["accepted"], body["rejected"]) == (3, 6)
    results = body["results"]
    assert [r["index"] for r in results] == list(range(len(items)))
    assert [r["status"] for r in results] == ["accepted", "accepted"] + ["rejected"] * 6 + [
        "accepted"
    ]
    errors = {r["index"]: r["error"] for r in results if r["status"] == "rejected"}
    assert errors[2] == "unknown sensor 'ghost': not in the sensor registry"
    assert errors[3] == (
        f"sensor {AIR}: unitCode of pm25: unit 'CMT' is a length unit (cm (CMT)), which does "
        "not fit pm25 (mass concentration); accepted: µg/m³ (GQ)"
    )
    assert errors[4] == f"sensor {AIR}: missing timestamp dateObserved"
    assert "s in the future" in errors[5] and "the sensor's clock is wrong" in errors[5]
    assert errors[6] == f"duplicate seq 1 for sensor {RIVER} (already ingested)"
    assert errors[7] == f"sensor {AIR}: pm25 = 5000 is outside the plausible range 0..1000 µg/m³"

    # Answered only after Kafka confirmed, so everything is in the topics already.
    readings = {
        r.key.decode(): decode_as(r.value, SensorReading)
        for r in pipeline.read_topic(topics.readings)
    }
    assert {sensor: r.values for sensor, r in readings.items()} == {
        RIVER: {"waterLevel": 2.31},
        CANAL: {"waterLevel": 1.85},
        AIR: {"pm25": 38.5, "pm10": 61.0},
    }
    assert str(readings[RIVER].id) == results[0]["id"]
    assert str(readings[AIR].id) == results[8]["id"]

    letters = [
        decode_as(r.value, DeadLetter)
        for r in pipeline.read_topic(topics.dead_letters(topics.readings))
    ]
    assert sorted(letter.error for letter in letters) == sorted(errors.values())
    for letter in letters:
        assert letter.stage == "ingest.http" and letter.source_kind == "http"
        assert letter.source_topic == "POST /v1/readings"
        index = next(i for i, error in errors.items() if error == letter.error)
        assert json.loads(letter.original) == items[index]

    # The same reading sent again, e.g. by a gateway that retried after a timeout.
    status, again = request(f"{base}/v1/readings", json.dumps({"readings": items[:1]}).encode())
    assert status == 400
    assert again["results"] == [
        {
            "index": 0,
            "status": "rejected",
            "error": f"duplicate seq 1 for sensor {RIVER} (already ingested)",
        }
    ]

    status, refused = request(f"{base}/v1/readings", b"pm25=41.7")
    assert status == 400
    assert refused["error"].startswith("body is not JSON")
    assert (refused["accepted"], refused["rejected"], refused["results"]) == (0, 0, [])

    assert request(f"{base}/healthz") == (200, {"status": "ok"})

    assert pipeline.stop(process) == 0
    log = pipeline.log_of(process)
    assert "HTTP ingest stopped: accepted 3, rejected 7" in log


def test_a_configured_token_is_required_and_never_logged(pipeline: Pipeline) -> None:
    token = "s3kr1t-gateway-token"
    base, process = start_http(
        pipeline,
        {"PANTAU__INGEST__HTTP_TOKEN": token, "PANTAU__INGEST__HTTP_MAX_ITEMS": "2"},
    )
    t = utcnow().replace(microsecond=0) - timedelta(seconds=10)
    one = json.dumps(
        [{"sensorId": AIR, "dateObserved": t.isoformat(), "seq": 1, "pm25": 20}]
    ).encode()

    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": token}):
        status, body = request(f"{base}/v1/readings", one, headers)
        assert status == 401, headers
        assert "bearer token" in body["error"] and body["accepted"] == 0

    status, body = request(f"{base}/v1/readings", one, {"Authorization": f"Bearer {token}"})
    assert (status, body["accepted"]) == (200, 1)

    three = json.dumps([json.loads(one)[0]] * 3).encode()
    status, body = request(f"{base}/v1/readings", three, {"Authorization": f"Bearer {token}"})
    assert status == 413
    assert "3 readings in one request; the limit is 2" in body["error"]

    assert pipeline.stop(process) == 0
    assert token not in pipeline.log_of(process)


def test_a_taken_port_is_reported(pipeline: Pipeline) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            pipeline.command("ingest", "http", "--host", "127.0.0.1", "--port", str(port)),
            capture_output=True,
            text=True,
            timeout=120,
            env=pipeline.env,
            cwd=REPO,
        )
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
