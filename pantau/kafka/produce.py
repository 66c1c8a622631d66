"""Producing: the kafka-python producer every stage uses (idempotent, acks from all
replicas), one message sent keyed by its source, and dead letters (the one place they are
published; `pantau.poison.dead_letter` builds them)."""

from __future__ import annotations

import logging
from typing import Any

from kafka import KafkaProducer
from kafka.future import Future

from pantau.codec import encode
from pantau.ids import SeqCounter
from pantau.kafka.clients import _explained, security_options
from pantau.kafka.records import Record
from pantau.messages import Message
from pantau.poison import SourceKind, dead_letter
from pantau.settings import KafkaSettings
from pantau.topics import dead_letter_name

log = logging.getLogger(__name__)


def producer(settings: KafkaSettings, name: str, **overrides: Any) -> KafkaProducer:
    config: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap_servers,
        "client_id": f"{settings.client_id}-{name}",
        **security_options(settings, "kafka-python"),
        # Idempotence: broker-side dedup of producer retries, so a retry never doubles a record.
        "enable_idempotence": True,
        "acks": "all",
        "linger_ms": 5,
        "max_request_size": settings.max_message_bytes + 64 * 1024,
        "request_timeout_ms": 30_000,
    }
    config.update(overrides)
    return _explained(settings, KafkaProducer, config)


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
