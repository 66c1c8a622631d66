"""HTTP → validation → Kafka: who may send (gateways' credentials, their own sensors, HTTPS);
per-item results, converted values, dead letters with reasons; hostile bodies, slow clients
and too many connections."""

from __future__ import annotations

import asyncio
import base64
import gzip
import http.client
import json
import socket
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from ingest.validation import ATTRIBUTES_BY_TYPE
from pantau.codec import decode_as
from pantau.credentials import hash_secret
from pantau.ids import utcnow
from pantau.messages import DeadLetter, SensorReading
from pantau.poison import MAX_ORIGINAL_BYTES
from pantau.topics import Topics
from tests.conftest import REPO
from tests.integration.conftest import Pipeline

RIVER = "wl-brantas-lengkong"
CANAL = "wl-sadar-magersari"
AIR = "aq-alun-alun"
AIR_ATTRIBUTES = ", ".join(sorted(ATTRIBUTES_BY_TYPE["air_quality"]))
DEV_GATEWAY = "dev-gateway"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def request(
    url: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    *,
    content_type: str = "application/json",
    context: ssl.SSLContext | None = None,
) -> tuple[int, Any]:
    """(status, decoded JSON body); error statuses are answers too, not exceptions."""
    status, _headers, answer = exchange(
        url, body, headers, content_type=content_type, context=context
    )
    return status, answer


def exchange(
    url: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    *,
    content_type: str = "application/json",
    context: ssl.SSLContext | None = None,
) -> tuple[int, dict[str, str], Any]:
    """(status, response headers, decoded JSON body)."""
    assert url.startswith(("http://127.0.0.1:", "https://127.0.0.1:"))
    req = urllib.request.Request(url, data=body, headers=headers or {})  # noqa: S310 - checked above
    if body is not None:
        req.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(req, timeout=60, context=context) as response:  # noqa: S310
            return response.status, dict(response.headers), json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), json.loads(exc.read())


def start_http(
    pipeline: Pipeline, env: dict[str, str] | None = None, *, scheme: str = "http"
) -> tuple[str, Any]:
    port = free_port()
    process = pipeline.start("ingest-http", "ingest", "http", "--port", str(port), env=env)
    pipeline.wait_for("the HTTP listener", lambda: "listening on" in pipeline.log_of(process))
    return f"{scheme}://127.0.0.1:{port}", process


def dev_secret(pipeline: Pipeline) -> str:
    """The development gateway's secret, as the settings loaded it (the secrets file)."""
    for gateway in pipeline.settings.gateways:
        if gateway.id == DEV_GATEWAY and gateway.secret is not None:
            return gateway.secret.get_secret_value()
    raise AssertionError(
        f"{DEV_GATEWAY} has no secret: `pantau services up` makes the development secrets file"
    )


def login(pipeline: Pipeline) -> dict[str, str]:
    """The development gateway's credentials, as a header."""
    return {"Authorization": f"Bearer {DEV_GATEWAY}.{dev_secret(pipeline)}"}


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def with_gateways(pipeline: Pipeline, *extra: dict[str, Any]) -> dict[str, str]:
    """An environment override: the gateways whose secrets the settings hold (the development
    gateway), and `extra` ones."""
    gateways = [
        {"id": g.id, "sensors": list(g.sensors), "secret": g.secret.get_secret_value()}
        for g in pipeline.settings.gateways
        if g.secret is not None
    ]
    return {"PANTAU__GATEWAYS": json.dumps([*gateways, *extra])}


def registry_override(pipeline: Pipeline, sensor_id: str, key: str, value: str) -> dict[str, str]:
    index = [s.id for s in pipeline.settings.sensors].index(sensor_id)
    return {f"PANTAU__SENSORS__{index}__{key.upper()}": value}


def test_a_mixed_batch_is_stored_item_by_item(pipeline: Pipeline) -> None:
    topics = Topics(pipeline.settings.kafka)
    auth = login(pipeline)
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
    status, body = request(f"{base}/v1/readings", json.dumps(items).encode(), auth)

    assert status == 207, body
    assert (body["accepted"], body["rejected"], body["forbidden"]) == (3, 6, 0)
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
    # Each reading names the gateway that sent it.
    assert {r.gateway for r in readings.values()} == {DEV_GATEWAY}

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
    status, again = request(
        f"{base}/v1/readings", json.dumps({"readings": items[:1]}).encode(), auth
    )
    assert status == 400
    assert again["results"] == [
        {
            "index": 0,
            "status": "rejected",
            "error": f"duplicate seq 1 for sensor {RIVER} (already ingested)",
        }
    ]

    status, refused = request(f"{base}/v1/readings", b"pm25=41.7", auth)
    assert status == 400
    assert refused["error"].startswith("body is not JSON")
    assert (refused["accepted"], refused["rejected"], refused["results"]) == (0, 0, [])

    assert request(f"{base}/healthz") == (200, {"status": "ok"})

    assert pipeline.stop(process) == 0
    log = pipeline.log_of(process)
    assert "HTTP ingest stopped: accepted 3, rejected 7, failed 0, forbidden 0" in log


def test_a_taken_port_is_reported(pipeline: Pipeline) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            # Unsupervised: the supervisor would start it again and again, as it should.
            pipeline.command(
                "ingest", "http", "--host", "127.0.0.1", "--port", str(port), "--no-supervise"
            ),
            capture_output=True,
            text=True,
            timeout=120,
            env=pipeline.env,
            cwd=REPO,
        )
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr


def fresh(sensor_id: str, seq: int, **fields: Any) -> dict[str, Any]:
    observed = utcnow().replace(microsecond=0) - timedelta(seconds=30)
    return {"sensorId": sensor_id, "dateObserved": observed.isoformat(), "seq": seq, **fields}


def readings_in(pipeline: Pipeline) -> list[SensorReading]:
    topic = Topics(pipeline.settings.kafka).readings
    return [decode_as(r.value, SensorReading) for r in pipeline.read_topic(topic)]


def letters_in(pipeline: Pipeline) -> list[DeadLetter]:
    topics = Topics(pipeline.settings.kafka)
    return [
        decode_as(r.value, DeadLetter)
        for r in pipeline.read_topic(topics.dead_letters(topics.readings))
    ]


STOLEN_SECRET = "St0len-Gateway_Secret-0123456789"
RIVER_SECRET = "R1ver-Gateway_Secret-9876543210"


def one_reading(seq: int = 1, sensor_id: str = AIR) -> bytes:
    return json.dumps([fresh(sensor_id, seq, pm25=20)]).encode()


def challenges(url: str, body: bytes) -> tuple[int, list[str]]:
    """The status and every WWW-Authenticate header of a POST without credentials."""
    host, port = url.split("//", 1)[1].split("/", 1)[0].split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    try:
        connection.request("POST", "/v1/readings", body, {"Content-Type": "application/json"})
        response = connection.getresponse()
        response.read()
        return response.status, response.headers.get_all("WWW-Authenticate") or []
    finally:
        connection.close()


def test_missing_wrong_and_revoked_credentials_never_enter(pipeline: Pipeline) -> None:
    secret = dev_secret(pipeline)
    stolen = {
        "id": "stolen-gw",
        "sensors": [AIR],
        "secret_hash": hash_secret(STOLEN_SECRET),
        "revoked": True,
    }
    base, process = start_http(
        pipeline, {**with_gateways(pipeline, stolen), "PANTAU__INGEST__HTTP_MAX_ITEMS": "2"}
    )
    url = f"{base}/v1/readings"

    status, offered = challenges(url, one_reading())
    assert status == 401
    assert offered == [
        'Bearer realm="pantau ingest"',
        'Basic realm="pantau ingest", charset="UTF-8"',
    ]

    refused = [
        ({}, 401, "credentials required"),
        ({"Authorization": f"Bearer {DEV_GATEWAY}.not-the-secret"}, 401, "wrong secret"),
        ({"Authorization": f"Bearer nobody.{secret}"}, 401, "wrong secret"),
        (basic(DEV_GATEWAY, "not-the-secret"), 401, "wrong secret"),
        # The shared token of old: not a gateway's credentials.
        ({"Authorization": f"Bearer {secret}"}, 401, "a bearer token is <gateway id>.<secret>"),
        (
            {"Authorization": f"Bearer stolen-gw.{STOLEN_SECRET}"},
            403,
            "gateway stolen-gw is revoked",
        ),
        (basic("stolen-gw", STOLEN_SECRET), 403, "gateway stolen-gw is revoked"),
    ]
    for headers, expected, error in refused:
        status, body = request(url, one_reading(), headers)
        assert status == expected, headers
        assert error in body["error"], headers
        assert (body["accepted"], body["rejected"], body["results"]) == (0, 0, [])

    # They never entered: no reading, no dead letter.
    assert readings_in(pipeline) == []
    assert letters_in(pipeline) == []
    # Kafka's health is nobody's secret.
    assert request(f"{base}/healthz") == (200, {"status": "ok"})

    # The right credentials get in; the limits still hold for them.
    status, body = request(url, one_reading(), login(pipeline))
    assert (status, body["accepted"]) == (200, 1)
    three = json.dumps([fresh(AIR, n, pm25=1) for n in range(2, 5)]).encode()
    status, body = request(url, three, login(pipeline))
    assert status == 413
    assert "3 readings in one request; the limit is 2" in body["error"]

    assert pipeline.stop(process) == 0
    log = pipeline.log_of(process)
    where = "refused POST /v1/readings from 127.0.0.1"
    for line in [
        f"{where} (401): no credentials",
        f"{where} (401): wrong secret for gateway '{DEV_GATEWAY}'",
        f"{where} (401): unknown gateway 'nobody'",
        f"{where} (401): malformed Authorization: a bearer token is <gateway id>.<secret>",
        f"{where} (403): gateway stolen-gw is revoked",
    ]:
        assert line in log
    # The first refusal was the one that showed the challenges.
    assert "requests refused: no or wrong credentials 6, revoked gateway 2" in log
    for hidden in (secret, STOLEN_SECRET, "not-the-secret"):
        assert hidden not in log


def test_a_gateway_sending_for_a_sensor_not_its_own_is_forbidden_that_item(
    pipeline: Pipeline,
) -> None:
    river = {"id": "river-gw", "sensors": [RIVER], "secret_hash": hash_secret(RIVER_SECRET)}
    base, process = start_http(pipeline, with_gateways(pipeline, river))
    url = f"{base}/v1/readings"
    # Basic, as many devices only do that.
    as_river = basic("river-gw", RIVER_SECRET)

    batch = [fresh(RIVER, 1, waterLevel=2.0), fresh(AIR, 1, pm25=12)]
    status, body = request(url, json.dumps(batch).encode(), as_river)
    assert status == 207, body
    assert (body["accepted"], body["rejected"], body["forbidden"]) == (1, 0, 1)
    assert [r["status"] for r in body["results"]] == ["accepted", "forbidden"]
    assert body["results"][1]["error"] == (
        f"gateway river-gw may not send readings for sensor {AIR}: it is not one of the "
        "gateway's sensors in the registry"
    )

    status, body = request(url, json.dumps([fresh(AIR, 2, pm25=12)]).encode(), as_river)
    assert (status, [r["status"] for r in body["results"]]) == (403, ["forbidden"])

    # The sensor's own gateway may send the very reading.
    status, body = request(url, json.dumps([fresh(AIR, 1, pm25=12)]).encode(), login(pipeline))
    assert (status, body["accepted"]) == (200, 1)

    assert sorted((r.sensor_id, r.gateway) for r in readings_in(pipeline)) == [
        (AIR, DEV_GATEWAY),
        (RIVER, "river-gw"),
    ]
    assert letters_in(pipeline) == [], "a forbidden item is not dead-lettered"
    assert pipeline.stop(process) == 0
    log = pipeline.log_of(process)
    assert (
        "1 of 2 items of a POST /v1/readings batch from gateway river-gw forbidden, not stored: "
        f"sensors {AIR} are not its own"
    ) in log
    assert "HTTP ingest stopped: accepted 2, rejected 0, failed 0, forbidden 2" in log
    assert RIVER_SECRET not in log


def test_anonymous_readings_only_with_the_setting_and_it_is_logged(pipeline: Pipeline) -> None:
    base, process = start_http(pipeline)
    assert request(f"{base}/v1/readings", one_reading(1))[0] == 401
    assert pipeline.stop(process) == 0
    assert "http_allow_anonymous is on" not in pipeline.log_of(process)

    base, process = start_http(pipeline, {"PANTAU__INGEST__HTTP_ALLOW_ANONYMOUS": "true"})
    status, body = request(f"{base}/v1/readings", one_reading(1))
    assert (status, body["accepted"]) == (200, 1)
    # Credentials given are still checked, and name the sender.
    assert request(f"{base}/v1/readings", one_reading(2), basic(DEV_GATEWAY, "wrong"))[0] == 401
    status, body = request(f"{base}/v1/readings", one_reading(3), login(pipeline))
    assert (status, body["accepted"]) == (200, 1)

    assert sorted((r.seq or 0, r.gateway) for r in readings_in(pipeline)) == [
        (1, None),
        (3, DEV_GATEWAY),
    ]
    assert pipeline.stop(process) == 0
    assert (
        "WARNING ingest.http: HTTP ingest: ingest.http_allow_anonymous is on: anyone who reaches "
        "this port may send readings for any sensor without credentials"
    ) in pipeline.log_of(process)


def make_certificates(folder: Path) -> tuple[Path, Path, Path]:
    """A self-signed CA, and a certificate it signed for 127.0.0.1: (CA, certificate, key)."""

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=folder, timeout=60)

    curve = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    openssl(
        "req", "-x509", *curve, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
        "-subj", "/CN=Pantau test CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip
    openssl("req", *curve, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1")
    (folder / "server.ext").write_text(
        "basicConstraints=CA:FALSE\n"
        "keyUsage=critical,digitalSignature\n"
        "extendedKeyUsage=serverAuth\n"
        "subjectAltName=IP:127.0.0.1\n"
        "authorityKeyIdentifier=keyid\n"
    )
    openssl(
        "x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "server.crt", "-days", "2", "-extfile", "server.ext",
    )  # fmt: skip
    return folder / "ca.crt", folder / "server.crt", folder / "server.key"


def test_https_serves_clients_that_trust_its_ca_only(pipeline: Pipeline, tmp_path: Path) -> None:
    ca, cert, key = make_certificates(tmp_path)
    base, process = start_http(
        pipeline,
        {"PANTAU__INGEST__HTTP_TLS_CERT": str(cert), "PANTAU__INGEST__HTTP_TLS_KEY": str(key)},
        scheme="https",
    )
    trusting = ssl.create_default_context(cafile=str(ca))

    status, body = request(f"{base}/v1/readings", one_reading(), login(pipeline), context=trusting)
    assert (status, body["accepted"]) == (200, 1)
    assert request(f"{base}/healthz", context=trusting) == (200, {"status": "ok"})
    (reading,) = readings_in(pipeline)
    assert reading.gateway == DEV_GATEWAY

    # A client that does not trust the CA does not talk to it, and sends nothing.
    with pytest.raises(urllib.error.URLError) as caught:
        request(f"{base}/v1/readings", one_reading(2), login(pipeline))
    assert isinstance(caught.value.reason, ssl.SSLCertVerificationError)
    # Nor does the port speak plain HTTP.
    plain = base.replace("https://", "http://")
    with pytest.raises((http.client.HTTPException, OSError)):
        request(f"{plain}/v1/readings", one_reading(3), login(pipeline))
    assert len(readings_in(pipeline)) == 1

    assert pipeline.stop(process) == 0
    log = pipeline.log_of(process)
    assert f"HTTP ingest listening on https://127.0.0.1:{port_of(base)}" in log
    assert "Traceback" not in log


def test_a_certificate_that_cannot_be_used_stops_start_up(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    _ca, cert, _key = make_certificates(tmp_path)
    missing = tmp_path / "absent.key"
    result = subprocess.run(
        pipeline.command("ingest", "http", "--port", str(free_port()), "--no-supervise"),
        capture_output=True,
        text=True,
        timeout=120,
        env={
            **pipeline.env,
            "PANTAU__INGEST__HTTP_TLS_CERT": str(cert),
            "PANTAU__INGEST__HTTP_TLS_KEY": str(missing),
        },
        cwd=REPO,
    )
    assert result.returncode == 1
    assert f"pantau ingest http: ingest.http_tls_key: {missing} is not a file" in result.stderr


def test_hostile_bodies_are_refused_or_rejected_never_a_server_error(pipeline: Pipeline) -> None:
    # Room for a 10 MiB item, so that it reaches the item checks.
    base, process = start_http(pipeline, {"PANTAU__INGEST__HTTP_MAX_BODY_BYTES": str(16 << 20)})
    url = f"{base}/v1/readings"
    auth = login(pipeline)

    refused = {
        "nested 10,000 levels": (
            b'[{"sensorId": "aq-alun-alun", "pm25": ' + b"[" * 10_000 + b"]" * 10_000 + b"}]",
            400,
            "body is not JSON: nested deeper than 32 levels",
        ),
        "a 5,000-digit integer": (
            b'[{"sensorId": "aq-alun-alun", "pm25": ' + b"7" * 5000 + b"}]",
            400,
            "body is not JSON: an integer of more than 4300 digits",
        ),
        "invalid UTF-8": (
            b'[{"sensorId": "aq-\xff\xfe"}]',
            400,
            "body is not JSON: not valid UTF-8",
        ),
        "random bytes": (bytes(range(256)) * 64, 400, "body is not JSON"),
        "a NUL character": (
            b'[{"sensorId": "aq-alun-alun\\u0000"}]',
            400,
            "body: text contains a NUL character",
        ),
        "over the body limit": (
            b"[" + b" " * (17 << 20) + b"]",
            413,
            f"body is larger than {16 << 20} bytes (ingest.http_max_body_bytes)",
        ),
        # 50 kB that inflate to 50 MB: cut off at the limit, counted after decompression.
        "a gzip bomb": (
            gzip.compress(b"[" + b" " * (50 << 20) + b"]"),
            413,
            f"body is larger than {16 << 20} bytes (ingest.http_max_body_bytes)",
        ),
        "gzip that is not": (
            b"[not gzip]",
            400,
            "body is malformed: Can not decode content-encoding: gzip",
        ),
    }
    for what, (body, status, error) in refused.items():
        encoding = {"Content-Encoding": "gzip"} if "gzip" in what else {}
        answer = request(url, body, {**auth, **encoding})
        assert answer[0] == status, what
        assert error in answer[1]["error"], what
        assert (answer[1]["accepted"], answer[1]["rejected"], answer[1]["results"]) == (0, 0, [])
    assert letters_in(pipeline) == [], "a body refused whole is answered, not dead-lettered"

    # What aiohttp cannot parse as HTTP at all it answers 400 itself; one line in the log.
    with socket.create_connection(("127.0.0.1", port_of(base)), timeout=30) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nX-Junk: " + b"a" * 20_000 + b"\r\n\r\n")
        assert sock.recv(4096).startswith(b"HTTP/1.0 400 Bad Request")

    huge = fresh(AIR, 1, pm25=12, note="x" * (10 << 20))
    items = [
        fresh(AIR, 2, pm25=12),
        huge,
        fresh(AIR, 3, pm25=10**399),
        {**fresh(AIR, 4, pm25=12), "seq": 10**399},
        {**fresh(AIR, 5, pm25=12), "dateObserved": "0001-01-01T00:00:00Z"},
        {**fresh(AIR, 6, pm25=12), "dateObserved": "0001-01-01T00:00:00+07:00"},
        fresh(AIR, 7, pm25=float("nan")),
        fresh(AIR, 8, pm25=float("-inf")),
        fresh(AIR, 9, pm25="12"),
        {**fresh(AIR, 10, pm25=12), "sensorId": 5},
        {**fresh(AIR, 11, pm25=12), "dateObserved": 5},
        fresh(AIR, 12, pm25=[[[[[[[[[[[[12]]]]]]]]]]]]),
        "a string",
        None,
    ]
    size = len(json.dumps(huge).encode())
    status, body = request(url, json.dumps(items).encode(), auth)
    assert status == 207, body
    assert (body["accepted"], body["rejected"], body["failed"]) == (1, 13, 0)
    errors = [r.get("error") for r in body["results"]]
    expected = [
        None,
        f"item is {size} bytes as JSON; a reading may have at most 262144 "
        "(ingest.max_reading_bytes)",
        f"sensor {AIR}: pm25 = an integer of 400 digits is outside the plausible range "
        "0..1000 µg/m³",
        f"sensor {AIR}: seq an integer of 400 digits does not fit a 64-bit counter "
        "(at most 9223372036854775807)",
        f"sensor {AIR}: dateObserved '0001-01-01T00:00:00Z' is before 2015-01-01 "
        "(ingest.earliest_observation): the sensor's clock was never set",
        f"sensor {AIR}: dateObserved '0001-01-01T00:00:00+07:00' is before 2015-01-01 "
        "(ingest.earliest_observation): the sensor's clock was never set",
        f"sensor {AIR}: pm25 = nan is outside the plausible range 0..1000 µg/m³",
        f"sensor {AIR}: pm25 = -inf is outside the plausible range 0..1000 µg/m³",
        f"sensor {AIR}: pm25 must be a number, got '12'",
        "sensorId must be a non-empty string, got 5",
        f"sensor {AIR}: dateObserved must be an ISO 8601 string",
        f"sensor {AIR}: pm25 must be a number, got [[[[[[[[[[[[12]]]]]]]]]]]]",
        "payload must be a JSON object, got str",
        "payload must be a JSON object, got NoneType",
    ]
    assert errors == expected

    (stored,) = readings_in(pipeline)
    assert (stored.sensor_id, stored.seq) == (AIR, 2)
    letters = letters_in(pipeline)
    assert [letter.error for letter in letters][1:] == expected[2:]
    oversized = letters[0]
    assert oversized.error == (
        f"{expected[1]} [original: {size} bytes, the first {MAX_ORIGINAL_BYTES} kept]"
    )
    assert oversized.original == json.dumps(huge).encode()[:MAX_ORIGINAL_BYTES]

    # Still serving, and nothing above was a server error.
    assert request(url, json.dumps([fresh(AIR, 13, pm25=12)]).encode(), auth)[0] == 200
    assert request(f"{base}/healthz") == (200, {"status": "ok"})
    assert pipeline.stop(process) == 0
    log = pipeline.log_of(process)
    assert "Error handling request from 127.0.0.1: Got more than 8190 bytes" in log
    assert "Traceback" not in log


def test_a_batch_with_an_oversized_item_is_partly_accepted_and_says_so(
    pipeline: Pipeline,
) -> None:
    base, _process = start_http(pipeline)
    # Over Kafka's 1 MB message limit: its dead letter must still be storable.
    oversized = fresh(RIVER, 99, waterLevel=2.0, note="x" * 1_500_000)
    batch = [fresh(RIVER, seq, waterLevel=2.0) for seq in range(1, 4)]
    batch += [oversized] + [fresh(CANAL, seq, waterLevel=1.0) for seq in range(1, 3)]

    status, body = request(f"{base}/v1/readings", json.dumps(batch).encode(), login(pipeline))

    assert status == 207, body
    assert (body["accepted"], body["rejected"], body["failed"]) == (5, 1, 0)
    assert [r["status"] for r in body["results"]] == ["accepted"] * 3 + ["rejected"] + [
        "accepted"
    ] * 2
    assert body["results"][3]["error"].endswith("(ingest.max_reading_bytes)")
    readings = readings_in(pipeline)
    assert sorted((r.sensor_id, r.seq) for r in readings) == [
        (RIVER, 1), (RIVER, 2), (RIVER, 3), (CANAL, 1), (CANAL, 2),
    ]  # fmt: skip
    assert {str(r.id) for r in readings} == {r["id"] for r in body["results"] if "id" in r}
    (letter,) = letters_in(pipeline)
    assert letter.error.startswith(body["results"][3]["error"])


def test_items_kafka_did_not_take_are_failed_and_only_they_are_sent_again(
    pipeline: Pipeline,
) -> None:
    # Kafka's message limit lowered to its floor: the producer refuses a 100 kB dead letter.
    base, process = start_http(pipeline, {"PANTAU__KAFKA__MAX_MESSAGE_BYTES": "10000"})
    bad_and_big = fresh(AIR, 2, pm25=12, note="x" * 100_000)
    batch = [
        fresh(AIR, 1, pm25=12),
        bad_and_big,
        fresh(CANAL, 1, waterLevel=1.0),
        fresh("ghost", 1, pm25=12),
    ]

    auth = login(pipeline)
    status, headers, body = exchange(f"{base}/v1/readings", json.dumps(batch).encode(), auth)

    assert status == 503, body
    assert headers["Retry-After"] == "5"
    assert (body["accepted"], body["rejected"], body["failed"]) == (2, 1, 1)
    assert [r["status"] for r in body["results"]] == ["accepted", "failed", "accepted", "rejected"]
    failed = body["results"][1]["error"]
    assert failed.startswith("Kafka did not confirm the dead letter of this rejected item")
    assert "MessageSizeTooLargeError" in failed
    assert failed.endswith(f"unknown attribute 'note' (expected some of: {AIR_ATTRIBUTES})")
    assert body["error"] == (
        "Kafka did not confirm 1 of 4 items: send those marked failed again (the others are stored)"
    )
    assert sorted(r.sensor_id for r in readings_in(pipeline)) == [AIR, CANAL]
    assert [letter.source_key for letter in letters_in(pipeline)] == ["ghost"]

    # The client sends again only what failed; the stored readings are not repeated.
    resent = [batch[i] for i, r in enumerate(body["results"]) if r["status"] == "failed"]
    status, body = request(f"{base}/v1/readings", json.dumps(resent).encode(), auth)
    assert (status, [r["status"] for r in body["results"]]) == (503, ["failed"])
    assert len(readings_in(pipeline)) == 2
    assert pipeline.stop(process) == 0
    assert "HTTP ingest stopped: accepted 2, rejected 1, failed 2" in pipeline.log_of(process)


def test_only_a_body_declared_json_or_undeclared_is_read(pipeline: Pipeline) -> None:
    base, _process = start_http(pipeline)
    one = json.dumps([fresh(AIR, 1, pm25=12)]).encode()
    auth = login(pipeline)

    status, body = request(
        f"{base}/v1/readings", one, auth, content_type="text/plain; charset=utf-8"
    )
    assert status == 415
    assert body["error"] == (
        "Content-Type 'text/plain; charset=utf-8' is not JSON: send application/json "
        "(or application/*+json)"
    )
    assert readings_in(pipeline) == []

    status, body = request(
        f"{base}/v1/readings", one, auth, content_type="application/vnd.gateway.readings+json"
    )
    assert (status, body["accepted"]) == (200, 1)

    # Without a Content-Type (urllib would add a form type): read as JSON.
    connection = http.client.HTTPConnection("127.0.0.1", int(base.rsplit(":", 1)[1]), timeout=60)
    try:
        body2 = json.dumps([fresh(AIR, 2, pm25=12)]).encode()
        connection.request("POST", "/v1/readings", body2, auth)
        response = connection.getresponse()
        assert (response.status, json.loads(response.read())["accepted"]) == (200, 1)
    finally:
        connection.close()


def trickle(port: int, start: bytes, step: bytes, started: threading.Event) -> tuple[bytes, bool]:
    """Send `start`, then `step` four times a second until the server closes the connection;
    what the server answered, and whether it closed the connection (within a minute)."""
    answer = b""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(start)
        started.set()
        sock.settimeout(0.25)
        give_up = time.monotonic() + 60
        while time.monotonic() < give_up:
            try:
                chunk = sock.recv(4096)
            except TimeoutError:
                try:
                    sock.sendall(step)
                except OSError:
                    return answer, True
                continue
            except OSError:
                return answer, True
            if not chunk:
                return answer, True
            answer += chunk
    return answer, False


def port_of(base: str) -> int:
    return int(base.rsplit(":", 1)[1])


def request_head(pipeline: Pipeline) -> bytes:
    """The start of a POST /v1/readings from the development gateway, up to its body's length."""
    authorization = login(pipeline)["Authorization"].encode()
    return (
        b"POST /v1/readings HTTP/1.1\r\nHost: pantau\r\nContent-Type: application/json\r\n"
        b"Authorization: " + authorization + b"\r\n"
    )


@pytest.mark.parametrize("slow_part", ["body", "headers"])
def test_a_trickling_client_is_cut_off_while_an_honest_one_is_served(
    pipeline: Pipeline, slow_part: str
) -> None:
    base, process = start_http(pipeline, {"PANTAU__INGEST__HTTP_READ_TIMEOUT_S": "3"})
    if slow_part == "body":
        start, step = request_head(pipeline) + b"Content-Length: 1000\r\n\r\n[", b" "
    else:
        start, step = request_head(pipeline), b"X"
    started = threading.Event()
    outcome: list[tuple[bytes, bool]] = []
    slow = threading.Thread(
        target=lambda: outcome.append(trickle(port_of(base), start, step, started))
    )
    slow.start()
    try:
        assert started.wait(10)
        status, body = request(
            f"{base}/v1/readings", json.dumps([fresh(AIR, 1, pm25=9)]).encode(), login(pipeline)
        )
        assert (status, body["accepted"]) == (200, 1)
    finally:
        slow.join()
    ((answer, closed),) = outcome
    # A thousand bytes at four a second would take minutes: it was cut off, and told why.
    assert closed
    head, _, rest = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 Request Timeout")
    assert json.loads(rest)["error"] == (
        "the request did not arrive whole within 3 s of its first byte (ingest.http_read_timeout_s)"
    )
    assert pipeline.stop(process) == 0
    assert "connections timed out 1" in pipeline.log_of(process)


def test_an_idle_keep_alive_connection_is_closed(pipeline: Pipeline) -> None:
    base, _process = start_http(pipeline)
    with socket.create_connection(("127.0.0.1", port_of(base)), timeout=60) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: pantau\r\n\r\n")
        received = b""
        while chunk := sock.recv(4096):
            received += chunk
    # The connection was kept after the answer, and then closed by the server (the read
    # above would have timed out otherwise).
    assert received.startswith(b"HTTP/1.1 200 OK")
    assert b"Connection: close" not in received


def test_a_client_that_closes_its_side_after_sending_still_gets_its_answer(
    pipeline: Pipeline,
) -> None:
    base, _process = start_http(pipeline)
    body = json.dumps([fresh(AIR, 1, pm25=9)]).encode()
    with socket.create_connection(("127.0.0.1", port_of(base)), timeout=60) as sock:
        sock.sendall(request_head(pipeline) + b"Content-Length: %d\r\n\r\n" % len(body) + body)
        sock.shutdown(socket.SHUT_WR)
        received = b""
        while chunk := sock.recv(4096):
            received += chunk
    head, _, answer = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK")
    assert json.loads(answer)["accepted"] == 1


def test_the_connection_cap_answers_503_and_serves_again_once_connections_close(
    pipeline: Pipeline,
) -> None:
    base, _process = start_http(
        pipeline,
        {"PANTAU__INGEST__HTTP_MAX_CONNECTIONS": "4", "PANTAU__INGEST__HTTP_READ_TIMEOUT_S": "120"},
    )
    holders = [socket.create_connection(("127.0.0.1", port_of(base))) for _ in range(4)]
    try:
        for sock in holders:
            sock.sendall(b"POST /v1/readings HTTP/1.1\r\n")
        pipeline.wait_for("the cap to be reached", lambda: request(f"{base}/healthz")[0] == 503)
        status, headers, body = exchange(f"{base}/healthz")
        assert (status, headers["Retry-After"]) == (503, "5")
        assert body["error"] == (
            "too many open connections (4, ingest.http_max_connections): try again shortly"
        )
    finally:
        for sock in holders:
            sock.close()
    pipeline.wait_for("a place under the cap", lambda: request(f"{base}/healthz")[0] == 200)
    status, body = request(
        f"{base}/v1/readings", json.dumps([fresh(AIR, 1, pm25=9)]).encode(), login(pipeline)
    )
    assert (status, body["accepted"]) == (200, 1)


async def _trickler(port: int) -> bytes:
    """One connection sending a header byte every half second; what the server answered."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    answer = b""
    try:
        writer.write(b"POST /v1/readings HTTP/1.1\r\nHost: pantau\r\n")
        for _ in range(120):
            try:
                chunk = await asyncio.wait_for(reader.read(4096), 0.5)
            except TimeoutError:
                writer.write(b"X")
                continue
            if not chunk:
                break
            answer += chunk
    except ConnectionError:
        pass
    finally:
        writer.close()
    return answer


def test_a_thousand_trickling_connections_hold_the_server_only_until_their_time_is_up(
    pipeline: Pipeline,
) -> None:
    base, process = start_http(pipeline, {"PANTAU__INGEST__HTTP_READ_TIMEOUT_S": "5"})
    port = port_of(base)

    async def flood() -> tuple[list[bytes], int]:
        loop = asyncio.get_running_loop()
        tricklers = [asyncio.create_task(_trickler(port)) for _ in range(1000)]
        await asyncio.sleep(1)
        # While the cap is taken, an honest client is answered at once that it must wait.
        during, _body = await loop.run_in_executor(None, request, f"{base}/healthz")
        return await asyncio.gather(*tricklers), during

    answers, during = asyncio.run(flood())

    statuses = Counter(answer.split(b"\r\n", 1)[0] for answer in answers)
    assert set(statuses) == {b"HTTP/1.1 408 Request Timeout", b"HTTP/1.1 503 Service Unavailable"}
    assert statuses[b"HTTP/1.1 408 Request Timeout"] >= 256
    assert during == 503
    # The tricklers are gone: honest clients are served again.
    status, body = request(
        f"{base}/v1/readings", json.dumps([fresh(AIR, 1, pm25=9)]).encode(), login(pipeline)
    )
    assert (status, body["accepted"]) == (200, 1)
    assert pipeline.stop(process) == 0
