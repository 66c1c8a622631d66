"""What a stage sees of consumed records, whichever client fetched them: the record, the
batch consumer's interface, and the offsets to commit after a batch."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


class BatchConsumer(Protocol):
    def poll(self, max_records: int, timeout_s: float) -> list[Record]: ...

    def commit(self, records: Iterable[Record]) -> bool:
        """Commit past `records`; False when a rebalance took their partitions meanwhile."""
        ...

    def pause_all(self) -> None: ...

    def resume_all(self) -> None: ...

    def has_assignment(self) -> bool: ...

    def lag(self) -> int:
        """Records in the assigned partitions not yet consumed."""
        ...

    def close(self) -> None: ...


def next_offsets(records: Iterable[Record]) -> dict[tuple[str, int], int]:
    """Per (topic, partition): the offset to commit once `records` are processed."""
    offsets: dict[tuple[str, int], int] = {}
    for record in records:
        key = (record.topic, record.partition)
        if record.offset + 1 > offsets.get(key, -1):
            offsets[key] = record.offset + 1
    return offsets


def describe_partitions(what: str, partitions: Iterable[Any]) -> str:
    """'assigned 6 partitions: readings[0-5], ...' for the log."""
    by_topic: dict[str, list[int]] = {}
    for tp in partitions:
        by_topic.setdefault(tp.topic, []).append(tp.partition)
    count = sum(len(p) for p in by_topic.values())
    parts = ", ".join(f"{topic}{sorted(numbers)}" for topic, numbers in sorted(by_topic.items()))
    return f"{what} {count} partitions" + (f": {parts}" if parts else "")
