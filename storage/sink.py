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

When the database is down or failing, the sink pauses its partitions, keeps its place in the
consumer group, retries with back-off and commits nothing until the batch is stored. A row
that violates a constraint goes to the dead-letter topic with the reason instead of blocking
its partition.
"""

from __future__ import annotations

import logging
import os
import queue
import socket
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta

import psycopg
from kafka import KafkaProducer
from psycopg import sql

from pantau import kafka
from pantau.codec import DecodeError, decode, decode_as
from pantau.consumers import BatchConsumer, Record, open_consumer
from pantau.failpoints import Failpoints
from pantau.ids import SeqCounter, utcnow, uuid7
from pantau.kafka import DeadLetters
from pantau.messages import BY_KIND, DeadLetter, Message
from pantau.settings import Settings
from pantau.topics import (
    ALERTS,
    CAMERA_HEALTH,
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
    dead_letter_rows,
    rows_for,
)
from storage.rows import NOTIFICATIONS as NOTIFICATIONS_TABLE

log = logging.getLogger(__name__)

COMPONENT = "sink"
# The writer has been busy this long with one batch: pause fetching until it is done.
_PAUSE_AFTER_S = 2.0
# Which message kind each topic the sink reads carries; anything else there is a dead letter.
_KIND_BY_TOPIC = {
    READINGS: "sensor_reading",
    READING_WINDOWS: "sensor_window",
    DETECTIONS: "detections",
    CAMERA_HEALTH: "camera_heartbeat",
    DUMPING_EVENTS: "dumping_event",
    ALERTS: "alert",
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
    pass


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
        offered = {t.name: len(items) for t, items in rows.items()}
        try:
            conn = self._connection()
            try:
                with conn.transaction():
                    inserted = {
                        t.name: self._write_table(conn, t, items) for t, items in rows.items()
                    }
                    _note_first_notifications(conn, rows)
                return WriteResult(inserted, offered, [])
            except (psycopg.errors.DataError, psycopg.errors.IntegrityError) as exc:
                log.warning("a batch row was refused (%s); writing row by row to isolate it", exc)
                return self._write_isolating(conn, rows, offered)
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            self.close()
            raise DatabaseUnavailable(str(exc).strip().splitlines()[0]) from exc

    def _write_table(self, conn: psycopg.Connection, table: Table, items: list[Row]) -> int:
        if table.upsert is None:
            try:
                with conn.transaction():
                    self._copy(conn, sql.Identifier(table.name), table, items)
                return len(items)
            except psycopg.errors.UniqueViolation:
                # Some rows are there already (a batch re-read after a crash): skip those.
                pass
        return self._staged_insert(conn, table, items)

    @staticmethod
    def _copy(
        conn: psycopg.Connection, target: sql.Identifier, table: Table, items: list[Row]
    ) -> None:
        columns = sql.SQL(", ").join(sql.Identifier(c) for c in table.columns)
        statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(target, columns)
        with conn.cursor() as cur, cur.copy(statement) as copy:
            copy.set_types(list(table.types))
            for row in items:
                copy.write_row(row)

    def _staged_insert(self, conn: psycopg.Connection, table: Table, items: list[Row]) -> int:
        stage = sql.Identifier(f"stage_{table.name}")
        target = sql.Identifier(table.name)
        conn.execute(
            sql.SQL(
                "CREATE TEMP TABLE IF NOT EXISTS {} (LIKE {} INCLUDING DEFAULTS) "
                "ON COMMIT DELETE ROWS"
            ).format(stage, target)
        )
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

    @staticmethod
    def _write_isolating(
        conn: psycopg.Connection, rows: Mapping[Table, list[Row]], offered: dict[str, int]
    ) -> WriteResult:
        inserted: dict[str, int] = defaultdict(int)
        rejected: list[tuple[Table, int, str]] = []
        with conn.transaction():
            for table, items in rows.items():
                statement = sql.SQL("INSERT INTO {} AS t ({}) VALUES ({}) {}").format(
                    sql.Identifier(table.name),
                    sql.SQL(", ").join(sql.Identifier(c) for c in table.columns),
                    sql.SQL(", ").join(sql.Placeholder() * len(table.columns)),
                    _on_conflict(table),
                )
                for index, row in enumerate(items):
                    try:
                        with conn.transaction():
                            cursor = conn.execute(statement, row)
                            inserted[table.name] += max(cursor.rowcount, 0)
                    except (psycopg.errors.DataError, psycopg.errors.IntegrityError) as exc:
                        reason = exc.diag.message_primary or str(exc)
                        rejected.append((table, index, f"{table.name}: {reason}"))
        return WriteResult(dict(inserted), offered, rejected)


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
        # Per table, parallel to its rows: the record each row came from (None: the sink's own).
        self.owners: dict[Table, list[Record | None]] = defaultdict(list)
        self.captured: list[float] = []
        self.row_count = 0
        self.started: float | None = None

    def __len__(self) -> int:
        return len(self.records)

    @property
    def empty(self) -> bool:
        return not self.records and not self.row_count

    def add(self, table: Table, rows: list[Row], record: Record | None) -> None:
        self.rows[table].extend(rows)
        self.owners[table].extend([record] * len(rows))
        self.row_count += len(rows)


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
        # One batch written while the next is built; the queue bound is the backpressure.
        self._to_write: queue.Queue[_Batch | None] = queue.Queue(maxsize=1)
        self._written: queue.Queue[tuple[_Batch, WriteResult | None]] = queue.Queue()
        self._writer_thread = threading.Thread(target=self._write_loop, name="sink-writer")
        self._in_flight = 0
        self._paused = False
        self._failed = False
        self._instance = f"{socket.gethostname()}-{os.getpid()}"
        self._metrics_at = time.monotonic()
        self._metrics_inserted: dict[str, int] = {}
        self.stats = SinkStats()

    # ------------------------------------------------------------------ loop

    def run(self, stop: threading.Event, *, idle_exit_s: float | None = None) -> SinkStats:
        self._stop = stop
        last_record = time.monotonic()
        flush_every = self._settings.flush_interval_s
        while not stop.is_set():
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
                break
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
                    break
                log.info("idle, but the group has %d records left to store; waiting", waiting)
                last_record = time.monotonic()
        if not self._failed:
            self.flush()
        self._stop_writer()
        self._log_stats()
        return self.stats

    def _stop_writer(self) -> None:
        if self._writer_thread.is_alive():
            self._to_write.put(None)
            self._writer_thread.join()

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
        try:
            message = self._decode(record)
            table, rows = rows_for(message, self._sampler)
        except DecodeError as exc:
            self._reject_record(record, str(exc))
            return
        batch.add(table, rows, record)
        batch.captured.append(message.ts_capture.timestamp())

    def _decode(self, record: Record) -> Message:
        value = record.value or b""
        expected = self._expected.get(record.topic)
        if expected is not None:
            return decode_as(value, expected)
        message = decode(value)
        if is_dead_letter_topic(record.topic) and not isinstance(message, DeadLetter):
            raise DecodeError(f"expected dead_letter on {record.topic}, got {message.kind}")
        return message

    def _reject_record(self, record: Record, reason: str) -> None:
        self.stats.dead_letters += 1
        if is_dead_letter_topic(record.topic):
            # A broken dead letter has no further place to go: keep it in the table, whole.
            letter = self._letter(record, reason)
            self._batch.add(DEAD_LETTERS, dead_letter_rows(letter), record)
            return
        self._dead_letters.reject(record, reason)

    def _letter(self, record: Record, reason: str) -> DeadLetter:
        return DeadLetter(
            id=uuid7(),
            ts_capture=utcnow(),
            seq=next(self._letter_seq),
            stage=COMPONENT,
            source_kind="kafka",
            source_topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            source_key=record.key.decode(errors="replace") if record.key else None,
            error=reason,
            original=record.value or b"",
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
        if not self._writer_thread.is_alive():
            self._writer_thread.start()
        waited = 0.0
        while True:
            try:
                self._to_write.put(batch, timeout=0.2)
                break
            except queue.Full:
                waited += 0.2
                self._complete(block=False)
                if waited >= _PAUSE_AFTER_S:
                    # The database is slow or down: stop fetching, keep the group membership,
                    # let Kafka hold the data.
                    self._keep_alive_paused()
        self._in_flight += 1
        self._batch = _Batch()
        if self._paused:
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
        """Commit the offsets of the batches the writer has stored, in order."""
        while self._in_flight:
            try:
                batch, result = self._written.get(timeout=0.2 if block else None, block=block)
            except queue.Empty:
                if block and self._paused:
                    self._keep_alive_paused()
                if block:
                    continue
                return
            self._in_flight -= 1
            if result is None:
                self._failed = True
                log.warning(
                    "stopping with %d records not stored; they stay uncommitted and will be "
                    "re-read",
                    len(batch),
                )
                return
            self._committed(batch, result)
            block = False

    def _committed(self, batch: _Batch, result: WriteResult) -> None:
        for table, index, reason in result.rejected:
            owner = batch.owners[table][index]
            if owner is None:
                log.error("the sink's own row for %s was refused: %s", table.name, reason)
            else:
                self._reject_record(owner, reason)
        # Dead letters must be durable before the offsets that produced them are committed.
        self._producer.flush()
        self._failpoints.hit("sink.before_offset_commit")
        self._consumer.commit(batch.records)

        now = time.time()
        self.stats.batches += 1
        self.stats.batch_rows.append(batch.row_count)
        for name, count in result.inserted.items():
            self.stats.inserted[name] += count
            self.stats.duplicates[name] += result.offered.get(name, 0) - count
        self.stats.latencies_s.extend(now - t for t in batch.captured)
        del self.stats.latencies_s[:-20_000]
        del self.stats.batch_rows[:-1000]

    def _write_loop(self) -> None:
        """The writer thread: one batch at a time, retried until stored or stopped."""
        while True:
            batch = self._to_write.get()
            if batch is None:
                return
            result = self._write_with_retry(batch)
            if result is not None:
                self._failpoints.hit("sink.after_db_commit")
            self._written.put((batch, result))

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
                if self._stop.wait(delay):
                    return None
                delay = min(delay * 2, self._settings.retry_max_s)
                continue
            if failed:
                log.info("database is back; resumed consuming")
            return result

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
