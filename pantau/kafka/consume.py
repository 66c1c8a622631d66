"""Consuming, never auto-committing: a stage commits offsets only after what it produced
from them is safely stored.

Batch consumers have one interface over two clients. kafka-python is pure Python and serves
the low-volume stages. librdkafka (confluent-kafka) fetches and parses records in C, about eight
times faster on this hardware, which is what a sink writing 100,000 rows a second needs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal

from kafka import ConsumerRebalanceListener, KafkaConsumer

from pantau.kafka.clients import _explained, security_options
from pantau.kafka.records import BatchConsumer, Record, describe_partitions, next_offsets
from pantau.settings import KafkaSettings

log = logging.getLogger(__name__)


def consumer(
    settings: KafkaSettings,
    group_id: str | None,
    topics: Sequence[str],
    name: str,
    *,
    listener: ConsumerRebalanceListener | None = None,
    **overrides: Any,
) -> KafkaConsumer:
    config: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap_servers,
        "client_id": f"{settings.client_id}-{name}",
        **security_options(settings, "kafka-python"),
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
    client: KafkaConsumer = _explained(settings, KafkaConsumer, config)
    if topics:
        if listener is None:
            client.subscribe(list(topics))
        else:
            client.subscribe(list(topics), listener=listener)
    return client


Client = Literal["confluent", "kafka-python"]


def open_consumer(
    settings: KafkaSettings,
    *,
    client: Client,
    group_id: str,
    topics: Sequence[str],
    name: str,
    on_revoke: Callable[[], None] | None = None,
) -> BatchConsumer:
    if client == "confluent":
        return ConfluentBatchConsumer(settings, group_id, topics, name, on_revoke)
    return KafkaPythonBatchConsumer(settings, group_id, topics, name, on_revoke)


class ConfluentBatchConsumer:
    def __init__(
        self,
        settings: KafkaSettings,
        group_id: str,
        topics: Sequence[str],
        name: str,
        on_revoke: Callable[[], None] | None,
    ) -> None:
        from confluent_kafka import Consumer, KafkaError

        # Errors that waiting does not mend: the login or the TLS handshake was refused, or the
        # user may not read a topic or join the group. librdkafka retries them forever, as if
        # the broker were down (and tells only error_cb), so the stage would wait without end.
        refusals = frozenset(
            {
                KafkaError._AUTHENTICATION,
                KafkaError._SSL,
                KafkaError.TOPIC_AUTHORIZATION_FAILED,
                KafkaError.GROUP_AUTHORIZATION_FAILED,
                KafkaError.CLUSTER_AUTHORIZATION_FAILED,
            }
        )
        self._refused: list[Any] = []

        def on_error(error: Any) -> None:
            if error.fatal() or error.code() in refusals:
                self._refused.append(error)
            else:
                log.warning("consumer: %s", error)

        self._consumer = Consumer(
            {
                "bootstrap.servers": settings.bootstrap_servers,
                "client.id": f"{settings.client_id}-{name}",
                **security_options(settings, "confluent"),
                "error_cb": on_error,
                "group.id": group_id,
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "session.timeout.ms": 10_000,
                "heartbeat.interval.ms": 2_000,
                "max.poll.interval.ms": 300_000,
                "fetch.max.bytes": 64 * 1024 * 1024,
                "max.partition.fetch.bytes": max(1024 * 1024, settings.max_message_bytes + 131072),
                # Keeps each partition's high watermark up to date from fetch responses, so
                # lag() reads it locally instead of asking the broker per partition.
                "statistics.interval.ms": 5_000,
            }
        )
        self._on_revoke = on_revoke

        def revoked(_consumer: Any, partitions: Any) -> None:
            log.info("consumer: %s", describe_partitions("revoked", partitions))
            if self._on_revoke is not None:
                self._on_revoke()

        def assigned(_consumer: Any, partitions: Any) -> None:
            log.info("consumer: %s", describe_partitions("assigned", partitions))

        self._consumer.subscribe(list(topics), on_assign=assigned, on_revoke=revoked)

    def poll(self, max_records: int, timeout_s: float) -> list[Record]:
        from confluent_kafka import KafkaError, KafkaException

        records: list[Record] = []
        # Any: a message without an error always has its topic, partition and offset.
        messages: list[Any] = self._consumer.consume(num_messages=max_records, timeout=timeout_s)
        if self._refused:
            raise KafkaException(self._refused[0])
        for message in messages:
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    continue
                if error.fatal():
                    raise KafkaException(error)
                log.warning("consumer: %s", error)
                continue
            records.append(
                Record(
                    message.topic(),
                    message.partition(),
                    message.offset(),
                    message.key(),
                    message.value(),
                )
            )
        return records

    def commit(self, records: Iterable[Record]) -> bool:
        from confluent_kafka import KafkaException, TopicPartition

        offsets = [TopicPartition(t, p, o) for (t, p), o in next_offsets(records).items()]
        if not offsets:
            return True
        try:
            self._consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            log.warning("offset commit refused (%s); records will be redelivered", exc)
            return False
        return True

    def pause_all(self) -> None:
        self._consumer.pause(self._consumer.assignment())

    def resume_all(self) -> None:
        self._consumer.resume(self._consumer.assignment())

    def has_assignment(self) -> bool:
        return bool(self._consumer.assignment())

    def lag(self) -> int:
        total = 0
        for tp in self._consumer.position(self._consumer.assignment()):
            low, high = self._consumer.get_watermark_offsets(tp, cached=True)
            position = tp.offset if tp.offset >= 0 else low
            if high >= 0 and position >= 0:
                total += max(0, high - position)
        return total

    def close(self) -> None:
        self._on_revoke = None
        self._consumer.close()


class KafkaPythonBatchConsumer:
    def __init__(
        self,
        settings: KafkaSettings,
        group_id: str,
        topics: Sequence[str],
        name: str,
        on_revoke: Callable[[], None] | None,
    ) -> None:
        from kafka import ConsumerRebalanceListener

        outer = self

        class Listener(ConsumerRebalanceListener):  # type: ignore[misc]
            def on_partitions_revoked(self, revoked: Any) -> None:
                log.info("consumer: %s", describe_partitions("revoked", revoked))
                if outer._on_revoke is not None:
                    outer._on_revoke()

            def on_partitions_assigned(self, assigned: Any) -> None:
                log.info("consumer: %s", describe_partitions("assigned", assigned))

        self._on_revoke = on_revoke
        self._consumer = consumer(settings, group_id, topics, name, listener=Listener())

    def poll(self, max_records: int, timeout_s: float) -> list[Record]:
        polled = self._consumer.poll(timeout_ms=int(timeout_s * 1000), max_records=max_records)
        return [
            Record(r.topic, r.partition, r.offset, r.key, r.value)
            for batch in polled.values()
            for r in batch
        ]

    def commit(self, records: Iterable[Record]) -> bool:
        from kafka import OffsetAndMetadata, TopicPartition
        from kafka.errors import CommitFailedError

        offsets = {
            TopicPartition(t, p): OffsetAndMetadata(o, "", -1)
            for (t, p), o in next_offsets(records).items()
        }
        if not offsets:
            return True
        try:
            self._consumer.commit(offsets)
        except CommitFailedError as exc:
            log.warning("offset commit refused (%s); records will be redelivered", exc)
            return False
        return True

    def pause_all(self) -> None:
        self._consumer.pause(*self._consumer.assignment())

    def resume_all(self) -> None:
        self._consumer.resume(*self._consumer.paused())

    def has_assignment(self) -> bool:
        return bool(self._consumer.assignment())

    def lag(self) -> int:
        assignment = list(self._consumer.assignment())
        if not assignment:
            return 0
        ends = self._consumer.end_offsets(assignment)
        return sum(max(0, ends[tp] - self._consumer.position(tp)) for tp in assignment)

    def close(self) -> None:
        self._on_revoke = None
        self._consumer.close(autocommit=False)
