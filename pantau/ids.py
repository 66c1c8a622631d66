"""Identifiers and clocks shared by every stage."""

from __future__ import annotations

import os
import time
import uuid
from datetime import UTC, datetime

# Namespace for name-based ids, so that the same source record always maps to the same id
# (an MQTT redelivery of one reading must not become two rows).
PANTAU_NAMESPACE = uuid.UUID("5b0c6f1e-2d3a-4c6b-9a51-70616e746175")


def uuid7() -> uuid.UUID:
    """A time-ordered random UUID (RFC 9562 version 7).

    Time ordering keeps index inserts local in PostgreSQL and makes ids sortable by creation.
    """
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76
    value |= ((rand >> 62) & 0xFFF) << 64
    value |= 0b10 << 62
    value |= rand & ((1 << 62) - 1)
    return uuid.UUID(int=value)


def stable_id(*parts: object) -> uuid.UUID:
    """A name-based UUID (version 5) over the given parts."""
    return uuid.uuid5(PANTAU_NAMESPACE, "\x1f".join(str(p) for p in parts))


def utcnow() -> datetime:
    return datetime.now(UTC)


class SeqCounter:
    """Per-source sequence numbers: contiguous within a run, increasing across restarts.

    The first number is the start time in milliseconds. A later run starts at its own start
    time, which is larger than every number an earlier run could reach unless that run
    produced more than 1,000 records per second for its whole life.
    """

    def __init__(self, start: int | None = None) -> None:
        self._next = time.time_ns() // 1_000_000 if start is None else start

    def __next__(self) -> int:
        value = self._next
        self._next += 1
        return value

    def __iter__(self) -> SeqCounter:
        return self
