"""Kafka producer, consumer and admin helpers (kafka-python), shared by every stage.

Constructors here only build clients from settings; what to consume and when to commit is
the stage's business. Consumers never auto-commit: a stage commits offsets only after what it
produced from them is safely stored.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from kafka import (
    ConsumerRebalanceListener,
    KafkaAdminClient,
    KafkaConsumer,
    KafkaProducer,
    TopicPartition,
)
from kafka.errors import KafkaError, TopicAlreadyExistsError
from kafka.future import Future

from pantau.codec import encode
from pantau.ids import SeqCounter
from pantau.messages import Message
from pantau.poison import SourceKind, dead_letter
from pantau.settings import KafkaSettings
from pantau.topics import TopicSpec, dead_letter_name

if TYPE_CHECKING:
    from pantau.consumers import Record

log = logging.getLogger(__name__)


class KafkaUnavailable(RuntimeError):
    """The broker did not answer a metadata request in time."""


def producer(settings: KafkaSettings, name: str, **overrides: Any) -> KafkaProducer:
    config: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap_servers,
        "client_id": f"{settings.client_id}-{name}",
        # Idempotence: broker-side dedup of producer retries, so a retry never doubles a record.
        "enable_idempotence": True,
        "acks": "all",
        "linger_ms": 5,
        "max_request_size": settings.max_message_bytes + 64 * 1024,
        "request_timeout_ms": 30_000,
    }
    config.update(overrides)
    return KafkaProducer(**config)


def consumer(
    settings: KafkaSettings,
    group_id: str,
    topics: Sequence[str],
    name: str,
    *,
    listener: ConsumerRebalanceListener | None = None,
    **overrides: Any,
) -> KafkaConsumer:
    config: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap_servers,
        "client_id": f"{settings.client_id}-{name}",
        "group_id": group_id,
        "enable_auto_commit": False,
        # A new group starts from the oldest retained record: nothing produced before the first
        # start of a consumer is skipped.
        "auto_offset_reset": "earliest",
        "max_partition_fetch_bytes": settings.max_message_bytes + 128 * 1024,
        # A crashed member's partitions move to the others after this long (default 45 s);
        # a clean shutdown leaves the group at once.
        "session_timeout_ms": 10_000,
        "heartbeat_interval_ms": 2_000,
    }
    config.update(overrides)
    client = KafkaConsumer(**config)
    if topics:
        if listener is None:
            client.subscribe(list(topics))
        else:
            client.subscribe(list(topics), listener=listener)
    return client


def admin(settings: KafkaSettings) -> KafkaAdminClient:
    return KafkaAdminClient(
        bootstrap_servers=settings.bootstrap_servers,
        client_id=f"{settings.client_id}-admin",
        request_timeout_ms=15_000,
    )


def wait_until_ready(settings: KafkaSettings, timeout_s: float = 60.0) -> None:
    """Block until the broker answers a metadata request, or raise KafkaUnavailable."""
    deadline = time.monotonic() + timeout_s
    last_error = "no answer"
    while time.monotonic() < deadline:
        try:
            client = admin(settings)
        except (KafkaError, OSError) as exc:
            last_error = f"{type(exc).__name__}: {exc}"
            time.sleep(0.5)
            continue
        try:
            client.list_topics()
            return
        except (KafkaError, OSError) as exc:
            last_error = f"{type(exc).__name__}: {exc}"
        finally:
            client.close()
        time.sleep(0.5)
    raise KafkaUnavailable(
        f"Kafka at {settings.bootstrap_servers} did not answer within {timeout_s:.0f} s "
        f"({last_error}); start it with `pantau services up`"
    )


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
    return KafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers,
        client_id=f"{settings.client_id}-stats",
        enable_auto_commit=False,
    )


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


class DeadLetters:
    """Publishes rejected input, whole (up to `MAX_ORIGINAL_BYTES`) and with the reason, to a
    dead-letter topic."""

    def __init__(self, client: KafkaProducer, stage: str) -> None:
        self._producer = client
        self._stage = stage
        self._seq = SeqCounter()

    def send(
        self,
        topic: str,
        *,
        original: bytes,
        error: str,
        source_kind: SourceKind,
        source_topic: str,
        partition: int | None = None,
        offset: int | None = None,
        source_key: str | None = None,
    ) -> Future:
        letter = dead_letter(
            stage=self._stage,
            seq=next(self._seq),
            source_kind=source_kind,
            source_topic=source_topic,
            original=original,
            error=error,
            partition=partition,
            offset=offset,
            source_key=source_key,
        )
        log.warning(
            "dead letter from %s %s (partition %s, offset %s) to %s: %s",
            source_kind,
            letter.source_topic,
            partition,
            offset,
            topic,
            letter.error,
        )
        return publish(self._producer, topic, letter)

    def reject(self, record: Record, error: str) -> Future:
        """Dead-letter a consumed record to its topic's dead-letter twin."""
        return self.send(
            dead_letter_name(record.topic),
            original=record.value or b"",
            error=error,
            source_kind="kafka",
            source_topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            source_key=record.key.decode(errors="replace") if record.key else None,
        )


def publish(client: KafkaProducer, topic: str, message: Message) -> Future:
    """Send one message, keyed by its source id."""
    return client.send(topic, key=message.key, value=encode(message))
