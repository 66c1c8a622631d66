"""The sink: Kafka → batches per table → binary COPY → PostgreSQL → then Kafka offsets.

Order of a flush, and why:
1. In one transaction, per table: append-only tables are COPYed straight in (the common
   case, fastest); if a row is already there — a re-delivery after a crash — that table's
   batch goes through a temporary staging table and `INSERT ... ON CONFLICT DO NOTHING`
   instead. Life-cycle tables (dumping events, alerts, notifications, windows) always go
   through staging and keep the newest version of each record.
2. Commit the transaction.
3. Make sure every dead letter raised for this batch is acknowledged by Kafka.
4. Only then commit the Kafka offsets. A crash anywhere before 4 re-reads the batch; the
   repeat inserts nothing new.

Bad input never stops the sink. A record that cannot be decoded or turned into rows, whatever
it provokes, goes to its topic's dead-letter twin with the reason. A row the database refuses
(or that cannot be encoded for it) is found by bisecting its table's part of the batch inside
the transaction, with savepoints: the rest is stored, the record it came from is
dead-lettered with the reason, and the partition goes on.

Only the world around the data stops the sink. When the database is down, the sink pauses
its partitions, keeps its place in the consumer group, retries with back-off and commits
nothing until the batch is stored. When the database refuses a batch for a reason no row
explains (a grant, a table or a column missing), or anything else goes wrong while writing,
the sink stops with a non-zero exit and commits nothing of that batch: it is read again once
the deployment is fixed.
"""

from __future__ import annotations

import logging
import math
import os
import queue
import socket
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from functools import cache, partial
from typing import TypeVar

import psycopg
from kafka import KafkaProducer
from kafka.future import Future
from psycopg import sql

from pantau import kafka
from pantau.codec import DecodeError, decode, decode_as, describe, storable_text
from pantau.failpoints import Failpoints
from pantau.ids import SeqCounter, utcnow
from pantau.kafka import BatchConsumer, DeadLetters, Record, open_consumer
from pantau.messages import BY_KIND, DeadLetter, Message
from pantau.poison import dead_letter, guard
from pantau.runtime import alive
from pantau.settings import Settings
from pantau.topics import (
    ALARM_ACTIONS,
    ALERTS,
    CAMERA_HEALTH,
    CAMERA_VIEW,
    DETECTIONS,
    DUMPING_EVENTS,
    METRICS,
    NOTIFICATIONS,
    READING_WINDOWS,
    READINGS,
    Topics,
    is_dead_letter_topic,
)
from storage.rows import ALERTS as ALERTS_TABLE
from storage.rows import (
    DEAD_LETTERS,
    PIPELINE_METRICS,
    Row,
    Table,
    TrackSampler,
    all_rows_for,
    dead_letter_rows,
)
from storage.rows import NOTIFICATIONS as NOTIFICATIONS_TABLE

log = logging.getLogger(__name__)

T = TypeVar("T")

COMPONENT = "sink"
# The writer has been busy this long with one batch: pause fetching until it is done.
_PAUSE_AFTER_S = 2.0
# How long stopping waits for a writer thread that is still busy with the database (after a
# failure elsewhere); it is a daemon thread, so it never holds the process beyond that.
_WRITER_JOIN_S = 5.0
# Which message kind each topic the sink reads carries; anything else there is a dead letter.
_KIND_BY_TOPIC = {
    READINGS: "sensor_reading",
    READING_WINDOWS: "sensor_window",
    DETECTIONS: "detections",
    CAMERA_HEALTH: "camera_heartbeat",
    CAMERA_VIEW: "camera_view",
    DUMPING_EVENTS: "dumping_event",
    ALERTS: "alert",
    ALARM_ACTIONS: "alarm_action",
    NOTIFICATIONS: "notification",
    METRICS: "metric",
}


def _note_first_notifications(conn: psycopg.Connection, rows: Mapping[Table, list[Row]]) -> None:
    """Set alerts.ts_notified from the delivery log, whichever of the two arrived first."""
    alarm_ids = {row[1] for row in rows.get(ALERTS_TABLE, ())}
    alarm_ids |= {row[2] for row in rows.get(NOTIFICATIONS_TABLE, ())}
    if not alarm_ids:
        return
    conn.execute(
        "UPDATE alerts a SET ts_notified = n.first_sent "
        "FROM (SELECT alarm_id, min(sent_at) AS first_sent FROM notifications "
        "      WHERE alarm_id = ANY(%s) AND status = 'sent' GROUP BY alarm_id) n "
        "WHERE a.alarm_id = n.alarm_id AND a.ts_notified IS DISTINCT FROM n.first_sent",
        (list(alarm_ids),),
    )


class DatabaseUnavailable(RuntimeError):
    """PostgreSQL cannot be reached (or dropped the connection): retry later, lose nothing."""


class DatabaseRefused(RuntimeError):
    """PostgreSQL refused a batch for a reason that is no row's fault (a missing grant, table
    or column): a deployment problem. Retrying cannot help and the data must not be
    dead-lettered for it."""


class SinkFailed(RuntimeError):
    """The sink stopped because something other than bad input failed; nothing of the batch
    it was storing is committed."""


class RowEncodingError(Exception):
    """One row of a COPY could not be encoded; `position` is its index in the rows copied."""

    def __init__(self, position: int, reason: str) -> None:
        super().__init__(f"row {position}: {reason}")
        self.position = position
        self.reason = reason


# What encoding one row for binary COPY raises when a value does not suit its column
# (UnicodeEncodeError is a ValueError; psycopg.DataError here comes from a dumper).
_ENCODING_ERRORS = (OverflowError, ValueError, TypeError, psycopg.DataError)

# Integer columns and their ranges.
_INTEGER_RANGES = {
    "int2": ("smallint", -(2**15), 2**15 - 1),
    "int4": ("integer", -(2**31), 2**31 - 1),
    "int8": ("bigint", -(2**63), 2**63 - 1),
}
# psycopg's binary dumpers wrap a smallint or integer that does not fit (2**40 arrives as 0)
# and send a real beyond its range as Infinity, without a word: values of these columns are
# checked before their row is encoded. A bigint that does not fit raises by itself.
_WRAPPING = frozenset({"int2", "int4", "float4"})
# The smallest double that rounds to infinity as a `real`.
_REAL_OVERFLOW = 2.0**128 - 2.0**103


def _show(value: object) -> str:
    if isinstance(value, int) and value.bit_length() > 256:
        # Printing a 5,000-digit number raises by itself (Python's digit limit).
        return f"an integer of {value.bit_length()} bits"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


@cache
def _row_check(table: Table, kinds: frozenset[str]) -> Callable[[Row], None] | None:
    """A function that raises OverflowError, naming the column, when a value of a row does not
    fit its column; only columns of the given `kinds` are checked (None: there are none)."""
    columns = [
        (index, name, kind)
        for index, (name, kind) in enumerate(zip(table.columns, table.types, strict=True))
        if kind in kinds
    ]
    integers = [(i, name, *_INTEGER_RANGES[k]) for i, name, k in columns if k in _INTEGER_RANGES]
    reals = [(i, name) for i, name, k in columns if k == "float4"]
    if not integers and not reals:
        return None

    def check(row: Row) -> None:
        for index, name, kind, low, high in integers:
            value = row[index]
            if value is not None and not low <= value <= high:
                raise OverflowError(f"{name} {_show(value)} does not fit {kind}")
        for index, name in reals:
            value = row[index]
            if value is not None and abs(value) >= _REAL_OVERFLOW and not math.isinf(value):
                raise OverflowError(f"{name} {_show(value)} does not fit real")

    return check


def _encoding_reason(table: Table, row: Row, exc: Exception) -> str:
    """Why a row could not be encoded: the column whose value does not fit, where one does not
    (psycopg's own "int too big to convert" names none), else the encoder's words."""
    check = _row_check(table, frozenset(_INTEGER_RANGES) | {"float4"})
    try:
        if check is not None:
            check(row)
    except OverflowError as found:
        exc = found
    except (TypeError, ValueError):
        pass  # a value of the wrong type: the encoder's own words say so
    return f"cannot be encoded: {describe(exc)}"


def isolate(
    items: Sequence[T], store: Callable[[Sequence[T]], int]
) -> tuple[int, list[tuple[int, str]]]:
    """`store(items)`, finding the items it refuses: (rows stored, [(index, reason)]).

    `store` stores a part of `items` or raises, having undone what it did (a savepoint). A
    part that fails with a row-level error is halved until the offending items stand alone,
    so one bad row in 20,000 costs about 2·log2(20,000) attempts, not 20,000. When the
    encoder names the row (`RowEncodingError`), the part is split around it at once. Any
    other exception is no row's fault and propagates.
    """
    stored = 0
    refused: list[tuple[int, str]] = []
    # Ranges still to store, as a stack: the first half is tried first.
    pending = [(0, len(items))]
    while pending:
        low, high = pending.pop()
        if low >= high:
            continue
        part = items if high - low == len(items) else items[low:high]
        try:
            stored += store(part)
        except RowEncodingError as exc:
            if not 0 <= exc.position < high - low:
                raise
            bad = low + exc.position
            refused.append((bad, exc.reason))
            pending += [(bad + 1, high), (low, bad)]
        except (psycopg.DataError, psycopg.IntegrityError) as exc:
            if high - low == 1:
                refused.append((low, _database_reason(exc)))
            else:
                middle = (low + high) // 2
                pending += [(middle, high), (low, middle)]
    refused.sort()
    return stored, refused


def _database_reason(exc: psycopg.Error) -> str:
    """What PostgreSQL said about a refused row, and which column when it said so."""
    diag = exc.diag
    primary = diag.message_primary or (str(exc).strip().splitlines() or [""])[0]
    column = diag.column_name
    # COPY names the column only in its context line ("COPY t, line 1, column label").
    context = diag.context or ""
    if column is None and ", column " in context:
        column = context.rsplit(", column ", 1)[1].split(":", 1)[0].strip() or None
    reason = f"refused by PostgreSQL: {type(exc).__name__}: {primary}"
    if column:
        reason += f" (column {column})"
    return storable_text(reason)


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


@dataclass
class WriteResult:
    inserted: dict[str, int]
    offered: dict[str, int]
    # (table, index of the row in that table's list, reason)
    rejected: list[tuple[Table, int, str]]


class PostgresWriter:
    """Writes a batch in one transaction. Opens its connection on first use, not before."""

    def __init__(self, conninfo: Mapping[str, str | int]) -> None:
        self._conninfo = dict(conninfo)
        self._conn: psycopg.Connection | None = None

    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(**self._conninfo)  # type: ignore[arg-type]
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def write(self, rows: Mapping[Table, list[Row]]) -> WriteResult:
        """Store every row it can; the rows refused (by PostgreSQL or the encoder) come back
        in `rejected` with the reason, and everything else is committed.

        Raises DatabaseUnavailable when PostgreSQL cannot be reached, DatabaseRefused when it
        refuses the batch for a reason no row explains; nothing is committed then.
        """
        offered = {t.name: len(items) for t, items in rows.items()}
        inserted: dict[str, int] = {}
        rejected: list[tuple[Table, int, str]] = []
        where = "the batch"
        try:
            conn = self._connection()
            with conn.transaction():
                for table, items in rows.items():
                    where = f"rows for {table.name}"
                    stored, refused = isolate(items, partial(self._store, conn, table))
                    inserted[table.name] = stored
                    rejected += [(table, index, f"{table.name}: {why}") for index, why in refused]
                where = "alerts.ts_notified"
                _note_first_notifications(conn, rows)
            return WriteResult(inserted, offered, rejected)
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            self.close()
            raise DatabaseUnavailable(_first_line(exc)) from exc
        except psycopg.Error as exc:
            raise DatabaseRefused(
                f"PostgreSQL refused {where} for a reason that is no row's fault "
                f"({type(exc).__name__}: {exc.diag.message_primary or _first_line(exc)}); "
                "is the schema up to date (`pantau migrate`) and may the writer role insert?"
            ) from exc

    def _store(self, conn: psycopg.Connection, table: Table, items: Sequence[Row]) -> int:
        """Store `items` in `table`: the rows inserted or updated. On an error, everything it
        did is rolled back to where it started, and the transaction goes on."""
        if table.upsert is None:
            try:
                with conn.transaction():
                    self._copy(conn, sql.Identifier(table.name), table, items)
                return len(items)
            except psycopg.errors.UniqueViolation:
                # Some rows are there already (a batch re-read after a crash): skip those.
                pass
        with conn.transaction():
            return self._staged_insert(conn, table, items)

    @staticmethod
    def _copy(
        conn: psycopg.Connection, target: sql.Identifier, table: Table, items: Sequence[Row]
    ) -> None:
        columns = sql.SQL(", ").join(sql.Identifier(c) for c in table.columns)
        statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(target, columns)
        check = _row_check(table, _WRAPPING)
        with conn.cursor() as cur, cur.copy(statement) as copy:
            copy.set_types(list(table.types))
            for position, row in enumerate(items):
                try:
                    if check is not None:
                        check(row)
                    copy.write_row(row)
                except _ENCODING_ERRORS as exc:
                    if isinstance(exc, psycopg.Error) and exc.diag.sqlstate is not None:
                        # The server's answer about rows already sent: not this row's.
                        raise
                    raise RowEncodingError(position, _encoding_reason(table, row, exc)) from exc

    def _staged_insert(self, conn: psycopg.Connection, table: Table, items: Sequence[Row]) -> int:
        stage = sql.Identifier(f"stage_{table.name}")
        target = sql.Identifier(table.name)
        conn.execute(
            sql.SQL(
                "CREATE TEMP TABLE IF NOT EXISTS {} (LIKE {} INCLUDING DEFAULTS) "
                "ON COMMIT DELETE ROWS"
            ).format(stage, target)
        )
        # An earlier part of this batch (isolating a bad row) may have left its rows there.
        conn.execute(sql.SQL("TRUNCATE {}").format(stage))
        self._copy(conn, stage, table, items)
        columns = sql.SQL(", ").join(sql.Identifier(c) for c in table.columns)
        if table.upsert is None:
            source = sql.SQL("SELECT {} FROM {}").format(columns, stage)
        else:
            key = sql.SQL(", ").join(sql.Identifier(c) for c in table.upsert.key)
            # DISTINCT ON: one batch may hold several states of a record; keep its newest.
            source = sql.SQL("SELECT DISTINCT ON ({}) {} FROM {} ORDER BY {}, {} DESC").format(
                key, columns, stage, key, sql.Identifier(table.upsert.version)
            )
        statement = sql.SQL("INSERT INTO {} AS t ({}) {} {}").format(
            target, columns, source, _on_conflict(table)
        )
        return max(conn.execute(statement).rowcount, 0)


def _on_conflict(table: Table) -> sql.Composable:
    """Append-only: a repeat is skipped. Life-cycle: the newer version replaces the row."""
    if table.upsert is None:
        return sql.SQL("ON CONFLICT DO NOTHING")
    key = sql.SQL(", ").join(sql.Identifier(c) for c in table.upsert.key)
    version = sql.Identifier(table.upsert.version)
    updates = sql.SQL(", ").join(
        sql.SQL("{} = EXCLUDED.{}").format(sql.Identifier(c), sql.Identifier(c))
        for c in table.columns
        if c not in table.upsert.key
    )
    return sql.SQL("ON CONFLICT ({}) DO UPDATE SET {} WHERE t.{} <= EXCLUDED.{}").format(
        key, updates, version, version
    )


@dataclass
class SinkStats:
    records: int = 0
    batches: int = 0
    dead_letters: int = 0
    inserted: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    duplicates: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    latencies_s: list[float] = field(default_factory=list)
    batch_rows: list[int] = field(default_factory=list)
    db_failures: int = 0


class _Batch:
    def __init__(self) -> None:
        self.records: list[Record] = []
        self.rows: dict[Table, list[Row]] = defaultdict(list)
        # Per table, parallel to its rows: the record each row came from (None: the sink's own,
        # metrics and the dead letters it keeps for broken dead letters).
        self.owners: dict[Table, list[Record | None]] = defaultdict(list)
        # Dead letters published for this batch's records: acknowledged before its offsets.
        self.letters: list[Future] = []
        self.captured: list[float] = []
        self.row_count = 0
        self.started: float | None = None

    def __len__(self) -> int:
        return len(self.records)

    @property
    def empty(self) -> bool:
        return not self.records and not self.row_count

    def add(self, table: Table, rows: list[Row], record: Record | None) -> None:
        if self.started is None:
            self.started = time.monotonic()
        self.rows[table].extend(rows)
        self.owners[table].extend([record] * len(rows))
        self.row_count += len(rows)


# What the writer thread reports for a batch: stored (with what was refused), not stored
# because the sink is stopping (None), or the exception that stopped it.
_Outcome = WriteResult | Exception | None


class Sink:
    def __init__(
        self,
        settings: Settings,
        consumer: BatchConsumer,
        producer: KafkaProducer,
        writer: PostgresWriter,
        *,
        failpoints: Failpoints | None = None,
        group_lag: Callable[[], int] | None = None,
    ) -> None:
        self._settings = settings.sink
        # What the whole consumer group has still to store: --idle-exit waits for zero, since
        # right after a crash a dead member may still hold partitions until its session ends.
        self._group_lag = group_lag
        self._topics = Topics(settings.kafka)
        self._consumer = consumer
        self._producer = producer
        self._writer = writer
        self._dead_letters = DeadLetters(producer, stage=COMPONENT)
        self._letter_seq = SeqCounter()
        self._failpoints = failpoints or Failpoints()
        self._sampler = TrackSampler(timedelta(seconds=self._settings.detection_sample_s))
        self._expected = {
            self._topics.name(base): BY_KIND[kind] for base, kind in _KIND_BY_TOPIC.items()
        }
        self._batch = _Batch()
        self._stop = threading.Event()
        # Tells the writer thread to end once the main loop is done with it.
        self._halt = threading.Event()
        # One batch written while the next is built; the queue bound is the backpressure.
        self._to_write: queue.Queue[_Batch] = queue.Queue(maxsize=1)
        self._written: queue.Queue[tuple[_Batch, _Outcome]] = queue.Queue()
        self._writer_thread: threading.Thread | None = None
        self._in_flight = 0
        self._paused = False
        # Stopping with a batch the database has not taken (stop requested during an outage).
        self._unstored = False
        # Why the sink must stop with an error; nothing from that batch on is committed.
        self._failure: Exception | None = None
        self._instance = f"{socket.gethostname()}-{os.getpid()}"
        self._metrics_at = time.monotonic()
        self._metrics_inserted: dict[str, int] = {}
        self.stats = SinkStats()

    @property
    def _failed(self) -> bool:
        return self._unstored or self._failure is not None

    # ------------------------------------------------------------------ loop

    def run(self, stop: threading.Event, *, idle_exit_s: float | None = None) -> SinkStats:
        """Consume and store until `stop` is set (or idle for `idle_exit_s`).

        Raises SinkFailed when something other than bad input stopped it (the database
        refusing a batch for no row's fault, the writer failing, a dead letter not
        accepted by Kafka); nothing of the failed batch is committed then.
        """
        self._stop = stop
        self._start_writer()
        try:
            self._loop(stop, idle_exit_s)
            if not self._failed:
                self.flush()
        finally:
            # Also when the loop raised: no thread may outlive the sink and hold the process.
            self._stop_writer()
            self._log_stats()
        if self._failure is not None:
            raise SinkFailed(describe(self._failure)) from self._failure
        return self.stats

    def _loop(self, stop: threading.Event, idle_exit_s: float | None) -> None:
        last_record = time.monotonic()
        flush_every = self._settings.flush_interval_s
        while not stop.is_set():
            alive()
            wait_s = flush_every
            if self._batch.started is not None:
                wait_s = max(0.0, self._batch.started + flush_every - time.monotonic())
            room = max(1, self._settings.batch_max_rows - self._batch.row_count)
            records = self._consumer.poll(room, wait_s)
            for record in records:
                self._add(record)
            if records:
                last_record = time.monotonic()
            if self._due():
                self._submit()
            self._complete(block=False)
            if self._failed:
                return
            if time.monotonic() - self._metrics_at >= self._settings.metrics_interval_s:
                self._record_metrics()
            if not self._consumer.has_assignment():
                # Still joining the group (after a crash the old member has to time out first):
                # that is not idleness.
                last_record = time.monotonic()
            idle_s = time.monotonic() - last_record
            # Metrics rows alone do not count as work pending.
            pending = self._batch.records or self._in_flight
            if idle_exit_s is not None and not pending and idle_s >= idle_exit_s:
                waiting = self._group_lag() if self._group_lag is not None else 0
                if not waiting:
                    return
                log.info("idle, but the group has %d records left to store; waiting", waiting)
                last_record = time.monotonic()

    def _start_writer(self) -> None:
        self._halt.clear()
        # A daemon, and a new one per run: a writer thread can never keep the process alive,
        # and a thread object is never started twice.
        self._writer_thread = threading.Thread(
            target=self._write_loop, name="sink-writer", daemon=True
        )
        self._writer_thread.start()

    def _writer_alive(self) -> bool:
        return self._writer_thread is not None and self._writer_thread.is_alive()

    def _stop_writer(self) -> None:
        thread = self._writer_thread
        if thread is None:
            return
        self._halt.set()
        thread.join(timeout=_WRITER_JOIN_S)
        if thread.is_alive():
            log.warning(
                "the writer is still busy with the database; leaving it (nothing it stores now "
                "is committed in Kafka, so it is read again)"
            )

    def close(self) -> None:
        """Leave the consumer group at once and release the database connection."""
        self._producer.flush(timeout=30)
        self._producer.close(timeout=10)
        self._consumer.close()
        self._writer.close()

    def _due(self) -> bool:
        if self._batch.empty or self._batch.started is None:
            return False
        if self._batch.row_count >= self._settings.batch_max_rows:
            return True
        return time.monotonic() - self._batch.started >= self._settings.flush_interval_s

    # ------------------------------------------------------------------ records

    def _add(self, record: Record) -> None:
        batch = self._batch
        if batch.started is None:
            batch.started = time.monotonic()
        batch.records.append(record)
        self.stats.records += 1
        # Whatever a record provokes while it is decoded and turned into rows (a deep nesting,
        # a huge number, a bug it finds) makes it a dead letter, never the end of the sink.
        converted = guard(
            lambda: self._convert(record),
            lambda reason: self._reject_record(record, reason, batch),
            # The topic only: formatting its partition and offset for every record costs more
            # than the guard itself; the dead letter's own log line names them.
            where=record.topic,
        )
        if converted is None:
            return
        tables, captured = converted
        for table, rows in tables:
            if rows:
                batch.add(table, rows, record)
        batch.captured.append(captured)

    def _convert(self, record: Record) -> tuple[list[tuple[Table, list[Row]]], float]:
        message = self._decode(record)
        return all_rows_for(message, self._sampler), message.ts_capture.timestamp()

    def _decode(self, record: Record) -> Message:
        value = record.value or b""
        expected = self._expected.get(record.topic)
        if expected is not None:
            return decode_as(value, expected)
        message = decode(value)
        if is_dead_letter_topic(record.topic) and not isinstance(message, DeadLetter):
            raise DecodeError(f"expected dead_letter on {record.topic}, got {message.kind}")
        return message

    def _reject_record(self, record: Record, reason: str, batch: _Batch) -> None:
        """Dead-letter `record`; `batch` is the one whose offsets must wait for it."""
        self.stats.dead_letters += 1
        if is_dead_letter_topic(record.topic):
            # A broken dead letter has no further place to go: keep it in the table, whole.
            # The sink's own row: if even that were refused, it would not be re-lettered.
            letter = self._letter(record, reason)
            log.warning(
                "broken dead letter on %s (partition %d, offset %d) kept in dead_letters: %s",
                record.topic,
                record.partition,
                record.offset,
                letter.error,
            )
            self._batch.add(DEAD_LETTERS, dead_letter_rows(letter), None)
            return
        batch.letters.append(self._dead_letters.reject(record, reason))

    def _letter(self, record: Record, reason: str) -> DeadLetter:
        return dead_letter(
            stage=COMPONENT,
            seq=next(self._letter_seq),
            source_kind="kafka",
            source_topic=record.topic,
            original=record.value or b"",
            error=reason,
            partition=record.partition,
            offset=record.offset,
            source_key=record.key.decode(errors="replace") if record.key else None,
        )

    # ------------------------------------------------------------------ flush
    #
    # Batches are written by one writer thread while this thread consumes and decodes the
    # next one: PostgreSQL and Python work at the same time instead of taking turns. The
    # writer only talks to PostgreSQL; everything Kafka (dead letters, offset commits, pause)
    # stays on this thread, in batch order.

    def _submit(self) -> None:
        """Hand the current batch to the writer (waiting while it still has one)."""
        batch = self._batch
        if batch.empty:
            return
        waited = 0.0
        while not self._failed and self._batch is batch:
            try:
                self._to_write.put(batch, timeout=0.2)
            except queue.Full:
                # Waiting for the database is not a stall: the supervisor hears from us.
                alive()
                waited += 0.2
                self._complete(block=False)
                if waited >= _PAUSE_AFTER_S:
                    # The database is slow or down: stop fetching, keep the group membership,
                    # let Kafka hold the data.
                    self._keep_alive_paused()
                # A rebalance while paused may have flushed this very batch already.
                continue
            self._in_flight += 1
            self._batch = _Batch()
        if self._paused and not self._failed:
            self._consumer.resume_all()
            self._paused = False

    def _keep_alive_paused(self) -> None:
        # Re-pause every time: a rebalance meanwhile may have assigned new partitions.
        self._consumer.pause_all()
        self._paused = True
        for record in self._consumer.poll(1, 0.0):
            # Cannot normally happen while paused; keep it rather than lose it.
            self._add(record)

    def flush(self) -> bool:
        """Store everything buffered and commit its offsets; False if the sink stopped before
        the database took it (nothing is committed then: it will be read again)."""
        self._submit()
        while self._in_flight and not self._failed:
            self._complete(block=True)
        return not self._failed

    def _complete(self, *, block: bool) -> None:
        """Commit the offsets of the batches the writer has stored, in order. After the first
        batch that was not stored, nothing more is committed: later offsets would skip it."""
        while self._in_flight and not self._failed:
            try:
                batch, outcome = self._written.get(timeout=0.2 if block else None, block=block)
            except queue.Empty:
                if not self._writer_alive():
                    if self._written.empty():
                        self._fail(RuntimeError("the writer thread ended without a word"), None)
                        return
                    # It reported just before it ended: take the report.
                    continue
                if block and self._paused:
                    self._keep_alive_paused()
                if block:
                    alive()
                    continue
                return
            self._in_flight -= 1
            if outcome is None:
                self._unstored = True
                log.warning(
                    "stopping with %d records not stored; they stay uncommitted and will be "
                    "re-read",
                    len(batch),
                )
                return
            if isinstance(outcome, Exception):
                self._fail(outcome, batch)
                return
            self._committed(batch, outcome)
            block = False

    def _fail(self, exc: Exception, batch: _Batch | None) -> None:
        self._failure = exc
        what = f"its batch of {len(batch)} records" if batch is not None else "its batches"
        log.error(
            "the sink stops: %s. Nothing of %s is committed: it is read again on the next start",
            describe(exc),
            what,
            # A surprise gets its traceback; a refusal the message explains does not need one.
            exc_info=None if isinstance(exc, DatabaseRefused | SinkFailed) else exc,
        )

    def _committed(self, batch: _Batch, result: WriteResult) -> None:
        refused: dict[int, tuple[Record, list[str]]] = {}
        refused_by_table: dict[str, int] = defaultdict(int)
        for table, index, reason in result.rejected:
            refused_by_table[table.name] += 1
            owner = batch.owners[table][index]
            if owner is None:
                log.error("the sink's own row for %s was refused: %s", table.name, reason)
            else:
                refused.setdefault(id(owner), (owner, []))[1].append(reason)
        for owner, reasons in refused.values():
            # One dead letter per record, however many of its rows were refused.
            more = f" (and {len(reasons) - 1} more of its rows)" if len(reasons) > 1 else ""
            self._reject_record(owner, reasons[0] + more, batch)
        # Dead letters must be durable before the offsets that produced them are committed.
        self._producer.flush()
        lost = [letter for letter in batch.letters if not letter.succeeded()]
        if lost:
            error = lost[0].exception
            self._fail(
                SinkFailed(
                    f"Kafka did not accept {len(lost)} dead letters "
                    f"({describe(error) if error is not None else 'no answer'})"
                ),
                batch,
            )
            return
        self._failpoints.hit("sink.before_offset_commit")
        self._consumer.commit(batch.records)

        now = time.time()
        self.stats.batches += 1
        self.stats.batch_rows.append(batch.row_count)
        for name, count in result.inserted.items():
            self.stats.inserted[name] += count
            offered = result.offered.get(name, 0) - refused_by_table[name]
            self.stats.duplicates[name] += offered - count
        self.stats.latencies_s.extend(now - t for t in batch.captured)
        del self.stats.latencies_s[:-20_000]
        del self.stats.batch_rows[:-1000]

    def _write_loop(self) -> None:
        """The writer thread: one batch at a time, retried until stored or stopped. Whatever
        it raises is reported to the main loop, which stops the sink."""
        while not self._halt.is_set():
            try:
                batch = self._to_write.get(timeout=0.2)
            except queue.Empty:
                continue
            try:
                outcome: _Outcome = self._write_with_retry(batch)
            except Exception as exc:
                self._written.put((batch, exc))
                return
            if outcome is not None:
                self._failpoints.hit("sink.after_db_commit")
            self._written.put((batch, outcome))

    def _write_with_retry(self, batch: _Batch) -> WriteResult | None:
        delay = self._settings.retry_initial_s
        failed = False
        while True:
            try:
                result = self._writer.write(batch.rows)
            except DatabaseUnavailable as exc:
                self.stats.db_failures += 1
                failed = True
                log.error("database unavailable (%s); retrying in %.1f s", exc, delay)
                if self._wait(delay):
                    return None
                delay = min(delay * 2, self._settings.retry_max_s)
                continue
            if failed:
                log.info("database is back; resumed consuming")
            return result

    def _wait(self, seconds: float) -> bool:
        """Sleep, or return True at once when the sink is stopping."""
        deadline = time.monotonic() + seconds
        while not (self._stop.is_set() or self._halt.is_set()):
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self._halt.wait(min(left, 0.2))
        return True

    # ------------------------------------------------------------------ metrics

    def _record_metrics(self) -> None:
        """Rows/s per table, batch sizes, lag and capture→stored latency, into the next
        batch (so they cost no extra transaction)."""
        now = time.monotonic()
        elapsed = max(now - self._metrics_at, 1e-6)
        self._metrics_at = now
        at = utcnow()
        values: list[tuple[str, float, str, dict[str, str]]] = []
        for name, total in self.stats.inserted.items():
            rate = (total - self._metrics_inserted.get(name, 0)) / elapsed
            values.append(("rows_per_s", rate, "rows/s", {"table": name}))
        self._metrics_inserted = dict(self.stats.inserted)
        if self.stats.batch_rows:
            recent = self.stats.batch_rows[-50:]
            values.append(("batch_rows_mean", sum(recent) / len(recent), "rows", {}))
        latencies = sorted(self.stats.latencies_s[-5000:])
        if latencies:
            values.append(("capture_to_stored_p50_s", _quantile(latencies, 0.5), "s", {}))
            values.append(("capture_to_stored_p95_s", _quantile(latencies, 0.95), "s", {}))
        try:
            values.append(("consumer_lag", float(self._consumer.lag()), "records", {}))
        except Exception as exc:
            log.debug("lag unavailable: %s", exc)
        values.append(("dead_letters", float(self.stats.dead_letters), "records", {}))
        if self._batch.started is None:
            self._batch.started = time.monotonic()
        self._batch.add(
            PIPELINE_METRICS,
            [
                (
                    at,
                    COMPONENT,
                    self._instance,
                    name,
                    value,
                    unit,
                    labels,
                )
                for name, value, unit, labels in values
            ],
            None,
        )
        self._log_stats()

    def _log_stats(self) -> None:
        if not self.stats.records:
            return
        latencies = sorted(self.stats.latencies_s)
        inserted = ", ".join(f"{k} {v}" for k, v in sorted(self.stats.inserted.items()))
        log.info(
            "sink: %d records in %d batches; inserted %s; %d dead letters; "
            "capture→stored p50 %.2f s p95 %.2f s",
            self.stats.records,
            self.stats.batches,
            inserted or "nothing",
            self.stats.dead_letters,
            _quantile(latencies, 0.5) if latencies else float("nan"),
            _quantile(latencies, 0.95) if latencies else float("nan"),
        )


def _quantile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def sink_topics(topics: Topics) -> list[str]:
    data = [topics.name(base) for base in _KIND_BY_TOPIC]
    return data + [topics.dead_letters(t) for t in topics.data_topics()]


def build(settings: Settings) -> Sink:
    topics = Topics(settings.kafka)
    kafka.wait_until_ready(settings.kafka)
    kafka.ensure_topics(settings.kafka, topics.specs())
    holder: list[Sink] = []

    def flush_before_revoke() -> None:
        # Store what is buffered before partitions move to another sink process.
        if holder and not holder[0].flush():
            raise RuntimeError("could not store buffered records before a rebalance")

    consumer = open_consumer(
        settings.kafka,
        client=settings.sink.client,
        group_id=settings.sink.group_id,
        topics=sink_topics(topics),
        name=COMPONENT,
        on_revoke=flush_before_revoke,
    )
    producer = kafka.producer(settings.kafka, COMPONENT)
    writer = PostgresWriter(settings.postgres.connect_kwargs("writer"))
    sink = Sink(
        settings,
        consumer,
        producer,
        writer,
        failpoints=Failpoints(settings.debug.failpoints),
        group_lag=lambda: kafka.group_lag(
            settings.kafka, settings.sink.group_id, sink_topics(topics)
        ),
    )
    holder.append(sink)
    return sink
