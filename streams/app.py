"""The stream processor: a faust app that turns readings, heartbeats and dumping events into
reading windows and alarms.

Data flow (every input keyed by its source id):

    sensors.readings.v1 ─────────────┐
    cameras.health.v1 ─► repartition ┼─► source state (faust table) ─► alerts.v1
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
"""

from __future__ import annotations

import asyncio
import copy
import logging
import os
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import faust
from faust.types import EventT

from pantau import kafka
from pantau.codec import DecodeError, decode_as, encode
from pantau.failpoints import Failpoints
from pantau.ids import SeqCounter, uuid7
from pantau.messages import (
    AlarmAction,
    CameraHeartbeat,
    DeadLetter,
    DumpingEvent,
    Message,
    SensorReading,
)
from pantau.settings import Settings
from pantau.topics import Topics
from streams.engine import (
    ActionRejected,
    Engine,
    Output,
    State,
    is_replay,
    mark_applied,
    new_state,
)

log = logging.getLogger(__name__)

STAGE = "streams"
# Readings are handled in batches: one table write per source per batch instead of per reading.
_BATCH = 2000
_BATCH_WITHIN_S = 0.05
# A silent source is checked at most this often while its check is on its way.
_CHECK_REPEAT_S = 5.0
_WATCH_EVERY_S = 10.0
# The worker's exit code when it gave up on a stalled partition: `pantau streams` restarts it.
EXIT_STALLED = 75
# Which worker this is under `pantau streams` (1, 2, ...).
RUN_ENV = "PANTAU_STREAMS_RUN"


def _broker_url(bootstrap: str) -> str:
    return ";".join(f"kafka://{server.strip()}" for server in bootstrap.split(","))


class StreamsApp:
    """Wires the faust app, its topics and table to the engine."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.engine = Engine(settings)
        self.topics = Topics(settings.kafka)
        partitions = settings.kafka.partitions.readings
        streams = settings.streams
        self.app = faust.App(
            streams.app_id,
            broker=_broker_url(settings.kafka.bootstrap_servers),
            datadir=str(streams.data_dir),
            store="memory://",
            processing_guarantee="at_least_once",
            topic_partitions=partitions,
            topic_replication_factor=1,
            key_serializer="raw",
            value_serializer="raw",
            broker_commit_interval=1.0,
            # A worker killed outright is replaced within seconds, not faust's default minute.
            broker_session_timeout=10.0,
            broker_heartbeat_interval=2.0,
            broker_commit_every=10_000,
            consumer_auto_offset_reset="earliest",
            web_enabled=False,
            table_standby_replicas=0,
        )
        t = self.topics
        self.actions_topic = self.app.topic(t.alarm_actions, internal=False)
        self.alerts_topic = self.app.topic(t.alerts, internal=False)
        self.windows_topic = self.app.topic(t.reading_windows, internal=False)
        engine = self.engine
        # Camera inputs arrive partitioned like the cameras; `repartition` re-keys them onto the
        # state table's partitions.
        self.inputs = (
            _Input(t.readings, SensorReading, engine.on_reading, _BATCH),
            _Input(t.alarm_actions, AlarmAction, engine.on_action, 100),
            _Input(t.camera_health, CameraHeartbeat, engine.on_heartbeat, 100, "cameras-by-id"),
            _Input(t.dumping_events, DumpingEvent, engine.on_dumping, 100, "dumping-by-camera"),
        )
        self.state = self.app.Table(
            "source-state",
            default=None,
            partitions=partitions,
            schema=faust.Schema(key_serializer="raw", value_serializer="json"),
            # Partition by key like every producer does, so timers may write too.
            use_partitioner=True,
        )
        self._seq = SeqCounter()
        self._check_sent: dict[str, float] = {}
        self._input_topics = {t.readings, t.alarm_actions}
        self._progress: dict[tuple[str, int], tuple[int, float]] = {}
        self._stall = Failpoints(settings.debug.failpoints).armed("streams.stall") and (
            os.environ.get(RUN_ENV, "1") == "1"
        )
        # Agents interleave at every await; a source's state must not be written by one
        # agent (with its offsets) while another's effects on it are still unacknowledged.
        self._lock = asyncio.Lock()
        self._register()

    # ------------------------------------------------------------------ wiring

    def _register(self) -> None:
        for source in self.inputs:
            self._agent(source)

        @self.app.timer(self.settings.streams.check_interval_s)  # type: ignore[untyped-decorator]
        async def look_for_silence() -> None:
            await self._look_for_silence()

        @self.app.timer(_WATCH_EVERY_S)  # type: ignore[untyped-decorator]
        async def watch_progress() -> None:
            await self._watch_progress()

    def _agent(self, source: _Input) -> None:
        async def agent(stream: Any) -> AsyncIterator[None]:
            if source.repartition is not None:
                stream = stream.group_by(_message_key, name=source.repartition)
            async for events in stream.take_events(source.batch, within=_BATCH_WITHIN_S):
                if self._stall and source.cls is SensorReading:
                    # Recovery tests: a first worker that stops consuming readings, silently.
                    log.critical("failpoint streams.stall reached: no longer consuming readings")
                    await asyncio.Event().wait()
                async with self._lock:
                    await self._handle(events, source)
                yield None

        self.app.agent(self.app.topic(source.topic), name=source.cls.KIND)(agent)

    # ------------------------------------------------------------------ handling

    async def _handle(self, events: list[EventT[bytes]], source: _Input) -> None:
        touched: dict[str, State] = {}
        out = Output()
        letters: list[tuple[str, DeadLetter]] = []
        for event in events:
            message = event.message
            raw_key = message.key
            key = raw_key.decode() if isinstance(raw_key, bytes) else str(raw_key or "")
            try:
                decoded = decode_as(event.value, source.cls)
            except DecodeError as exc:
                letters.append((message.topic, self._letter(event, key, str(exc))))
                continue
            state = touched.get(key)
            if state is None:
                stored = self.state.get(key)
                # A private copy: the stored object may still be waiting in the producer to be
                # serialised into the changelog, and must not show this batch's changes early.
                state = copy.deepcopy(stored) if stored else new_state(_kind(decoded), key)
            if is_replay(state, message.topic, message.offset):
                # Applied before a crash, and its effects were delivered before that state
                # was written (see below): nothing to do.
                continue
            try:
                result = source.handler(state, decoded, ts_rule=datetime.now(UTC))
            except ActionRejected as exc:
                letters.append((message.topic, self._letter(event, key, str(exc))))
                result = Output()
            mark_applied(state, message.topic, message.offset)
            touched[key] = state
            out.alerts.extend(result.alerts)
            out.windows.extend(result.windows)
        # Effects first, state after: the state (with its applied offsets) reaches the
        # changelog only once the broker has every alert, window and dead letter it led to. A
        # crash in between replays the inputs onto the older state, which produces the same
        # alarm ids and versions again, and downstream keeps one copy of each.
        sent = [
            await self.alerts_topic.send(key=alert.key, value=encode(alert)) for alert in out.alerts
        ]
        sent += [
            await self.windows_topic.send(key=window.key, value=encode(window))
            for window in out.windows
        ]
        for topic, letter in letters:
            sent.append(
                await self.app.topic(self.topics.dead_letters(self._public(topic))).send(
                    key=letter.source_key.encode() if letter.source_key else None,
                    value=encode(letter),
                )
            )
        if sent:
            await asyncio.gather(*sent)
        for key, state in touched.items():
            self.state[key] = state
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

    def _letter(self, event: EventT[bytes], key: str, error: str) -> DeadLetter:
        message = event.message
        log.warning(
            "dead letter from %s[%d]@%d: %s",
            message.topic,
            message.partition,
            message.offset,
            error,
        )
        return DeadLetter(
            id=uuid7(),
            ts_capture=datetime.now(UTC),
            seq=next(self._seq),
            stage=STAGE,
            source_kind="kafka",
            source_topic=self._public(message.topic),
            partition=message.partition,
            offset=message.offset,
            source_key=key or None,
            error=error,
            original=bytes(event.value) if event.value is not None else b"",
        )

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
        positions = await asyncio.get_running_loop().run_in_executor(
            None,
            kafka.group_positions,
            self.settings.kafka,
            self.settings.streams.app_id,
            sorted({topic for topic, _ in assigned}),
        )
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
            logging.shutdown()
            os._exit(EXIT_STALLED)

    async def _look_for_silence(self) -> None:
        now = time.time()
        for key, state in list(self.state.items()):
            if state is None or not self.engine.due(state, now):
                continue
            if now - self._check_sent.get(key, 0.0) < _CHECK_REPEAT_S:
                continue
            self._check_sent[key] = now
            check = AlarmAction(
                id=uuid7(),
                ts_capture=datetime.fromtimestamp(now, UTC),
                seq=next(self._seq),
                action="check",
                source_kind="camera" if state["kind"] == "camera" else "sensor",
                source_id=key,
            )
            await self.actions_topic.send(key=check.key, value=encode(check))


@dataclass(frozen=True)
class _Input:
    """One input topic: its message class, the engine's handler, batch size, re-keying."""

    topic: str
    cls: type[Message]
    handler: Callable[..., Output]
    batch: int
    repartition: str | None = None


def _kind(decoded: Message) -> str:
    """The kind of state a new source gets: sensors, or cameras (heartbeats, dumping)."""
    if isinstance(decoded, SensorReading):
        return "sensor"
    if isinstance(decoded, AlarmAction) and decoded.source_kind == "sensor":
        return "sensor"
    return "camera"


def _message_key(_value: bytes) -> bytes:
    event = faust.current_event()
    if event is None or event.key is None:
        raise ValueError("a camera message without a key cannot be routed to its camera")
    key: bytes = event.key
    return key
