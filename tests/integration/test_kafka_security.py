"""Kafka with a login: every client and stage reaches a broker that wants SCRAM credentials,
and without them, or with a wrong password, fails at once and says why, never showing the
password.

The broker is a private one, started for these tests on their own ports and folder with a
SASL_PLAINTEXT listener (SCRAM-SHA-512) beside its plain one (scripts/lib/kafka.sh:
PANTAU_KAFKA_SASL_PORT, PANTAU_KAFKA_SASL_USERS); the suite's broker is never touched.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from confluent_kafka import KafkaException
from pydantic import SecretStr

from pantau import kafka
from pantau.codec import decode_as
from pantau.kafka import BatchConsumer, open_consumer
from pantau.messages import Alert
from pantau.settings import KafkaSettings, Settings
from pantau.topics import Topics, TopicSpec
from tests.conftest import REPO
from tests.integration.conftest import Pipeline, read_all
from tests.integration.test_faults import free_port
from tests.integration.test_sensor_pipeline import publish, wait_subscribed

USER = "pantau"
WATER = "wl-brantas-lengkong"


@dataclass
class SecuredKafka:
    sasl_port: int
    password: str

    @property
    def bootstrap(self) -> str:
        return f"localhost:{self.sasl_port}"

    def settings(self, base: KafkaSettings, *, password: str | None = None) -> KafkaSettings:
        """`base` pointed at the login listener, with this broker's password or `password`."""
        return base.model_copy(
            update={
                "bootstrap_servers": self.bootstrap,
                "security_protocol": "SASL_PLAINTEXT",
                "sasl_mechanism": "SCRAM-SHA-512",
                "sasl_username": USER,
                "sasl_password": SecretStr(self.password if password is None else password),
            }
        )

    def env(self, *, password: str | None = None) -> dict[str, str]:
        """The same as a `pantau` process's environment overrides."""
        return {
            "PANTAU__KAFKA__BOOTSTRAP_SERVERS": self.bootstrap,
            "PANTAU__KAFKA__SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "PANTAU__KAFKA__SASL_MECHANISM": "SCRAM-SHA-512",
            "PANTAU__KAFKA__SASL_USERNAME": USER,
            "PANTAU__KAFKA__SASL_PASSWORD": self.password if password is None else password,
        }


@pytest.fixture(scope="module")
def secured_kafka(
    services: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SecuredKafka]:
    state = tmp_path_factory.mktemp("kafka-sasl")
    # The broker's jars, resolved once from Maven Central by `pantau services up`.
    (state / "cache").symlink_to(services.services.state_dir / "cache")
    broker = SecuredKafka(free_port(), secrets.token_urlsafe(18))
    env = {
        **os.environ,
        "PANTAU_STATE_DIR": str(state),
        "PANTAU_KAFKA_PORT": str(free_port()),
        "PANTAU_KAFKA_CONTROLLER_PORT": str(free_port()),
        "PANTAU_KAFKA_SASL_PORT": str(broker.sasl_port),
        "PANTAU_KAFKA_SASL_USERS": f"{USER}:{broker.password}",
        "PANTAU_KAFKA_HEAP": "384m",
    }

    def services_sh(action: str) -> None:
        result = subprocess.run(
            ["bash", str(REPO / "scripts" / "services.sh"), action, "kafka"],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, f"kafka {action}:\n{result.stdout}\n{result.stderr}"
        # The users are made with the broker's log dir; their passwords go nowhere else.
        assert broker.password not in result.stdout + result.stderr

    services_sh("up")
    try:
        yield broker
        assert broker.password not in (state / "logs" / "kafka.log").read_text(errors="replace")
    finally:
        services_sh("down")


@pytest.fixture
def prefix() -> str:
    return f"sec-{uuid.uuid4().hex[:8]}"


def wrong_password(broker: SecuredKafka) -> str:
    return f"not-{broker.password}"


def assert_says_refused_without_secrets(text: str, broker: SecuredKafka) -> None:
    assert f"refused the login of user '{USER}'" in text, text[-3000:]
    assert "SCRAM-SHA-512" in text
    assert broker.password not in text
    assert wrong_password(broker) not in text


def poll_for(consumer: BatchConsumer, polls: int) -> None:
    for _ in range(polls):
        consumer.poll(100, 1.0)


def test_kafka_python_clients_log_in_and_a_wrong_or_missing_password_is_refused(
    secured_kafka: SecuredKafka, services: Settings, prefix: str
) -> None:
    settings = secured_kafka.settings(services.kafka)
    topic = f"{prefix}.greetings"
    kafka.wait_until_ready(settings, timeout_s=30)
    assert kafka.ensure_topics(settings, [TopicSpec(topic, 2)]) == [topic]
    producer = kafka.producer(settings, "test")
    producer.send(topic, key=b"k", value=b"selamat pagi").get(timeout=30)
    producer.close()

    consumer = kafka.consumer(settings, f"{prefix}-group", [topic], "test")
    try:
        got: list[bytes] = []
        deadline = time.monotonic() + 60
        while not got and time.monotonic() < deadline:
            got = [r.value for batch in consumer.poll(timeout_ms=500).values() for r in batch]
        assert got == [b"selamat pagi"]
    finally:
        consumer.close()
    # The admin client and the offsets reader log in too.
    assert kafka.message_counts(settings, [topic]) == {topic: 1}

    wrong = secured_kafka.settings(services.kafka, password=wrong_password(secured_kafka))
    # Refused rather than waited on: the whole minute would have been a timeout.
    with pytest.raises(kafka.KafkaRefused) as refused:
        kafka.wait_until_ready(wrong, timeout_s=60)
    assert_says_refused_without_secrets(str(refused.value), secured_kafka)
    # kafka-python reports a refused login as a bootstrap that timed out; the client
    # helpers say what it was.
    with pytest.raises(kafka.KafkaRefused) as refused:
        kafka.producer(wrong, "test", bootstrap_timeout_ms=3000)
    assert_says_refused_without_secrets(str(refused.value), secured_kafka)
    with pytest.raises(kafka.KafkaRefused):
        kafka.consumer(wrong, f"{prefix}-group", [topic], "test", bootstrap_timeout_ms=3000)

    # Without credentials the listener drops the client; the message points at the setting.
    plain = settings.model_copy(
        update={"security_protocol": "PLAINTEXT", "sasl_username": None, "sasl_password": None}
    )
    with pytest.raises(kafka.KafkaUnavailable) as unavailable:
        kafka.wait_until_ready(plain, timeout_s=5)
    assert "kafka.security_protocol" in str(unavailable.value)


def test_the_librdkafka_consumer_logs_in_and_stops_on_a_wrong_password(
    secured_kafka: SecuredKafka, services: Settings, prefix: str
) -> None:
    settings = secured_kafka.settings(services.kafka)
    topic = f"{prefix}.readings"
    kafka.ensure_topics(settings, [TopicSpec(topic, 1)])
    producer = kafka.producer(settings, "test")
    producer.send(topic, key=b"k", value=b"v").get(timeout=30)
    producer.close()

    consumer = open_consumer(
        settings, client="confluent", group_id=f"{prefix}-sink", topics=[topic], name="test"
    )
    try:
        records = []
        for _ in range(60):
            records += consumer.poll(100, 1.0)
            if records:
                break
        assert [(r.topic, r.value) for r in records] == [(topic, b"v")]
        assert consumer.commit(records)
    finally:
        consumer.close()

    wrong = secured_kafka.settings(services.kafka, password=wrong_password(secured_kafka))
    consumer = open_consumer(
        wrong, client="confluent", group_id=f"{prefix}-sink", topics=[topic], name="test"
    )
    try:
        # librdkafka would retry the login for ever; the consumer raises instead of waiting.
        with pytest.raises(KafkaException) as refused:
            poll_for(consumer, 60)
        text = str(refused.value)
        assert "Authentication failed" in text and secured_kafka.password not in text
    finally:
        consumer.close()


def test_ingest_streams_and_sink_work_through_the_login(
    secured_kafka: SecuredKafka, isolated_pipeline: Pipeline
) -> None:
    pipeline = isolated_pipeline
    pipeline.env.update(secured_kafka.env())
    pipeline.env["PANTAU__STREAMS__RULES"] = (
        "[{type: threshold, id: water-high, sensor_type: water_level, quantity: waterLevel, "
        "raise_above: 3.0, clear_below: 2.7}]"
    )
    settings = secured_kafka.settings(pipeline.settings.kafka)
    ingest = pipeline.start("ingest-sensors", "ingest", "sensors")
    streams = pipeline.start("streams", "streams")
    pipeline.start("sink", "sink")
    wait_subscribed(pipeline, ingest)
    pipeline.wait_for(
        "the stream worker", lambda: "Worker ready" in pipeline.log_of(streams), timeout=180
    )

    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
    levels = [2.1, 3.4]
    publish(
        pipeline,
        WATER,
        [
            json.dumps(
                {
                    "sensorId": WATER,
                    "dateObserved": (t0 + timedelta(seconds=10 * i)).isoformat(),
                    "seq": i + 1,
                    "waterLevel": level,
                }
            ).encode()
            for i, level in enumerate(levels)
        ],
    )
    pipeline.wait_for(
        "both readings in sensor_readings",
        lambda: (
            pipeline.scalar(
                "SELECT count(*) FROM sensor_readings WHERE sensor_id = %s AND time >= %s",
                WATER,
                t0,
            )
            == 2
        ),
        timeout=120,
    )
    alerts_topic = Topics(settings).alerts

    through_login = pipeline.settings.model_copy(update={"kafka": settings})

    def opened() -> list[Alert]:
        records = read_all(through_login, alerts_topic)
        alerts = [decode_as(r.value, Alert) for r in records]
        return [a for a in alerts if a.alarm_type == "water-high" and a.source_id == WATER]

    pipeline.wait_for("the water-high alarm from faust", lambda: bool(opened()), timeout=120)
    (alarm,) = opened()
    assert (alarm.state, alarm.last_value) == ("OPEN", 3.4)
    pipeline.wait_for(
        "the alarm stored by the sink",
        lambda: (
            pipeline.scalar("SELECT count(*) FROM alerts WHERE alarm_id = %s", alarm.alarm_id) == 1
        ),
        timeout=60,
    )
    assert secured_kafka.password not in pipeline.all_logs()


STAGES = {
    "sink": ("sink",),
    "ingest-sensors": ("ingest", "sensors"),
    "streams": ("streams",),
    "notify": ("notify",),
}


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_each_stage_with_a_wrong_password_exits_saying_so(
    secured_kafka: SecuredKafka, pipeline: Pipeline, stage: str
) -> None:
    result = subprocess.run(
        pipeline.command(*STAGES[stage], "--no-supervise"),
        capture_output=True,
        text=True,
        env={**pipeline.env, **secured_kafka.env(password=wrong_password(secured_kafka))},
        cwd=REPO,
        timeout=180,
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-3000:]
    assert_says_refused_without_secrets(output, secured_kafka)


def test_a_supervised_stage_with_a_wrong_password_reports_why(
    secured_kafka: SecuredKafka, pipeline: Pipeline, tmp_path: Path
) -> None:
    status_dir = tmp_path / "health"
    env = {
        **secured_kafka.env(password=wrong_password(secured_kafka)),
        "PANTAU__RUNTIME__STATUS_DIR": str(status_dir),
        "PANTAU__RUNTIME__RESTART_INITIAL_S": "0.5",
        "PANTAU__RUNTIME__STATUS_INTERVAL_S": "1",
    }
    sink = pipeline.start("sink", "sink", env=env)

    def health() -> str:
        return subprocess.run(
            pipeline.command("health", "sink"),
            capture_output=True,
            text=True,
            env={**pipeline.env, **env},
            cwd=REPO,
            timeout=60,
        ).stdout

    pipeline.wait_for(
        "the supervisor's reason", lambda: "refused the login" in health(), timeout=180
    )
    assert_says_refused_without_secrets(health(), secured_kafka)
    assert sink.poll() is None, "the supervisor itself keeps running and restarting the worker"
    pipeline.stop(sink)
    assert secured_kafka.password not in pipeline.log_of(sink)
    assert wrong_password(secured_kafka) not in pipeline.log_of(sink)
