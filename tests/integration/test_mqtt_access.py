"""The MQTT door, on real Mosquitto brokers locked from the registry: users and an ACL made by
`pantau mqtt broker-files`, TLS from `scripts/make-certs`.

- the development broker refuses anonymous clients and wrong passwords;
- a gateway publishes only for its own sensors (the broker answers "not authorized" for any
  other, and nothing of it is stored or dead-lettered);
- a revoked gateway cannot log in;
- a client using the ingest's client id cannot take its session over;
- the ingest with a wrong password stops, saying why;
- over TLS, clients that trust the site's CA connect and readings flow; others do not.
"""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from pantau.codec import decode_as
from pantau.credentials import hash_secret, new_secret
from pantau.ids import utcnow
from pantau.messages import SensorReading
from pantau.settings import Settings, load_settings
from pantau.topics import Topics
from tests.conftest import REPO
from tests.integration.conftest import BASE_CONFIG, Pipeline
from tests.integration.test_faults import private_mosquitto

ALUN = "aq-alun-alun"
PASAR = "aq-pasar-tanjung"


class Client:
    """An MQTT v5 client that remembers the broker's answers (CONNACK and PUBACK codes)."""

    def __init__(
        self,
        port: int,
        *,
        user: str | None,
        password: str | None,
        client_id: str = "",
        ca_file: Path | None = None,
    ) -> None:
        self.connected = threading.Event()
        self.answered = threading.Event()
        self.connack: ReasonCode | None = None
        self.pubacks: dict[int, ReasonCode] = {}
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5
        )
        if user is not None:
            self.client.username_pw_set(user, password)
        if ca_file is not None:
            self.client.tls_set(ca_certs=str(ca_file))
        self.client.on_connect = self._on_connect
        self.client.on_publish = lambda _c, _u, mid, rc, _p: self.pubacks.__setitem__(mid, rc)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _on_connect(self, _c: Any, _u: Any, _f: Any, rc: ReasonCode, _p: Any) -> None:
        self.connack = rc
        self.answered.set()
        if not rc.is_failure:
            self.connected.set()

    def wait_answer(self) -> ReasonCode:
        assert self.answered.wait(10), "the broker did not answer the CONNECT"
        assert self.connack is not None
        return self.connack

    def publish(self, topic: str, payload: dict[str, Any]) -> ReasonCode:
        assert self.connected.wait(10), f"not connected: {self.connack}"
        info = self.client.publish(topic, json.dumps(payload), qos=1)
        info.wait_for_publish(timeout=10)
        return self.pubacks[info.mid]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def reading(sensor_id: str, seq: int) -> dict[str, Any]:
    at = utcnow() - timedelta(minutes=10) + timedelta(seconds=seq % 1000)
    return {
        "sensorId": sensor_id,
        "dateObserved": at.isoformat(),
        "seq": seq,
        "pm25": 20.0 + seq % 100,
    }


def with_gateways(pipeline: Pipeline, gateways: list[dict[str, Any]]) -> Settings:
    pipeline.env["PANTAU__GATEWAYS"] = json.dumps(gateways)
    pipeline.settings = load_settings(BASE_CONFIG, pipeline.env)
    return pipeline.settings


def stored(pipeline: Pipeline, sensor_id: str) -> int:
    rows = pipeline.scalar(
        "SELECT count(*) FROM sensor_readings WHERE sensor_id = %s AND seq >= 900000", sensor_id
    )
    return int(rows)


def test_the_development_broker_refuses_anonymous_clients_and_wrong_passwords(
    services: Settings,
) -> None:
    port = services.mqtt.port
    for user, password in ((None, None), ("dev-gateway", "not-the-secret"), ("nobody", "x")):
        client = Client(port, user=user, password=password)
        try:
            assert client.wait_answer().is_failure, (user, client.connack)
            assert str(client.connack) in ("Not authorized", "Bad user name or password")
        finally:
            client.close()


def test_gateways_publish_only_for_their_sensors_and_nobody_takes_the_ingest_session(
    isolated_pipeline: Pipeline, tmp_path: Path
) -> None:
    pipeline = isolated_pipeline
    alun, pasar, stolen = new_secret(), new_secret(), new_secret()
    settings = with_gateways(
        pipeline,
        [
            {"id": "gw-alun", "sensors": [ALUN], "secret": alun},
            {"id": "gw-pasar", "sensors": [PASAR], "secret": pasar},
            {"id": "gw-stolen", "sensors": [ALUN], "secret_hash": hash_secret(stolen),
             "revoked": True},
        ],
    )  # fmt: skip
    prefix = settings.mqtt.topic_prefix
    with private_mosquitto(settings, tmp_path) as broker:
        pipeline.env["PANTAU__MQTT__PORT"] = str(broker.port)
        ingest = pipeline.start("ingest-sensors", "ingest", "sensors")
        pipeline.start("sink", "sink")
        pipeline.wait_for("the subscription", lambda: "subscribed to" in pipeline.log_of(ingest))

        revoked = Client(broker.port, user="gw-stolen", password=stolen)
        assert revoked.wait_answer().is_failure
        revoked.close()

        gateway = Client(broker.port, user="gw-alun", password=alun)
        assert not gateway.publish(f"{prefix}/{ALUN}", reading(ALUN, 900001)).is_failure
        # Another gateway's sensor: the broker says no, and nothing reaches the ingest.
        refused = gateway.publish(f"{prefix}/{PASAR}", reading(PASAR, 900002))
        assert refused.is_failure and str(refused) == "Not authorized"

        # Another gateway connects with the ingest's configured client id, and with it plus
        # the host name: neither is the ingest's session, which carries on.
        base = settings.mqtt.client_id
        for client_id in (base, f"{base}-{socket.gethostname()}"):
            intruder = Client(broker.port, user="gw-pasar", password=pasar, client_id=client_id)
            assert not intruder.wait_answer().is_failure
            intruder.close()
        assert not gateway.publish(f"{prefix}/{ALUN}", reading(ALUN, 900003)).is_failure
        gateway.close()

        pipeline.wait_for("both of gw-alun's own readings", lambda: stored(pipeline, ALUN) == 2)
        assert stored(pipeline, PASAR) == 0
        log = pipeline.log_of(ingest)
        assert "MQTT connection lost" not in log, log
        assert "dead letter" not in log
        # The readings say which gateway sent them.
        topic = Topics(settings.kafka).readings
        senders = {decode_as(r.value, SensorReading).gateway for r in pipeline.read_topic(topic)}
        assert senders == {"gw-alun"}
        assert (
            pipeline.scalar(
                "SELECT string_agg(DISTINCT gateway, ',') FROM sensor_readings WHERE seq >= 900000"
            )
            == "gw-alun"
        )


def test_an_ingest_with_a_wrong_password_stops_and_says_why(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    with private_mosquitto(pipeline.settings, tmp_path) as broker:
        process = pipeline.start(
            "ingest-sensors",
            "ingest",
            "sensors",
            "--no-supervise",
            env={"PANTAU__MQTT__PORT": str(broker.port), "PANTAU_MQTT_PASSWORD": "wrong" * 4},
        )
        assert process.wait(timeout=60) == 1
    log = pipeline.log_of(process)
    assert "the MQTT broker refused the login of pantau-ingest" in log
    assert "wrong" * 4 not in log


def test_over_tls_only_clients_that_trust_the_site_ca_connect(
    isolated_pipeline: Pipeline, tmp_path: Path
) -> None:
    pipeline = isolated_pipeline
    certs = tmp_path / "certs"
    subprocess.run(
        [str(REPO / "scripts" / "make-certs"), str(certs), "127.0.0.1", "localhost"],
        check=True,
        capture_output=True,
    )
    listener = (
        "listener {port} 127.0.0.1\n"
        f"cafile {certs}/ca.crt\ncertfile {certs}/server.crt\nkeyfile {certs}/server.key\n"
    )
    user, password = next(
        (g.id, g.secret.get_secret_value()) for g in pipeline.settings.gateways if g.secret
    )
    with private_mosquitto(pipeline.settings, tmp_path, listener=listener) as broker:
        pipeline.env.update(
            {
                "PANTAU__MQTT__PORT": str(broker.port),
                "PANTAU__MQTT__TLS": "true",
                "PANTAU__MQTT__CA_FILE": str(certs / "ca.crt"),
            }
        )
        ingest = pipeline.start("ingest-sensors", "ingest", "sensors")
        pipeline.start("sink", "sink")
        pipeline.wait_for("the subscription", lambda: "subscribed to" in pipeline.log_of(ingest))
        device = Client(broker.port, user=user, password=password, ca_file=certs / "ca.crt")
        prefix = pipeline.settings.mqtt.topic_prefix
        assert not device.publish(f"{prefix}/{ALUN}", reading(ALUN, 900010)).is_failure
        device.close()
        pipeline.wait_for("the reading sent over TLS", lambda: stored(pipeline, ALUN) == 1)
        # Without the site's CA (the system's store only) the server is not trusted.
        untrusting = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        untrusting.username_pw_set(user, password)
        untrusting.tls_set()
        with pytest.raises(ssl.SSLCertVerificationError):
            untrusting.connect("127.0.0.1", broker.port)
