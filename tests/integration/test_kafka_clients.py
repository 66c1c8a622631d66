"""The pinned broker (Kafka 4.4.0, scripts/kafka/pom.xml) works with the three Python clients
the project uses: kafka-python (ingest, detector, sink), aiokafka and faust-streaming (streams)."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from kafka import KafkaConsumer, KafkaProducer

from pantau import kafka
from pantau.settings import Settings
from pantau.topics import TopicSpec
from tests.integration.conftest import drop_topics, read_all


@pytest.fixture
def prefix(services: Settings) -> Iterator[str]:
    """A fresh topic prefix; the test's topics are deleted afterwards."""
    name = f"compat-{uuid.uuid4().hex[:8]}"
    yield name
    drop_topics(services, name)


def topic_names(prefix: str, *names: str) -> list[str]:
    return [f"{prefix}-{name}" for name in names]


def test_kafka_python_produces_consumes_and_commits(services: Settings, prefix: str) -> None:
    (topic,) = topic_names(prefix, "kp")
    kafka.ensure_topics(services.kafka, [TopicSpec(topic, 3)])
    producer = KafkaProducer(bootstrap_servers=services.kafka.bootstrap_servers, acks="all")
    for i in range(30):
        producer.send(topic, key=b"k%d" % (i % 5), value=b"v%d" % i)
    producer.flush()
    producer.close()
    group = f"g-{topic}"
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=services.kafka.bootstrap_servers,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=10_000,
    )
    values = set()
    for record in consumer:
        values.add(record.value)
        if len(values) == 30:
            break
    consumer.commit()
    consumer.close()
    assert values == {b"v%d" % i for i in range(30)}
    assert kafka.group_lag(services.kafka, group, [topic]) == 0


def test_aiokafka_produces_consumes_and_commits(services: Settings, prefix: str) -> None:
    (topic,) = topic_names(prefix, "aio")
    kafka.ensure_topics(services.kafka, [TopicSpec(topic, 3)])
    group = f"g-{topic}"

    async def roundtrip() -> set[bytes]:
        producer = AIOKafkaProducer(bootstrap_servers=services.kafka.bootstrap_servers, acks="all")
        await producer.start()
        try:
            for i in range(30):
                await producer.send_and_wait(topic, b"a%d" % i, key=b"k%d" % (i % 5))
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=services.kafka.bootstrap_servers,
            group_id=group,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        await consumer.start()
        got: set[bytes] = set()
        try:
            for _ in range(30):
                batches = await consumer.getmany(timeout_ms=1000)
                got.update(m.value for ms in batches.values() for m in ms)
                if len(got) == 30:
                    break
            await consumer.commit()
        finally:
            await consumer.stop()
        return got

    assert asyncio.run(roundtrip()) == {b"a%d" % i for i in range(30)}
    assert kafka.group_lag(services.kafka, group, [topic]) == 0


FAUST_APP = """
    import os
    import faust

    BROKER = os.environ["BROKER"]
    PREFIX = os.environ["PREFIX"]
    app = faust.App(
        PREFIX, broker="kafka://" + BROKER, store="memory://", web_enabled=False,
        topic_partitions=3, topic_replication_factor=1,
    )
    source = app.topic(PREFIX + "-in", value_serializer="raw")
    sink = app.topic(PREFIX + "-out", value_serializer="raw")
    counts = app.Table("counts", default=int)

    @app.agent(source)
    async def count(stream):
        # group_by repartitions through an internal topic; the table has a changelog topic.
        async for value in stream.group_by(lambda v: v[:1], name="by-first"):
            counts[value[:1].decode()] += 1
            await sink.send(value=value)

    if __name__ == "__main__":
        app.main()
"""


def test_faust_streaming_agent_with_repartition_and_table(
    services: Settings, tmp_path: Path, prefix: str
) -> None:
    topic_in, topic_out = topic_names(prefix, "in", "out")
    kafka.ensure_topics(services.kafka, [TopicSpec(topic_in, 3), TopicSpec(topic_out, 3)])
    producer = KafkaProducer(bootstrap_servers=services.kafka.bootstrap_servers)
    for i in range(40):
        producer.send(topic_in, value=b"%s%d" % (b"ab"[i % 2 : i % 2 + 1], i))
    producer.flush()
    producer.close()

    app = tmp_path / "compat_app.py"
    app.write_text(textwrap.dedent(FAUST_APP))
    log = tmp_path / "faust.log"
    worker = subprocess.Popen(
        [sys.executable, str(app), "worker", "--loglevel", "warn"],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        env={"BROKER": services.kafka.bootstrap_servers, "PREFIX": prefix, "PATH": "/usr/bin:/bin"},
        cwd=tmp_path,
    )
    try:
        deadline = time.monotonic() + 90
        out: list[object] = []
        while time.monotonic() < deadline and len(out) < 40 and worker.poll() is None:
            time.sleep(1)
            out = list(read_all(services, topic_out, timeout=2))
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=60)
    assert len(out) == 40, log.read_text()[-4000:]
    changelog = read_all(services, f"{prefix}-counts-changelog")
    assert changelog, "faust wrote no table changelog"
