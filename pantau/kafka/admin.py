"""Administration: topics created and kept as the topic specs say, retained record counts, a
group's committed positions and lag, topics deleted by prefix (tests, benchmarks)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType
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


@dataclass(frozen=True)
class TopicDifference:
    """Where an existing topic is not what the settings say."""

    topic: str
    what: str  # "partitions", "replicas", or a topic config such as "min.insync.replicas"
    have: str
    want: str

    @property
    def config(self) -> bool:
        """A topic config: the broker changes it in place, nothing moves."""
        return self.what not in ("partitions", "replicas")

    def __str__(self) -> str:
        return f"topic {self.topic}: {self.what} is {self.have}, the settings say {self.want}"


def ensure_topics(settings: KafkaSettings, specs: Iterable[TopicSpec]) -> list[str]:
    """Create the topics that do not exist yet, and bring the existing ones' configs to what
    the settings say; returns the names created.

    Every difference is logged. A topic config (retention, min.insync.replicas, sizes) is set
    to the settings' value. Partition and replica counts are left as they are, with a
    warning: more partitions would move keys to other partitions (and with them the order of
    each source's records), and new replicas need a reassignment; both are an operator's
    decision (see `topic_differences`)."""
    wanted = {spec.name: spec for spec in specs}
    client = admin(settings)
    try:
        existing = set(client.list_topics())
        present = [spec for name, spec in wanted.items() if name in existing]
        if present:
            _reconcile(client, present)
        missing = [spec for name, spec in wanted.items() if name not in existing]
        if not missing:
            return []
        request = {
            spec.name: {
                "num_partitions": spec.partitions,
                "replication_factor": spec.replicas,
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


def topic_differences(settings: KafkaSettings, specs: Iterable[TopicSpec]) -> list[TopicDifference]:
    """How the existing topics among `specs` differ from them (missing topics are not listed)."""
    client = admin(settings)
    try:
        existing = set(client.list_topics())
        return _differences(client, [spec for spec in specs if spec.name in existing])
    finally:
        client.close()


def _differences(client: KafkaAdminClient, specs: list[TopicSpec]) -> list[TopicDifference]:
    if not specs:
        return []
    found: list[TopicDifference] = []
    described = {t["name"]: t for t in client.describe_topics([s.name for s in specs])}
    resources = [
        ConfigResource(ConfigResourceType.TOPIC, spec.name, configs=dict.fromkeys(spec.config))
        for spec in specs
        if spec.config
    ]
    configs: dict[str, Any] = {}
    if resources:
        configs = client.describe_configs(resources, config_filter="all").get("topic", {})
    for spec in specs:
        topic = described.get(spec.name) or {}
        partitions = topic.get("partitions") or []
        if partitions and len(partitions) != spec.partitions:
            found.append(
                TopicDifference(spec.name, "partitions", str(len(partitions)), str(spec.partitions))
            )
        replicas = {len(p.get("replica_nodes") or ()) for p in partitions}
        if partitions and replicas != {spec.replicas}:
            have = "/".join(str(r) for r in sorted(replicas))
            found.append(TopicDifference(spec.name, "replicas", have, str(spec.replicas)))
        entries = configs.get(spec.name) or {}
        for key, want in spec.config.items():
            entry = entries.get(key)
            value = entry.get("value") if isinstance(entry, dict) else None
            if value != want:
                found.append(TopicDifference(spec.name, key, str(value), want))
    return found


def _reconcile(client: KafkaAdminClient, specs: list[TopicSpec]) -> None:
    differences = _differences(client, specs)
    changes: dict[str, dict[str, str]] = {}
    for difference in differences:
        if difference.config:
            changes.setdefault(difference.topic, {})[difference.what] = difference.want
            log.warning("%s: setting it as the settings say", difference)
        elif difference.what == "partitions":
            log.warning(
                "%s; left as it is: adding partitions moves keys (and each source's order) "
                "to other partitions, so it is for an operator to do with the stages drained",
                difference,
            )
        else:
            log.warning(
                "%s; left as it is: changing the copies of a topic is a partition "
                "reassignment (kafka-reassign-partitions), for an operator to run",
                difference,
            )
    if changes:
        result = client.alter_configs(
            [ConfigResource(ConfigResourceType.TOPIC, t, configs=c) for t, c in changes.items()]
        )
        for topic, outcome in (result.get("topic") or {}).items():
            if str(outcome) != "OK":
                # e.g. a min.insync.replicas above the topic's replicas, or a user without the
                # right to alter configs: the broker says why. Named, and the stage goes on
                # with the topic as it is, as for the counts above.
                log.error("topic %s: its configs were left as they are: %s", topic, outcome)


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


def delete_topics(settings: KafkaSettings, prefix: str, *, anywhere: bool = False) -> list[str]:
    """Delete every topic whose name starts with `prefix`, or holds it `anywhere` (faust names
    its repartition topics after the agent first) (test runs, benchmarks)."""
    client = admin(settings)
    try:
        names = [
            t for t in client.list_topics() if (prefix in t if anywhere else t.startswith(prefix))
        ]
        if names:
            client.delete_topics(names, timeout_ms=30_000)
        return names
    finally:
        client.close()
