"""The faust internals the stream processor replaces still match the installed faust; an
upgrade that changes them fails here, naming what to compare."""

from __future__ import annotations

import inspect

import faust.transport.consumer
import pytest
from faust.types import TP, Message

from streams import faust_bulk
from streams.faust_bulk import FAUST_VERSION, REPLACED, faust_drift, source_digest


def test_the_installed_faust_is_the_one_the_copied_code_was_taken_from() -> None:
    problems = faust_drift()
    assert problems == [], (
        "faust-streaming changed under streams/faust_bulk.py: "
        + "; ".join(problems)
        + ". Compare BulkConsumer._drain_messages and BulkApp._new_consumer with the installed "
        "faust's, carry its changes over, then update FAUST_VERSION and REPLACED."
    )


def test_another_faust_version_is_named() -> None:
    assert faust_drift("0.16.0") == [
        f"faust-streaming is 0.16.0, the copies were taken from {FAUST_VERSION}"
    ]


def test_a_changed_or_missing_original_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    async def rewritten(self: object, fetcher: object) -> None:
        return None

    monkeypatch.setattr(faust.transport.consumer.Consumer, "_drain_messages", rewritten)
    monkeypatch.setitem(REPLACED, ("faust.transport.consumer", "Consumer._gone"), "0" * 64)

    problems = faust_drift(FAUST_VERSION)

    assert any("Consumer._drain_messages changed" in p for p in problems), problems
    assert "faust.transport.consumer.Consumer._gone is gone" in problems


def test_every_replaced_original_is_found() -> None:
    for module, qualname in REPLACED:
        assert source_digest(module, qualname) is not None, (module, qualname)
    # The replacements themselves are where the module says.
    assert "_drain_messages" in faust_bulk.BulkConsumer.__dict__
    assert "_new_consumer" in faust_bulk.BulkApp.__dict__


def _record(offset: int, generation: int) -> Message:
    return Message(
        topic="readings",
        partition=0,
        offset=offset,
        timestamp=0.0,
        timestamp_type=0,
        headers=[],
        key=b"s1",
        value=b"{}",
        checksum=None,
        generation_id=generation,
    )


def test_a_record_fetched_before_the_latest_rebalance_is_left_and_leaves_no_trace() -> None:
    # Fetched under generation 1, looked at once generation 2 was assigned: the seek that
    # ended the rebalance brings it again, so it must not move the read offset.
    stale = _record(36_659, generation=1)
    assert faust_bulk.admit(stale, 33_193, generation=2, flowing=True, bulk=True) == (
        faust_bulk.STALE
    )
    # While a rebalance runs (the flow stopped), nothing goes on either.
    current = _record(33_193, generation=2)
    assert faust_bulk.admit(current, 33_193, generation=2, flowing=False, bulk=True) == (
        faust_bulk.STALE
    )
    assert faust_bulk.admit(current, 33_193, generation=2, flowing=True, bulk=True) == (
        faust_bulk.DELIVER
    )


def test_a_bulk_record_below_the_read_offset_goes_on_and_others_keep_fausts_rule() -> None:
    again = _record(33_193, generation=2)
    # A read offset left ahead of the fetch: the bulk handler skips what it applied, and a
    # record left here would never be acknowledged, holding the partition's commits.
    assert faust_bulk.admit(again, 36_659, generation=2, flowing=True, bulk=True) == (
        faust_bulk.DELIVER
    )
    assert faust_bulk.admit(again, 36_659, generation=2, flowing=True, bulk=False) == (
        faust_bulk.READ
    )
    assert faust_bulk.admit(again, None, generation=2, flowing=True, bulk=False) == (
        faust_bulk.DELIVER
    )


def _bookkeeping(consumer: object, acked: list[int], gap: tuple[int, int], committed: int) -> None:
    from collections import defaultdict

    from intervaltree import IntervalTree  # type: ignore[import-untyped]

    tp = TP("readings", 0)
    trees: defaultdict[object, IntervalTree] = defaultdict(IntervalTree)
    trees[tp].addi(*gap)
    consumer._acked = defaultdict(list, {tp: list(acked)})  # type: ignore[attr-defined]
    consumer._acked_index = defaultdict(set, {tp: set(acked)})  # type: ignore[attr-defined]
    consumer._gap = trees  # type: ignore[attr-defined]
    consumer._committed_offset = defaultdict(lambda: None, {tp: committed})  # type: ignore[attr-defined]


def test_a_gap_over_acknowledged_offsets_commits_them_at_once() -> None:
    # Readings 27718..27799 handled before a rebalance and acknowledged; after it the fetch
    # went on from 27760 while the read offset said 27718, so faust noted 27719..27760 as a
    # gap: those offsets are now both acknowledged and gap.
    tp = TP("readings", 0)
    acked, gap = list(range(27_718, 27_800)), (27_719, 27_761)
    ours = object.__new__(faust_bulk.BulkConsumer)
    _bookkeeping(ours, acked, gap, committed=27_718)

    assert ours._new_offset(tp) == 27_800
    assert ours._acked[tp] == []

    # faust's own moves one offset a commit past the repeats.
    theirs = object.__new__(faust_bulk.BulkConsumer)
    _bookkeeping(theirs, acked, gap, committed=27_718)
    original = faust.transport.consumer.Consumer._new_offset
    steps = []
    for _ in range(3):
        steps.append(original(theirs, tp))
        theirs._committed_offset[tp] = steps[-1]  # what a commit records
    assert steps == [27_720, 27_721, 27_722]


class _App:
    consumer_generation_id = 3


def test_a_batch_handled_across_a_new_assignment_is_let_go_of_not_acknowledged() -> None:
    consumer = object.__new__(faust_bulk.BulkConsumer)
    consumer.app = _App()  # type: ignore[assignment]
    tp = TP("readings", 0)
    _bookkeeping(consumer, [], (0, 1), committed=100)
    consumer._gap.clear()
    consumer._unacked_messages = set()
    consumer._n_acked = 0
    acked: list[Message] = []
    consumer.ack = acked.append  # type: ignore[method-assign,assignment]

    old = [_record(100, generation=2), _record(101, generation=2)]
    consumer._unacked_messages.add(old[-1])
    assert consumer.settle(old) is False
    assert acked == [] and not consumer._unacked_messages and consumer._acked[tp] == []

    fresh = [_record(100, generation=3), _record(101, generation=3)]
    assert consumer.settle(fresh) is True
    assert acked == fresh


def test_the_consumers_fetches_wait_briefly_for_new_records(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The setting reaches the aiokafka consumer through its private attribute: make sure the
    # installed aiokafka still reads it when it starts its fetcher.
    import aiokafka.consumer.consumer as aiokafka_consumer
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    assert "fetch_max_wait_ms=self._fetch_max_wait_ms" in inspect.getsource(
        aiokafka_consumer.AIOKafkaConsumer.start
    )

    class _Made:
        _fetch_max_wait_ms = 1500  # what faust asks for

    monkeypatch.setattr(
        AIOKafkaConsumerThread, "_create_worker_consumer", lambda self, transport: _Made()
    )
    thread = object.__new__(faust_bulk._ConsumerThread)
    consumer = thread._create_worker_consumer(None)
    assert consumer._fetch_max_wait_ms == faust_bulk.FETCH_MAX_WAIT_MS < 1500
