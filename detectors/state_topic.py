"""The compacted Kafka topic of the cameras' detector states (see `detectors.state`).

The reader follows every partition of the topic without a consumer group: before a camera's
pipeline is made in this process (its first frame here, after a start or a rebalance), it
catches up to the end of the topic, so it holds the latest snapshot whichever process wrote
it. Snapshots are written through the service's producer, with the frame batch they cover,
and checked with it before the batch's offsets are committed.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError
from kafka.future import Future as KafkaFuture

from pantau import kafka
from pantau.settings import KafkaSettings

log = logging.getLogger(__name__)


class StateTopicError(RuntimeError):
    """The state topic could not be read to its end in time."""


class StateTopic:
    def __init__(self, settings: KafkaSettings, topic: str, *, catch_up_s: float = 30.0) -> None:
        self._settings = settings
        self.topic = topic
        self._catch_up_s = catch_up_s
        self._consumer: KafkaConsumer | None = None
        self._partitions: list[TopicPartition] = []
        self._latest: dict[str, bytes] = {}

    def open(self) -> None:
        consumer = kafka.consumer(self._settings, None, [], "detect-state")
        ids = consumer.partitions_for_topic(self.topic) or set()
        self._partitions = [TopicPartition(self.topic, p) for p in sorted(ids)]
        if not self._partitions:
            consumer.close()
            raise StateTopicError(f"topic {self.topic} has no partitions (not created?)")
        consumer.assign(self._partitions)
        consumer.seek_to_beginning(*self._partitions)
        self._consumer = consumer

    def latest(self, camera_id: str) -> bytes | None:
        """The newest snapshot of the camera, after reading the topic to its end."""
        self.catch_up()
        return self._latest.get(camera_id)

    def catch_up(self) -> None:
        consumer = self._consumer
        if consumer is None:
            self.open()
            consumer = self._consumer
            assert consumer is not None
        ends: dict[TopicPartition, int] = consumer.end_offsets(self._partitions)
        deadline = time.monotonic() + self._catch_up_s
        while any(consumer.position(tp) < end for tp, end in ends.items()):
            if time.monotonic() > deadline:
                behind = {
                    f"{tp.partition}": end - consumer.position(tp) for tp, end in ends.items()
                }
                raise StateTopicError(
                    f"topic {self.topic}: not read to its end within {self._catch_up_s:.0f} s "
                    f"(records behind per partition: {behind})"
                )
            polled: dict[Any, Any] = consumer.poll(timeout_ms=500, max_records=500)
            for records in polled.values():
                for record in records:
                    if record.key is None:
                        continue
                    camera_id = record.key.decode(errors="replace")
                    if record.value is None:
                        self._latest.pop(camera_id, None)
                    else:
                        self._latest[camera_id] = record.value

    def save(self, producer: KafkaProducer, camera_id: str, snapshot: bytes) -> KafkaFuture:
        self._latest[camera_id] = snapshot
        return producer.send(self.topic, key=camera_id.encode(), value=snapshot)

    def close(self) -> None:
        if self._consumer is not None:
            try:
                self._consumer.close()
            except KafkaError as exc:
                log.warning("state topic reader did not close cleanly: %s", exc)
            self._consumer = None
