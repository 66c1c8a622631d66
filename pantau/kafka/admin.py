"""Administration: topics created as the topic specs say, retained record counts, a
group's committed positions and lag, topics deleted by prefix (tests, benchmarks)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.errors import KafkaError, TopicAlreadyExistsError

from pantau.kafka.clients import _explained, security_options
from pantau.settings import KafkaSettings
from pantau.topics import TopicSpec

log = logging.getLogger(__name__)


def admin(settings: KafkaSettings) -> KafkaAdminClient:
    config: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap_servers,
        "client_id": f"{settings.client_id}-admin",
        "request_timeout_ms": 15_000,
        **security_options(settings, "kafka-python"),
    }
    return _explained(settings, KafkaAdminClient, config)


def ensure_topics(settings: KafkaSettings, specs: Iterable[TopicSpec]) -> list[str]:
    """Create the topics that do not exist yet; returns the names created."""
    wanted = {spec.name: spec for spec in specs}
    client = admin(settings)
    try:
        existing = set(client.list_topics())
        missing = [spec for name, spec in wanted.items() if name not in existing]
        if not missing:
            return []
        request = {
            spec.name: {
                "num_partitions": spec.partitions,
                "replication_factor": settings.replication_factor,
                "configs": dict(spec.config),
            }
            for spec in missing
        }
        result = client.create_topics(request, raise_errors=False)
        created = []
        for topic in result.get("topics", []):
            code = topic.get("error_code", 0)
            if code == 0:
                created.append(topic["name"])
            elif code != TopicAlreadyExistsError.errno:
                raise KafkaError(
                    f"creating topic {topic['name']!r} failed: error {code} "
                    f"{topic.get('error_message') or ''}".strip()
                )
        if created:
            client.wait_for_topics(created, timeout_ms=20_000)
            log.info("created topics: %s", ", ".join(sorted(created)))
        return created
    finally:
        client.close()


def message_counts(settings: KafkaSettings, topics: Iterable[str]) -> dict[str, int]:
    """Records currently retained per topic (end minus beginning offsets); 0 if absent."""
    client = _offsets_reader(settings)
    try:
        counts: dict[str, int] = {}
        for topic in topics:
            partitions = client.partitions_for_topic(topic) or set()
            tps = [TopicPartition(topic, p) for p in partitions]
            if not tps:
                counts[topic] = 0
                continue
            ends = client.end_offsets(tps)
            begins = client.beginning_offsets(tps)
            counts[topic] = sum(ends[tp] - begins[tp] for tp in tps)
        return counts
    finally:
        client.close()


def _offsets_reader(settings: KafkaSettings) -> KafkaConsumer:
    """A group-less consumer used only to read partition offsets."""
    config: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap_servers,
        "client_id": f"{settings.client_id}-stats",
        "enable_auto_commit": False,
        **security_options(settings, "kafka-python"),
    }
    client: KafkaConsumer = _explained(settings, KafkaConsumer, config)
    return client


def group_lag(settings: KafkaSettings, group_id: str, topics: Iterable[str]) -> int:
    """Records in `topics` not yet committed by `group_id`."""
    return sum(end - done for done, end in group_positions(settings, group_id, topics).values())


def group_positions(
    settings: KafkaSettings, group_id: str, topics: Iterable[str]
) -> dict[tuple[str, int], tuple[int, int]]:
    """Per (topic, partition): where `group_id` has committed to (or the log start), and the end."""
    client = _offsets_reader(settings)
    admin_client = admin(settings)
    try:
        committed = committed_offsets(admin_client, group_id)
        positions: dict[tuple[str, int], tuple[int, int]] = {}
        for topic in topics:
            partitions = client.partitions_for_topic(topic) or set()
            tps = [TopicPartition(topic, p) for p in partitions]
            if not tps:
                continue
            ends = client.end_offsets(tps)
            begins = client.beginning_offsets(tps)
            for tp in tps:
                meta = committed.get(tp)
                done = meta.offset if meta is not None and meta.offset >= 0 else begins[tp]
                positions[(tp.topic, tp.partition)] = (min(done, ends[tp]), ends[tp])
        return positions
    finally:
        admin_client.close()
        client.close()


# How long a group's offsets may be unreadable because the broker has no coordinator yet.
_COORDINATOR_WAIT_S = 30.0


def committed_offsets(admin_client: KafkaAdminClient, group_id: str) -> dict[Any, Any]:
    """The group's committed offsets. A fresh broker answers "coordinator not available"
    until it has created its offsets topic on the first group request: retried for a while."""
    deadline = time.monotonic() + _COORDINATOR_WAIT_S
    while True:
        try:
            offsets: dict[Any, Any] = admin_client.list_group_offsets(group_id).get(group_id, {})
            return offsets
        except KafkaError as exc:
            if not exc.retriable or time.monotonic() >= deadline:
                raise
            log.debug("offsets of group %s not readable yet: %s", group_id, exc)
            time.sleep(0.5)


def delete_topics(settings: KafkaSettings, prefix: str) -> list[str]:
    """Delete every topic whose name starts with `prefix` (test runs, benchmarks)."""
    client = admin(settings)
    try:
        names = [t for t in client.list_topics() if t.startswith(prefix)]
        if names:
            client.delete_topics(names, timeout_ms=30_000)
        return names
    finally:
        client.close()
