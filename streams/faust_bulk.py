"""faust-streaming's internals that the stream processor replaces, fenced in one place.

Readings skip faust's per-record path: `BulkConsumer._drain_messages` is faust's own fetch loop
with two changes (the records of the `bulk` topics are collected and handed over a whole fetch
at a time; `admit` decides which records go on), and `BulkApp._new_consumer` builds that
consumer instead of faust's. `BulkConsumer._new_offset` is faust's with one repair, so that a
group whose members come and go keeps committing at the pace it works (see there). These stand
in for private methods of one faust version: `faust_drift()` names what differs in the
installed faust (its version, or the source of a replaced method), a unit test fails on it, and
the stream processor logs it at start-up. Whoever upgrades faust compares the copies here with
the new originals, then updates `FAUST_VERSION` and `REPLACED`.
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
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
from faust.transport.drivers.aiokafka import Consumer as AIOKafkaConsumer
from faust.types import TP
from faust.types import Message as KafkaMessage
from faust.utils.functional import consecutive_numbers

FAUST_VERSION = "0.15.3"
# (module, qualified name) of each faust method replaced here -> SHA-256 of its source in
# FAUST_VERSION.
REPLACED: dict[tuple[str, str], str] = {
    ("faust.transport.consumer", "Consumer._drain_messages"): (
        "44a2500309e83c630493f6828af50166ec8d96a0b3e4fb2bab735f704ae93417"
    ),
    ("faust.transport.consumer", "Consumer._new_offset"): (
        "1d2c7ea89a7ad4f1a216c1d51936e569162cd66bd56f889e13fd29c910b58eb0"
    ),
    ("faust.transport.drivers.aiokafka", "Consumer._new_consumer_thread"): (
        "0870ec53dea75083995e3565c0f0a25a1c63ecceaeb238e92e2585e3623af5a9"
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


DELIVER = "deliver"
STALE = "fetched before the latest rebalance"
READ = "below the read offset"


def admit(
    message: KafkaMessage, read_offset: int | None, *, generation: int, flowing: bool, bulk: bool
) -> str:
    """Whether the fetch loop hands a record on (`DELIVER`), or why it leaves it.

    A record fetched before the latest rebalance, or while one runs, is left without a trace:
    the seek to the committed offsets that ends every rebalance brings it again. faust's loop
    would still move the partition's read offset to it; landing after the seek, that leaves
    the read offset ahead of the records the seek brings, and faust drops them as read,
    never acknowledged, so the partition's commits hold until the fetch passes the stale
    read offset.

    A record of a bulk topic below the read offset is handed on all the same: its handler
    skips what a source's state says was applied, and leaving it would hold that partition's
    commits at it. Other topics keep faust's rule and drop it.
    """
    if message.generation_id != generation or not flowing:
        return STALE
    if read_offset is not None and message.offset < read_offset and not bulk:
        return READ
    return DELIVER


# How long the broker may hold a fetch for records to arrive: faust's 1.5 s (fixed in its
# consumer thread) holds a worker with a backlog idle, when its next fetch happens to ask only
# for the partitions that have nothing new (the ones with records still waiting are left out).
FETCH_MAX_WAIT_MS = 100


class _ConsumerThread(AIOKafkaConsumerThread):
    """faust's consumer thread, making aiokafka consumers that wait `FETCH_MAX_WAIT_MS`."""

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        # Read by aiokafka when it starts its fetcher (AIOKafkaConsumer.start).
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS
        return consumer


class BulkConsumer(AIOKafkaConsumer):
    """faust's aiokafka consumer, handing the records of the `bulk` topics over a whole fetch
    at a time.

    faust delivers each record with `wait_first(callback(record), suspend_flow.wait())`: four
    tasks and an `asyncio.wait` per record (about 40 µs on this hardware), then an event, a
    queue and a stream step. For the readings that was most of the worker's time.
    """

    bulk: dict[str, Callable[[list[KafkaMessage]], Awaitable[None]]]

    async def _drain_messages(self, fetcher: Any) -> None:
        # faust-streaming 0.15.3's Consumer._drain_messages, with two changes: the records of
        # the bulk topics (in order per partition) are collected and handed over after the
        # fetch, and `admit` decides which records go on (see there).
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
                    fate = admit(
                        message,
                        r_offset,
                        generation=self.app.consumer_generation_id,
                        flowing=self.flow_active,
                        bulk=tp.topic in bulk,
                    )
                    if fate is not DELIVER:
                        self.log.dev("DROPPED MESSAGE %r: %s", offset, fate)
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

    def _new_offset(self, tp: TP) -> int | None:
        # faust-streaming 0.15.3's Consumer._new_offset, with one change: an offset listed twice
        # is listed once. faust fills a gap in the fetched offsets into the acknowledged ones
        # without looking whether some were acknowledged too (records handled before a
        # rebalance, fetched again after it from a position past the committed offset). The
        # run of consecutive offsets it commits then ends at the first repeat: one offset a
        # commit, for as many commits as there were repeats.
        acked = self._acked[tp]
        if not acked:
            return None
        max_offset = max(acked)
        gap_for_tp: Any = self._gap[tp]  # an intervaltree.IntervalTree
        if gap_for_tp:
            candidates = sorted(gap_for_tp.overlap(0, max_offset), key=lambda x: x.begin)
            if candidates:
                filled: list[int] = []
                for entry in candidates:
                    filled.extend(range(entry.begin, entry.end))
                new_max_offset = max(filled[-1], max_offset + 1)
                acked.extend(filled)
                gap_for_tp.chop(0, new_max_offset)
        acked[:] = sorted(set(acked))
        committed_offset = self._committed_offset[tp]
        if committed_offset and acked[0] - committed_offset > 1:
            return None
        batch = next(consecutive_numbers(acked))
        acked[: len(batch)] = []
        self._acked_index[tp].difference_update(batch)
        return int(batch[-1]) + 1

    def _new_consumer_thread(self) -> _ConsumerThread:
        # faust-streaming 0.15.3's Consumer._new_consumer_thread, with the thread above.
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    def settle(self, messages: list[KafkaMessage]) -> bool:
        """Acknowledge a handled batch of one generation, unless a rebalance assigned a newer
        one meanwhile; then the batch is only let go of (a later rebalance must not wait for
        it), and False says so.

        Up to the new assignment, acknowledgements are what the rebalance waits for and
        commits. After it they would land in the new generation's bookkeeping, beside the same
        offsets fetched again from the committed ones: faust's commit then moves past one
        offset at a time. The records come again anyway, and their handler skips what it
        applied.
        """
        if messages[0].generation_id == self.app.consumer_generation_id:
            for message in messages:
                self.ack(message)
            return True
        for message in messages:
            self._unacked_messages.discard(message)
        return False


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
