"""Topics follow the settings: created with the copies and configs of their class, and an
existing topic that differs is brought in line where that is safe and named where it is not."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator

import pytest
from kafka.admin import ConfigResource, ConfigResourceType
from kafka.errors import KafkaError

from pantau import kafka
from pantau.settings import KafkaSettings, Settings
from pantau.topics import Topics, TopicSpec
from tests.integration.conftest import drop_topics


@pytest.fixture
def prefix(services: Settings) -> Iterator[str]:
    name = f"topics-{uuid.uuid4().hex[:8]}."
    yield name
    drop_topics(services, name)


def _settings(services: Settings, prefix: str, **changes: object) -> KafkaSettings:
    data = services.kafka.model_dump()
    data.update(topic_prefix=prefix, **changes)
    return KafkaSettings.model_validate(data)


def _config(settings: KafkaSettings, topic: str, key: str) -> str:
    client = kafka.admin(settings)
    try:
        described = client.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic, configs={key: None})],
            config_filter="all",
        )
    finally:
        client.close()
    value: str = described["topic"][topic][key]["value"]
    return value


def test_topics_differing_from_the_settings_are_set_right_or_named(
    services: Settings, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    before = _settings(services, prefix)
    topics = Topics(before)
    created = kafka.ensure_topics(before, topics.specs())
    assert set(created) == {spec.name for spec in topics.specs()}
    assert _config(before, topics.readings, "min.insync.replicas") == "1"
    assert kafka.topic_differences(before, topics.specs()) == []

    # Larger frames allowed, more reading partitions: the first is a topic config, the second
    # would move sensors between partitions.
    after = _settings(
        services,
        prefix,
        max_message_bytes=2_000_000,
        partitions={**before.partitions.model_dump(), "readings": 8},
    )
    with caplog.at_level(logging.WARNING, logger="pantau.kafka.admin"):
        assert kafka.ensure_topics(after, Topics(after).specs()) == []

    # The controller has it at once; the broker answering may take a moment to hear of it.
    larger = str(2_000_000 + 64 * 1024)
    deadline = time.monotonic() + 15
    while _config(after, topics.frames, "max.message.bytes") != larger:
        assert time.monotonic() < deadline, "the frames' larger limit was never set"
        time.sleep(0.2)
    left = kafka.topic_differences(after, Topics(after).specs())
    assert {(d.topic, d.what, d.have, d.want) for d in left} == {
        (topics.readings, "partitions", "6", "8"),
        (topics.reading_windows, "partitions", "6", "8"),
        (topics.alarm_actions, "partitions", "6", "8"),
        (topics.place_signals, "partitions", "6", "8"),
    }
    warned = "\n".join(r.getMessage() for r in caplog.records)
    assert f"topic {topics.frames}: max.message.bytes is 1065536" in warned
    assert f"topic {topics.readings}: partitions is 6, the settings say 8; left as it is" in warned


def test_more_copies_than_brokers_is_refused_with_the_brokers_reason(
    services: Settings, prefix: str
) -> None:
    settings = _settings(services, prefix, replication={"data": {"replicas": 5, "min_insync": 2}})
    with pytest.raises(KafkaError, match=r"[Rr]eplication factor"):
        kafka.ensure_topics(settings, Topics(settings).specs())


def test_a_config_the_broker_refuses_is_named_and_the_stage_goes_on(
    services: Settings, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    settings = _settings(services, prefix)
    topic = f"{prefix}refused"
    kafka.ensure_topics(settings, [TopicSpec(topic, 1, {"retention.ms": "86400000"})])
    wrong = TopicSpec(topic, 1, {"retention.ms": "a week"})
    with caplog.at_level(logging.WARNING, logger="pantau.kafka.admin"):
        assert kafka.ensure_topics(settings, [wrong]) == []
    assert f"topic {topic}: its configs were left as they are" in caplog.text
    assert _config(settings, topic, "retention.ms") == "86400000"
