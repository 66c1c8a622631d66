"""The stream processor: a faust app that turns readings, heartbeats, the detector's word on
camera views and dumping events into reading windows and alarms.

Data flow (every input keyed by its source id):

    sensors.readings.v1 ─────────────┐
    cameras.health.v1 ─► repartition ┤
    cameras.view.v1 ───► repartition ┼─► source state (faust table) ─► alerts.v1
    events.dumping.v1 ─► repartition ┤                                └► sensors.readings.1m.v1
    alerts.actions.v1 ───────────────┘   (operator actions, and this app's silence checks)

Guarantee: at least once, with idempotent effects. faust flushes every produced record (the
table's changelog included) before it commits offsets, so nothing is lost. A crash can make
faust deliver inputs again; each source's state remembers the last offset it applied per
topic, and is written only after the broker acknowledged what those inputs produced, so a
redelivered input is either skipped (its effects are out) or applied again to the older state,
producing the same alarm versions (downstream keeps one copy of each alarm_id and version).

The state table is partitioned by key like the readings topic, so a source's readings,
actions and repartitioned camera inputs meet its state in the same partition.

Throughput: readings skip faust's per-record path (a task race per record in the fetcher, an
event, a queue and a stream step per record: about 90 µs a record on one core, more than all
of the processing). `BulkConsumer` (streams/faust_bulk.py, where faust's internals that
this replaces are fenced) hands each fetch of readings over as one batch, which
`StreamsApp._on_readings` handles and then acknowledges; the low-volume inputs keep faust's
agents. The table holds each source's state as the JSON bytes that reach the changelog, and
`_States` keeps the decoded form beside them, so a batch neither copies nor re-parses a state
it already has.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any, cast

import faust
from faust.types import Message as KafkaMessage
from kafka.errors import KafkaError

from pantau import kafka
from pantau.codec import decode_as, encode
from pantau.failpoints import Failpoints
from pantau.ids import SeqCounter, uuid7
from pantau.messages import (
    AlarmAction,
    CameraHeartbeat,
    CameraView,
    DeadLetter,
    DumpingEvent,
    Message,
    PlaceSignal,
    SensorReading,
)
from pantau.poison import BadInput, dead_letter, guard
from pantau.runtime import RUN_ENV, alive
from pantau.settings import PlaceRule, Settings
from pantau.supervisor import EXIT_RESTART_NOW
from pantau.topics import Topics
from streams.engine import Engine, Output, State, is_replay, mark_applied
from streams.faust_bulk import BulkApp, BulkConsumer, faust_drift
from streams.state import SourceKind, dump_state, load_state, new_state

log = logging.getLogger(__name__)

STAGE = "streams"
# Readings are handled a fetch at a time (see `BulkConsumer`); the other inputs in batches of up
# to this many events, gathered for at most _BATCH_WITHIN_S.
_BATCH = 100
_BATCH_WITHIN_S = 0.05
# A silent source is checked at most this often while its check is on its way.
_CHECK_REPEAT_S = 5.0
_WATCH_EVERY_S = 10.0
# The worker's exit code when it gave up on a stalled partition: the supervisor of
# `pantau streams` starts a fresh one at once.
EXIT_STALLED = EXIT_RESTART_NOW


def _broker_url(bootstrap: str) -> str:
    return ";".join(f"kafka://{server.strip()}" for server in bootstrap.split(","))


class StreamsApp:
    """Wires the faust app, its topics and table to the engine."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.engine = Engine(settings)
        for rule in settings.streams.rules:
            if isinstance(rule, PlaceRule):
                joined = [link for link in self.engine.links if link.rule is rule]
                if not joined:
                    log.warning(
                        "place rule %s joins no sensor with any camera: check their "
                        "locations (and river, river_km for a river rule)",
                        rule.id,
                    )
                for link in joined:
                    log.info(
                        "place rule %s: sensor %s with camera %s (%s)",
                        rule.id, link.sensor_id, link.camera_id, link.how,
                    )  # fmt: skip
        self.topics = Topics(settings.kafka)
        partitions = settings.kafka.partitions.readings
        streams = settings.streams
        for problem in faust_drift():
            log.warning(
                "stream processor: %s; the fetch loop in streams/faust_bulk.py replaces faust's "
                "and may no longer match it",
                problem,
            )
        self.app = BulkApp(
            streams.app_id,
            broker=_broker_url(settings.kafka.bootstrap_servers),
            datadir=str(streams.data_dir),
            store="memory://",
            processing_guarantee="at_least_once",
            topic_partitions=partitions,
            # Its changelog and repartition topics are state: as many copies as the settings
            # give state topics; every record it produces waits for all in-sync copies.
            topic_replication_factor=settings.kafka.replication.state.replicas,
            producer_acks=-1,
            key_serializer="raw",
            value_serializer="raw",
            broker_commit_interval=1.0,
            # A worker killed outright is replaced within seconds, not faust's default minute.
            broker_session_timeout=10.0,
            broker_heartbeat_interval=2.0,
            broker_commit_every=10_000,
            # Readings are handled a fetch at a time: this bounds a batch (and what a crash
            # replays) without making the per-batch costs (table writes, one wait for the
            # broker's acknowledgements) matter.
            broker_max_poll_records=10_000,
            consumer_auto_offset_reset="earliest",
            web_enabled=False,
            table_standby_replicas=0,
            # The brokers' login and TLS, for every aiokafka client faust makes.
            **kafka.security_options(settings.kafka, "faust"),
        )
        t = self.topics
        self.actions_topic = self.app.topic(t.alarm_actions, internal=False)
        engine = self.engine
        self.readings = _Input(t.readings, SensorReading, engine.on_reading)
        # Camera inputs arrive partitioned like the cameras; `repartition` re-keys them onto the
        # state table's partitions.
        self.inputs = (
            self.readings,
            _Input(t.alarm_actions, AlarmAction, engine.on_action),
            _Input(t.camera_health, CameraHeartbeat, engine.on_heartbeat, "cameras-by-id"),
            _Input(t.camera_view, CameraView, engine.on_view, "views-by-camera"),
            _Input(t.dumping_events, DumpingEvent, engine.on_dumping, "dumping-by-camera"),
            # Keyed by sensor and partitioned like the readings: no re-keying.
            _Input(t.place_signals, PlaceSignal, engine.on_signal),
        )
        self.state = self.app.Table(
            "source-state",
            default=None,
            partitions=partitions,
            # The values are the JSON bytes `dump_state` writes, sent and recovered as they are
            # (value_type sets the serializer recovery uses): the same records the "json"
            # serializer wrote before, so an existing changelog recovers unchanged.
            value_type=bytes,
            schema=faust.Schema(key_serializer="raw", value_serializer="raw"),
            # Partition by key like every producer does, so timers may write too.
            use_partitioner=True,
        )
        self._states = _States(self.state)
        self._seq = SeqCounter()
        self._check_sent: dict[str, float] = {}
        self._input_topics = {t.readings, t.alarm_actions, t.place_signals}
        self._progress: dict[tuple[str, int], tuple[int, float]] = {}
        self._stall = Failpoints(settings.debug.failpoints).armed("streams.stall") and (
            os.environ.get(RUN_ENV, "1") == "1"
        )
        # The readings handler and the agents interleave at every await; a source's state must
        # not be written by one (with its offsets) while another's effects on it are still
        # unacknowledged.
        self._lock = asyncio.Lock()
        # Fetched readings waiting for `_on_readings`. Handed over rather than handled in
        # faust's fetch loop, so that the loop takes what aiokafka prefetched at once: a
        # partition whose records wait unconsumed is left out of the next fetch request, which
        # the broker may hold for faust's fetch_max_wait_ms (1.5 s) before the readings come.
        # Two waiting batches bound the memory, and a slow handler slows the fetching.
        self._fetched: asyncio.Queue[list[KafkaMessage]] = asyncio.Queue(maxsize=2)
        self._register()

    # ------------------------------------------------------------------ wiring

    def _register(self) -> None:
        # Subscribed like an agent's topic (so it is assigned with the table's partitions),
        # but its records reach `_on_readings` a fetch at a time instead of through a stream.
        self.app.topics.add(self.app.topic(self.readings.topic))
        self.app.bulk[self.readings.topic] = self._fetched.put
        for source in self.inputs[1:]:
            self._agent(source)

        @self.app.task  # type: ignore[untyped-decorator]
        async def handle_readings() -> None:
            # A batch writes one changelog record per source it touched, up to one a reading:
            # one batch's records may wait in faust's producer buffer (100 by default, with a
            # warning each time it is passed) while the next batch is handled.
            self.app.producer.buffer.max_messages = self.app.conf.broker_max_poll_records
            while True:
                await self._on_readings(await self._fetched.get())

        @self.app.timer(self.settings.streams.check_interval_s)  # type: ignore[untyped-decorator]
        async def look_for_silence() -> None:
            await self._look_for_silence()

        @self.app.timer(_WATCH_EVERY_S)  # type: ignore[untyped-decorator]
        async def watch_progress() -> None:
            await self._watch_progress()

        @self.app.timer(1.0)  # type: ignore[untyped-decorator]
        async def report_alive() -> None:
            # The event loop came round: a worker whose loop is blocked stops saying so, and
            # its supervisor replaces it.
            alive()

    def _agent(self, source: _Input) -> None:
        async def agent(stream: Any) -> AsyncIterator[None]:
            if source.repartition is not None:
                stream = stream.group_by(_message_key, name=source.repartition)
            async for events in stream.take_events(_BATCH, within=_BATCH_WITHIN_S):
                batch = [event.message for event in events]
                async with self._lock:
                    try:
                        await self._handle(batch, source)
                    except Exception as exc:
                        # Not back to faust: take_events acknowledges a batch whose handling
                        # raised, and its offsets would be committed.
                        _give_up(batch, exc)
                yield None

        self.app.agent(self.app.topic(source.topic), name=source.cls.KIND)(agent)

    async def _on_readings(self, messages: list[KafkaMessage]) -> None:
        """One fetch of readings, in partition order; acknowledged once handled.

        Checked here, not when fetched: a rebalance may have begun while they waited.
        """
        app = self.app
        consumer = cast(BulkConsumer, app.consumer)
        if not (consumer.flow_active and app.flow_control.is_active()):
            # A rebalance began after the fetch: faust seeks every partition back to its
            # committed offset before it lets records flow again, so these come back.
            return
        # Records fetched before the latest rebalance come again from the committed offsets.
        generation = app.consumer_generation_id
        batch = [m for m in messages if m.generation_id == generation]
        if not batch:
            return
        if self._stall:
            # Recovery tests: a first worker that stops consuming readings, silently.
            log.critical("failpoint streams.stall reached: no longer consuming readings")
            await asyncio.Event().wait()
        # While one of them is tracked and unacknowledged, a rebalance or a shutdown waits for
        # the batch (Consumer.wait_empty); one is enough, and tracking each costs sensor calls.
        consumer.track_message(batch[-1])
        # Table writes queue changelog records in faust's producer buffer: when a whole
        # batch's worth waits there, let it drain first.
        await app.producer.buffer.wait_until_ebb()
        async with self._lock:
            try:
                await self._handle(batch, self.readings)
            except Exception as exc:
                _give_up(batch, exc)
        if not consumer.settle(batch):
            log.info(
                "a rebalance came while %d readings were handled: they come again, and what "
                "was applied is skipped",
                len(batch),
            )

    # ------------------------------------------------------------------ handling

    async def _handle(self, messages: Sequence[KafkaMessage], source: _Input) -> None:
        states = self._states
        # key → (the table's bytes it was read from, the working state): private to this batch.
        taken: dict[str, tuple[bytes | None, State]] = {}
        touched: set[str] = set()
        out = Output()
        letters: list[DeadLetter] = []
        cls = source.cls
        handler = source.handler
        for message in messages:
            raw_key = message.key
            key = (
                raw_key.decode(errors="replace")
                if isinstance(raw_key, bytes)
                else str(raw_key or "")
            )
            reasons: list[str] = []
            # A record without a value (a tombstone) is an empty message: a dead letter.
            decoded = guard(
                partial(_decoded_for, message.value or b"", cls, key),
                reasons.append,
                where=f"{message.topic}[{message.partition}]@{message.offset}",
            )
            if decoded is None:
                letters.append(self._letter(message, key, reasons[0]))
                continue
            held = taken.get(key)
            if held is None:
                held = taken[key] = states.take(key) or (None, new_state(_kind(decoded), key))
            state = held[1]
            topic = message.topic
            offset = message.offset
            if is_replay(state, topic, offset):
                # Applied before a crash, and its effects were delivered before that state
                # was written (see below): nothing to do.
                continue
            # A handler that raises on one input (an operator action that does not fit the
            # alarm's state, or an input no rule foresaw) dead-letters that input; the others
            # go on. A surprise is logged with its traceback: it is a bug worth fixing, but
            # never a reason to stop every source of the partition.
            result = guard(
                partial(handler, state, decoded, ts_rule=datetime.now(UTC)),
                reasons.append,
                where=f"{message.topic}[{message.partition}]@{message.offset}",
            )
            if result is None:
                letters.append(self._letter(message, key, reasons[0]))
            mark_applied(state, topic, offset)
            touched.add(key)
            if result is not None:
                if result.alerts:
                    out.alerts.extend(result.alerts)
                if result.windows:
                    out.windows.extend(result.windows)
                if result.signals:
                    out.signals.extend(result.signals)
        # Effects first, state after: the state (with its applied offsets) reaches the
        # changelog only once the broker has every alert, window and dead letter it led to. A
        # crash in between replays the inputs onto the older state, which produces the same
        # alarm ids and versions again, and downstream keeps one copy of each.
        producer = self.app.producer
        sent: list[Awaitable[Any]] = []
        t = self.topics
        for alert in out.alerts:
            sent.append(await producer.send(t.alerts, alert.key, encode(alert), None, None, None))
        for window in out.windows:
            sent.append(
                await producer.send(t.reading_windows, window.key, encode(window), None, None, None)
            )
        for signal in out.signals:
            sent.append(
                await producer.send(t.place_signals, signal.key, encode(signal), None, None, None)
            )
        for letter in letters:
            topic = t.dead_letters(letter.source_topic)
            sent.append(await producer.send(topic, letter.key, encode(letter), None, None, None))
        if sent:
            await asyncio.gather(*sent)
        for key, (raw, state) in taken.items():
            states.put_back(key, raw, state, changed=key in touched)
        for alert in out.alerts:
            log.info(
                "alarm %s %s on %s: %s (%s, version %d)",
                alert.alarm_type,
                alert.change,
                alert.source_id,
                alert.state,
                alert.severity,
                alert.version,
            )

    def _public(self, topic: str) -> str:
        """The public input topic a (possibly repartitioned) record came from."""
        for source in self.inputs:
            if source.repartition is not None and topic.endswith(
                f"{source.repartition}-repartition"
            ):
                return source.topic
        return topic

    def _letter(self, message: KafkaMessage, key: str, error: str) -> DeadLetter:
        letter = dead_letter(
            stage=STAGE,
            seq=next(self._seq),
            source_kind="kafka",
            source_topic=self._public(message.topic),
            partition=message.partition,
            offset=message.offset,
            source_key=key or None,
            error=error,
            original=bytes(message.value) if message.value is not None else b"",
        )
        log.warning(
            "dead letter from %s[%d]@%d: %s",
            message.topic,
            message.partition,
            message.offset,
            letter.error,
        )
        return letter

    async def _watch_progress(self) -> None:
        """Exit, for `pantau streams` to start a fresh worker, when an assigned input partition
        has records waiting and its committed offset has not moved for `stall_after_s`.

        faust's fetcher can stop serving one partition after a restart under load, without an
        error; a new worker resumes from the committed offsets and loses nothing.
        """
        assigned = {
            (tp.topic, tp.partition)
            for tp in self.app.consumer.assignment()
            if tp.topic in self._input_topics or tp.topic.endswith("-repartition")
        }
        if not assigned:
            return
        try:
            positions = await asyncio.get_running_loop().run_in_executor(
                None,
                kafka.group_positions,
                self.settings.kafka,
                self.settings.streams.app_id,
                sorted({topic for topic, _ in assigned}),
            )
        except KafkaError as exc:
            # The broker is away (a restart, a lost node): nothing is measured this round,
            # and the worker waits for it like its consumer does, rather than crash on it.
            log.warning("progress not measured this time: %s", exc)
            # Time without the broker is no partition's stall: measure afresh once it is back.
            self._progress.clear()
            return
        now = time.monotonic()
        stalled = []
        for tp, (done, end) in positions.items():
            seen = self._progress.get(tp)
            if tp not in assigned or done >= end or seen is None or seen[0] != done:
                self._progress[tp] = (done, now)
            elif now - seen[1] >= self.settings.streams.stall_after_s:
                stalled.append(f"{tp[0]}[{tp[1]}] at {done} of {end}")
        if stalled:
            log.error(
                "no progress for %.0f s on %s; exiting so that a fresh worker takes over",
                self.settings.streams.stall_after_s,
                ", ".join(stalled),
            )
            _exit_for_a_fresh_worker()

    async def _look_for_silence(self) -> None:
        now = time.time()
        checks: list[AlarmAction] = []
        # Between batches every state is in the cache, decoded.
        async with self._lock:
            for key, raw in list(self.state.items()):
                if raw is None:
                    continue
                state = self._states.peek(key, raw)
                if not self.engine.due(state, now):
                    continue
                if now - self._check_sent.get(key, 0.0) < _CHECK_REPEAT_S:
                    continue
                self._check_sent[key] = now
                checks.append(
                    AlarmAction(
                        id=uuid7(),
                        ts_capture=datetime.fromtimestamp(now, UTC),
                        seq=next(self._seq),
                        action="check",
                        source_kind=state.kind,
                        source_id=key,
                    )
                )
        for check in checks:
            await self.actions_topic.send(key=check.key, value=encode(check))


def _give_up(batch: Sequence[KafkaMessage], exc: Exception) -> None:
    """A batch whose handling failed (not bad input: a bug, or the broker refusing effects):
    the worker exits at once, before any of it is acknowledged, and `pantau streams` starts a
    fresh one, which takes over from the committed offsets."""
    first, last = batch[0], batch[-1]
    log.error(
        "handling %d records from %s[%d]@%d to %s[%d]@%d failed; exiting so that a fresh "
        "worker takes over from the committed offsets",
        len(batch), first.topic, first.partition, first.offset,
        last.topic, last.partition, last.offset,
        exc_info=exc,
    )  # fmt: skip
    _exit_for_a_fresh_worker()


def _exit_for_a_fresh_worker() -> None:
    logging.shutdown()
    os._exit(EXIT_STALLED)


class _States:
    """Each source's state: in the faust table as the JSON bytes that reach its changelog, and
    decoded once, cached beside the bytes it came from.

    A batch takes the states it works on out of the cache and puts them back when its effects
    are out, so a batch that fails leaves no half-changed state behind, and what waits in
    faust's producer buffer for the changelog is bytes no later change can reach. After a
    rebalance the table holds other bytes objects (recovered from the changelog), and the
    cached forms of the old ones are simply not used.
    """

    def __init__(self, table: Any) -> None:
        self._table = table
        self._cache: dict[str, tuple[bytes, State]] = {}

    def take(self, key: str) -> tuple[bytes, State] | None:
        """The stored bytes and a state of one's own to change, or None for a new source."""
        raw: bytes | None = self._table.get(key)
        hit = self._cache.pop(key, None)
        if raw is None:
            return None
        if hit is not None and hit[0] is raw:
            return hit
        return raw, load_state(raw)

    def put_back(self, key: str, raw: bytes | None, state: State, *, changed: bool) -> None:
        """Store a changed state (bytes to the table, hence the changelog); keep it decoded."""
        if changed:
            raw = dump_state(state)
            self._table[key] = raw
        if raw is not None:
            self._cache[key] = (raw, state)

    def peek(self, key: str, raw: bytes) -> State:
        """The state stored as `raw`, to read only."""
        hit = self._cache.get(key)
        if hit is not None and hit[0] is raw:
            return hit[1]
        state = load_state(raw)
        self._cache[key] = (raw, state)
        return state


@dataclass(frozen=True)
class _Input:
    """One input topic: its message class, the engine's handler, re-keying."""

    topic: str
    cls: type[Message]
    handler: Callable[..., Output]
    repartition: str | None = None


def _kind(decoded: Message) -> SourceKind:
    """The kind of state a new source gets: sensors, or cameras (heartbeats, views, dumping)."""
    if isinstance(decoded, SensorReading | PlaceSignal):
        return "sensor"
    if isinstance(decoded, AlarmAction) and decoded.source_kind == "sensor":
        return "sensor"
    return "camera"


def _message_key(_value: bytes) -> bytes:
    # Never raises: an exception here would crash the agent inside faust, and the partition
    # would stall on the same record after every restart. A record without a key is routed
    # with the empty key, and `_handle` dead-letters it (its key names no camera).
    event = faust.current_event()
    if event is None or not isinstance(event.key, bytes):
        return b""
    return event.key


def _source_id(message: Message) -> str | None:
    for name in ("sensor_id", "camera_id", "source_id"):
        value = getattr(message, name, None)
        if isinstance(value, str):
            return value
    return None


def _decoded_for(value: bytes, cls: type[Message], key: str) -> Message:
    """The record's message, which must be keyed by its own source: a source's state lives in
    the partition of its key, so a record keyed otherwise would land on another's state."""
    decoded = decode_as(value, cls)
    source = _source_id(decoded)
    if source is not None and source != key:
        raise BadInput(
            f"record key {key!r} does not match the {decoded.kind}'s source {source!r} "
            "(producers key every record by its source id)"
        )
    return decoded
