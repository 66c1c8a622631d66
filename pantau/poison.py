"""One poison policy for every consumer and ingest.

A record that cannot be decoded, validated, converted, encoded or stored is bad input: it goes
to its dead-letter topic, whole (up to `MAX_ORIGINAL_BYTES`) and with the reason, and the
stage goes on with the next one. Whatever exception the record provokes counts, not only the
ones a stage thought of: a hostile input finds the others.

Only infrastructure failures (the broker or the database unreachable, a disk gone) stop a
stage, and each stage names which exceptions those are. They are never dead-lettered: the
record is fine, the world around it is not, and it must be read again once the stage is back.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Literal, TypeVar

from pantau.codec import DecodeError, describe, storable_text
from pantau.ids import utcnow, uuid7
from pantau.messages import DeadLetter

log = logging.getLogger(__name__)

T = TypeVar("T")

# A dead letter keeps the rejected input whole up to this size, so that someone can see what
# came; beyond it the start is kept and the reason says how much there was. Bounded so that a
# 10 MiB payload still fits the dead-letter topic (Kafka's default limit is 1 MB).
MAX_ORIGINAL_BYTES = 256 * 1024
# How much of a reason a dead letter keeps.
MAX_REASON_CHARS = 2000

SourceKind = Literal["kafka", "mqtt", "http"]


class BadInput(ValueError):
    """Raised by a stage's own checks: the record is at fault, and the text says why."""


def dead_letter(
    *,
    stage: str,
    seq: int,
    source_kind: SourceKind,
    source_topic: str,
    original: bytes,
    error: str,
    partition: int | None = None,
    offset: int | None = None,
    source_key: str | None = None,
    at: datetime | None = None,
) -> DeadLetter:
    """The dead letter for `original`, clipped to what the dead-letter topic and table hold.

    Every text that may quote the input (reason, topic, key) is made storable first: a dead
    letter must never be refused itself.
    """
    reason = storable_text(error.strip() or "rejected (no reason given)")
    if len(original) > MAX_ORIGINAL_BYTES:
        reason = f"{reason} [original: {len(original)} bytes, the first {MAX_ORIGINAL_BYTES} kept]"
        original = original[:MAX_ORIGINAL_BYTES]
    if len(reason) > MAX_REASON_CHARS:
        reason = reason[: MAX_REASON_CHARS - 3] + "..."
    return DeadLetter(
        id=uuid7(),
        ts_capture=at or utcnow(),
        seq=seq,
        stage=stage,
        source_kind=source_kind,
        source_topic=_short(source_topic),
        partition=partition if partition is not None and partition >= 0 else None,
        offset=offset if offset is not None and offset >= 0 else None,
        source_key=_short(source_key) if source_key is not None else None,
        error=reason,
        original=original,
    )


def reason_for(exc: BaseException) -> str:
    """What a dead letter says about the exception a record provoked.

    The stage's own rejections (DecodeError, BadInput and subclasses) already word the reason
    for people; anything else is named by its class, so that a surprise is recognisable.
    """
    if isinstance(exc, DecodeError | BadInput):
        return storable_text(str(exc)) or describe(exc)
    return describe(exc)


def guard(
    work: Callable[[], T],
    reject: Callable[[str], object],
    *,
    infrastructure: tuple[type[BaseException], ...] = (),
    where: str = "",
) -> T | None:
    """`work()`, or None after `reject(reason)` when it raised anything but `infrastructure`.

    Exceptions a stage did not anticipate are logged with their traceback (they may point at
    a bug worth fixing), but the record still goes to its dead letters: one input must never
    stop a stage.
    """
    try:
        return work()
    except infrastructure:
        raise
    except Exception as exc:
        if not isinstance(exc, DecodeError | BadInput):
            log.error(
                "unexpected %s while handling %s; dead-lettering it",
                type(exc).__name__,
                where or "a record",
                exc_info=exc,
            )
        reject(reason_for(exc))
        return None


def _short(text: str) -> str:
    text = storable_text(text)
    return text if len(text) <= 1000 else text[:997] + "..."
