"""Integration fixtures: the real Kafka broker, PostgreSQL and Mosquitto.

A missing service fails the test run (it is never skipped). Each test gets its own topic
prefix, consumer groups and MQTT topics; the session gets its own migrated database.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord

from pantau import kafka
from pantau.settings import Settings, load_settings
from tests.conftest import REPO, SHARED_DATA

BASE_CONFIG = REPO / "configs" / "pantau.yaml"


def base_environ() -> dict[str, str]:
    """The environment without any PANTAU__ override a developer may have exported."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PANTAU__")}
    env["PANTAU_SHARED_DATA"] = str(SHARED_DATA)
    return env


@pytest.fixture(scope="session")
def base_settings() -> Settings:
    return load_settings(BASE_CONFIG, base_environ())


@pytest.fixture(scope="session")
def services(base_settings: Settings) -> Settings:
    problems = []
    try:
        kafka.wait_until_ready(base_settings.kafka, timeout_s=30)
    except kafka.KafkaUnavailable as exc:
        problems.append(str(exc))
    pg = base_settings.postgres
    try:
        psycopg.connect(**pg.connect_kwargs("owner")).close()  # type: ignore[arg-type]
    except psycopg.OperationalError as exc:
        problems.append(f"PostgreSQL at {pg.host}:{pg.port}: {str(exc).strip()}")
    mqtt = base_settings.mqtt
    try:
        socket.create_connection((mqtt.host, mqtt.port), timeout=5).close()
    except OSError as exc:
        problems.append(f"Mosquitto at {mqtt.host}:{mqtt.port}: {exc}")
    if problems:
        pytest.fail(
            "integration tests need the real services; start them with `pantau services up`:\n  "
            + "\n  ".join(problems),
            pytrace=False,
        )
    return base_settings


@contextmanager
def fresh_database(services: Settings, prefix: str) -> Iterator[str]:
    """A database of its own, made by the real `pantau migrate` (migrations, registries,
    access rules, partitions); dropped afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    owner = services.postgres.connect_kwargs("owner")
    with psycopg.connect(**owner, autocommit=True) as conn:  # type: ignore[arg-type]
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        run_pantau(name, "migrate", timeout=120)
        yield name
    finally:
        drop_database(services, name)


def drop_database(services: Settings, name: str, *, wait_s: float = 30.0) -> None:
    """Drop a test database once the sessions of other roles have gone.

    The owner is not a superuser, so `WITH (FORCE)` may end only its own sessions. A
    process of another role (the sink, an analyst's connection) that has just been stopped
    still has a backend for a moment after its client closed; dropping then would fail.
    """
    owner = services.postgres.connect_kwargs("owner")
    with psycopg.connect(**owner, autocommit=True) as conn:  # type: ignore[arg-type]
        deadline = time.monotonic() + wait_s
        while True:
            # A backend still logging in has no user yet: it counts as another role's.
            others = conn.execute(
                "SELECT usename, application_name FROM pg_stat_activity"
                " WHERE datname = %s AND usename IS DISTINCT FROM current_user",
                (name,),
            ).fetchall()
            if not others:
                try:
                    conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                    return
                except psycopg.errors.InsufficientPrivilege as exc:
                    # Another role's session came between the look and the drop.
                    others = [("another role", str(exc))]
            if time.monotonic() > deadline:
                pytest.fail(f"database {name} still has sessions of other roles: {others}")
            time.sleep(0.2)


@contextmanager
def seeded_database(
    services: Settings, prefix: str, *, days: int, sensors: int, cameras: int
) -> Iterator[str]:
    """A fresh database with `pantau db seed` history (and, on plain PostgreSQL, its rollups)."""
    with fresh_database(services, prefix) as name:
        out = run_pantau(
            name, "db", "seed", "--days", str(days), "--sensors", str(sensors),
            "--cameras", str(cameras), timeout=300,
        )  # fmt: skip
        assert "sensor_readings" in out
        yield name


def run_pantau(dbname: str, *args: str, timeout: float) -> str:
    """`pantau ARGS` on the given database; its output, or the failure with its stderr."""
    result = subprocess.run(
        [sys.executable, "-m", "pantau.cli", "--config", str(BASE_CONFIG), *args],
        capture_output=True,
        text=True,
        env={**base_environ(), "PANTAU__POSTGRES__DBNAME": dbname},
        cwd=REPO,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture(scope="session")
def database(services: Settings) -> Iterator[str]:
    """A fresh, migrated database for this test session."""
    with fresh_database(services, "pantau_test") as name:
        yield name


@dataclass
class Pipeline:
    """One test's isolated slice of the real services, and `pantau` processes run in it."""

    settings: Settings
    env: dict[str, str]
    tag: str
    logs: Path
    processes: list[tuple[str, subprocess.Popen[bytes], Path]] = field(default_factory=list)

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "pantau.cli", "--config", str(BASE_CONFIG), *args]

    def run(self, *args: str, timeout: float = 180, env: dict[str, str] | None = None) -> str:
        result = subprocess.run(
            self.command(*args),
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**self.env, **(env or {})},
            cwd=REPO,
        )
        if result.returncode != 0:
            raise AssertionError(
                f"pantau {' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
            )
        return result.stdout + result.stderr

    def start(
        self, name: str, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        log = self.logs / f"{name}-{len(self.processes)}.log"
        process = subprocess.Popen(
            self.command(*args),
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            env={**self.env, **(env or {})},
            cwd=REPO,
        )
        self.processes.append((name, process, log))
        return process

    def log_of(self, process: subprocess.Popen[bytes]) -> str:
        for _name, p, log in self.processes:
            if p is process:
                return log.read_text(errors="replace")
        raise KeyError("not started by this pipeline")

    def stop(self, process: subprocess.Popen[bytes], timeout: float = 60) -> int:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            return process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            return process.wait()

    def stop_all(self) -> None:
        for _name, process, _log in reversed(self.processes):
            self.stop(process, timeout=30)

    def all_logs(self) -> str:
        return "\n".join(
            f"----- {name} ({log.name}) -----\n{log.read_text(errors='replace')[-4000:]}"
            for name, _p, log in self.processes
        )

    def db(self) -> psycopg.Connection[Any]:
        kwargs = self.settings.postgres.connect_kwargs("owner")
        return psycopg.connect(**kwargs, autocommit=True)  # type: ignore[arg-type]

    def scalar(self, query: str, *params: object) -> Any:
        with self.db() as conn:
            row = conn.execute(query, params).fetchone()  # type: ignore[arg-type]
        return None if row is None else row[0]

    def wait_for(
        self, what: str, check: Callable[[], bool], timeout: float = 90, every: float = 0.5
    ) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return
            for name, process, _log in self.processes:
                code = process.poll()
                if code not in (None, 0):
                    raise AssertionError(
                        f"{name} died (exit {code}) while waiting for {what}:\n" + self.all_logs()
                    )
            time.sleep(every)
        raise AssertionError(
            f"timed out after {timeout:.0f} s waiting for {what}\n" + self.all_logs()
        )

    def read_topic(self, topic: str, timeout: float = 10) -> list[ConsumerRecord]:
        """Every record currently in `topic`, read without a consumer group."""
        return read_all(self.settings, topic, timeout)


def read_all(settings: Settings, topic: str, timeout: float = 10) -> list[ConsumerRecord]:
    consumer = KafkaConsumer(
        bootstrap_servers=settings.kafka.bootstrap_servers,
        enable_auto_commit=False,
        max_partition_fetch_bytes=2_000_000,
        **kafka.security_options(settings.kafka, "kafka-python"),
    )
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in partitions]
        if not tps:
            return []
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        records: list[ConsumerRecord] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(consumer.position(tp) < ends[tp] for tp in tps):
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(batch)
        return records
    finally:
        consumer.close()


@pytest.fixture
def pipeline(services: Settings, database: str, tmp_path: Path) -> Iterator[Pipeline]:
    tag = f"t{uuid.uuid4().hex[:8]}"
    overrides = {
        "PANTAU__KAFKA__TOPIC_PREFIX": f"{tag}.",
        "PANTAU__POSTGRES__DBNAME": database,
        "PANTAU__DETECT__GROUP_ID": f"{tag}-detect",
        "PANTAU__SINK__GROUP_ID": f"{tag}-sink",
        "PANTAU__STREAMS__APP_ID": f"{tag}-streams",
        "PANTAU__STREAMS__DATA_DIR": str(tmp_path / "streams"),
        "PANTAU__NOTIFY__GROUP_ID": f"{tag}-notify",
        "PANTAU__MQTT__TOPIC_PREFIX": f"{tag}/sensors",
        "PANTAU__MQTT__CLIENT_ID": f"{tag}-ingest-sensors",
        "PANTAU__DETECT__SNAPSHOT_DIR": str(tmp_path / "snapshots"),
        "PANTAU__INGEST__HEARTBEAT_INTERVAL_S": "1",
        # One sink process unless a test asks for more: crash tests count what one stored.
        "PANTAU__SINK__WORKERS": "1",
    }
    env = {**base_environ(), **overrides}
    settings = load_settings(BASE_CONFIG, env)
    logs = tmp_path / "logs"
    logs.mkdir()
    line = Pipeline(settings=settings, env=env, tag=tag, logs=logs)
    try:
        yield line
    finally:
        line.stop_all()
        # The data topics ({tag}.) and faust's own ({tag}-streams-...).
        drop_topics(settings, tag)


@pytest.fixture
def isolated_pipeline(pipeline: Pipeline, services: Settings) -> Iterator[Pipeline]:
    """`pipeline` with a database of its own, for tests whose rows (dumping events, alarms,
    a whole pipeline's output) would surprise the tests that count rows in the shared one."""
    with fresh_database(services, "pantau_own") as name:
        pipeline.env["PANTAU__POSTGRES__DBNAME"] = name
        pipeline.settings = load_settings(BASE_CONFIG, pipeline.env)
        try:
            yield pipeline
        finally:
            # Before the database goes: its processes hold connections to it.
            pipeline.stop_all()


def gateway_login(settings: Settings, sensor_id: str | None = None) -> tuple[str, str]:
    """(user, password) of a gateway whose secret the settings hold (the development
    gateway), and that may send for `sensor_id` when one is named."""
    for gateway in settings.gateways:
        if gateway.secret is None or gateway.revoked:
            continue
        if sensor_id is None or sensor_id in gateway.sensors:
            return gateway.id, gateway.secret.get_secret_value()
    raise AssertionError(
        "no gateway with its secret in the environment: `pantau services up` makes the "
        "development secrets file (.pantau/secrets.env)"
    )


def drop_topics(settings: Settings, prefix: str) -> None:
    """Delete a test's topics, so the broker does not carry thousands of dead partitions."""
    kafka.delete_topics(settings.kafka, prefix, anywhere=True)


# The console's running site (a module-scoped fixture); imported last, as it builds on the
# fixtures and helpers above.
from tests.integration.console_site import site  # noqa: E402, F401
