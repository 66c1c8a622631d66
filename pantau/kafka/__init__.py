"""Kafka for every stage: clients built from the settings, producing (and dead letters),
consuming in batches, topic administration.

Three client libraries are in use, each where it serves best:
- kafka-python (pure Python): producers everywhere, the low-volume consumers (detector,
  notifier), administration.
- confluent-kafka (librdkafka, in C): the sink's consumer, which must keep up with 100,000
  rows a second, and the readiness probe, which tells a refused login from a broker that is
  down.
- aiokafka, under faust: the stream processor.
All take their security from `security_options`.
"""

from pantau.kafka.admin import (
    TopicDifference,
    admin,
    committed_offsets,
    delete_topics,
    ensure_topics,
    group_lag,
    group_positions,
    message_counts,
    topic_differences,
)
from pantau.kafka.clients import (
    KafkaRefused,
    KafkaUnavailable,
    Library,
    security_options,
    ssl_context,
    wait_until_ready,
)
from pantau.kafka.consume import (
    Client,
    ConfluentBatchConsumer,
    KafkaPythonBatchConsumer,
    consumer,
    open_consumer,
)
from pantau.kafka.produce import DeadLetters, producer, publish
from pantau.kafka.records import BatchConsumer, Record, describe_partitions, next_offsets

__all__ = [
    "BatchConsumer",
    "Client",
    "ConfluentBatchConsumer",
    "DeadLetters",
    "KafkaPythonBatchConsumer",
    "KafkaRefused",
    "KafkaUnavailable",
    "Library",
    "Record",
    "TopicDifference",
    "admin",
    "committed_offsets",
    "consumer",
    "delete_topics",
    "describe_partitions",
    "ensure_topics",
    "group_lag",
    "group_positions",
    "message_counts",
    "next_offsets",
    "open_consumer",
    "producer",
    "publish",
    "security_options",
    "ssl_context",
    "topic_differences",
    "wait_until_ready",
]
