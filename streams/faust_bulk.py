"""faust-streaming's internals that the stream processor replaces, fenced in one place.

Readings skip faust's per-record path: `BulkConsumer._drain_messages` is faust's own fetch loop
with one change (the records of the `bulk` topics are collected and handed over a whole fetch at
a time), and `BulkApp._new_consumer` builds that consumer instead of faust's. Both stand in for
private methods of one faust version: `faust_drift()` names what differs in the installed faust
(its version, or the source of a replaced method), a unit test fails on it, and the stream
processor logs it at start-up. Whoever upgrades faust compares the copies here with the new
originals, then updates `FAUST_VERSION` and `REPLACED`.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib
import inspect
from collections.abc import Awaitable, Callable
from typing import Any

import faust
from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers.aiokafka import Consumer as AIOKafkaConsumer
from faust.types import Message as KafkaMessage

FAUST_VERSION = "0.15.3"
# (module, qualified name) of each faust method replaced here -> SHA-256 of its source in
# FAUST_VERSION.
REPLACED: dict[tuple[str, str], str] = {
    ("faust.transport.consumer", "Consumer._drain_messages"): (
        "44a2500309e83c630493f6828af50166ec8d96a0b3e4fb2bab735f704ae93417"
    ),
    ("faust.app.base", "App._new_consumer"): (
        "bff6ccd646b71ea99a7e7a7d1c62adbf3d34432a0b42a39e6f60b4c0307d89c8"
    ),
}


def source_digest(module: str, qualname: str) -> str | None:
    """SHA-256 of the installed source of `module.qualname`; None when it is not there."""
    try:
        target: Any = importlib.import_module(module)
        for part in qualname.split("."):
            target = getattr(target, part)
        source = inspect.getsource(target)
    except (ImportError, AttributeError, OSError, TypeError):
        return None
    return hashlib.sha256(source.encode()).hexdigest()


def faust_drift(installed_version: str | None = None) -> list[str]:
    """What differs between the installed faust and the one the copies here were taken from;
    empty when nothing does."""
    version = installed_version if installed_version is not None else faust.__version__
    problems = []
    if version != FAUST_VERSION:
        problems.append(f"faust-streaming is {version}, the copies were taken from {FAUST_VERSION}")
    for (module, qualname), digest in REPLACED.items():
        found = source_digest(module, qualname)
        if found is None:
            problems.append(f"{module}.{qualname} is gone")
        elif found != digest:
            problems.append(f"{module}.{qualname} changed (source SHA-256 {found[:12]}...)")
    return problems


class BulkConsumer(AIOKafkaConsumer):
    """faust's aiokafka consumer, handing the records of the `bulk` topics over a whole fetch
    at a time.

    faust delivers each record with `wait_first(callback(record), suspend_flow.wait())`: four
    tasks and an `asyncio.wait` per record (about 40 µs on this hardware), then an event, a
    queue and a stream step. For the readings that was most of the worker's time.
    """

    bulk: dict[str, Callable[[list[KafkaMessage]], Awaitable[None]]]

    async def _drain_messages(self, fetcher: Any) -> None:
        # faust-streaming 0.15.3's Consumer._drain_messages, but for the bulk topics: their
        # records (in order per partition) are collected and handed over after the fetch.
        callback = self.callback
        bulk = self.bulk
        consumer_should_stop = self._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set
        get_read_offset = self._read_offset.__getitem__
        set_read_offset = self._read_offset.__setitem__
        commit_every = self._commit_every
        acks_enabled_for = self.app.topics.acks_enabled_for
        num_since_yield = 0
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                self.diag.set_flag(CONSUMER_FETCHING)
                ait = self.getmany(timeout=1.0)
                # getmany may return at once, again and again: let the loop run in between.
                await self.sleep(0)
                if self.should_stop:
                    continue
                fetched: dict[str, list[KafkaMessage]] = {}
                async for tp, message in ait:
                    offset = message.offset
                    r_offset = get_read_offset(tp)
                    if r_offset is not None and offset < r_offset:
                        self.log.dev("DROPPED MESSAGE ROFF %r", offset)
                        continue
                    gap = offset - (r_offset or 0)
                    if gap > 1 and r_offset and acks_enabled_for(message.topic):
                        await self._add_gap(tp, r_offset + 1, offset)
                    if commit_every is not None and self._n_acked >= commit_every:
                        self._n_acked = 0
                        await self.commit()
                    records = fetched.get(tp.topic)
                    if records is not None or tp.topic in bulk:
                        if records is None:
                            records = fetched[tp.topic] = []
                        records.append(message)
                    else:
                        num_since_yield += 1
                        if num_since_yield > 100:
                            await asyncio.sleep(0)
                            num_since_yield = 0
                        await self.wait_first(callback(message), self.suspend_flow.wait())
                    set_read_offset(tp, offset)
                self.diag.unset_flag(CONSUMER_FETCHING)
                for topic, records in fetched.items():
                    await bulk[topic](records)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                self.log.info("Broker stopped consumer, shutting down...")
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                self.log.info("Consumer shutting down for user cancel.")
                return
            raise
        except Exception as exc:
            self.log.exception("Drain messages raised: %r", exc)
            raise
        finally:
            self.diag.unset_flag(CONSUMER_FETCHING)


class BulkApp(faust.App):
    """A faust app whose consumer is `BulkConsumer`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.bulk: dict[str, Callable[[list[KafkaMessage]], Awaitable[None]]] = {}

    def _new_consumer(self) -> BulkConsumer:
        consumer = BulkConsumer(
            self.transport,
            callback=self.topics.on_message,
            on_partitions_revoked=self._on_partitions_revoked,
            on_partitions_assigned=self._on_partitions_assigned,
            beacon=self.beacon,
            loop=self.transport.loop,
        )
        consumer.bulk = self.bulk
        return consumer
