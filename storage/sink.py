"""The sink: Kafka → batches per table → binary COPY → PostgreSQL → then Kafka offsets.

Order of a flush, and why:
1. COPY each table's rows into a temporary staging table and `INSERT ... SELECT ... ON
   CONFLICT DO NOTHING` into the real one, in one transaction; natural keys make a
   re-delivered record a no-op.
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
import threading
import time
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

import psycopg
from kafka import ConsumerRebalanceListener, KafkaConsumer, KafkaProducer
from kafka.consumer.fetcher import ConsumerRecord
from psycopg import sql

from pantau import kafka
from pantau.codec import DecodeError, decode
from pantau.failpoints import Failpoints
from pantau.ids import SeqCounter, utcnow, uuid7
from pantau.kafka import DeadLetters, commit_records
from pantau.messages import DeadLetter
from pantau.settings import Settings
from pantau.topics import Topics, is_dead_letter_topic
from storage.rows import DEAD_LETTERS, Row, Table, dead_letter_rows, rows_for

log = logging.getLogger(__name__)

_STATS_EVERY_S = 30.0
# Which message kind each data topic carries; anything else there is a dead letter.
_KIND_BY_TOPIC_SUFFIX = {
    "sensors.readings.v1": "sensor_reading",
    "detections.v1": "detections",
    "cameras.health.v1": "camera_heartbeat",
}


class DatabaseUnavailable(RuntimeError):
    pass


@dataclass
class PendingRow:
    table: Table
    row: Row
    record: ConsumerRecord


@dataclass
class WriteResult:
    inserted: dict[str, int]
    offered: dict[str, int]
    rejected: list[tuple[PendingRow, str]]


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

    def write(self, rows: Mapping[Table, list[PendingRow]]) -> WriteResult:
        offered = {t.name: len(items) for t, items in rows.items()}
        try:
            conn = self._connection()
            try:
                with conn.transaction():
                    inserted = {
                        t.name: self._copy_insert(conn, t, items) for t, items in rows.items()
                    }
                return WriteResult(inserted, offered, [])
            except (psycopg.errors.DataError, psycopg.errors.IntegrityError) as exc:
                log.warning("a batch row was refused (%s); writing row by row to isolate it", exc)
                return self._write_isolating(conn, rows, offered)
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            self.close()
            raise DatabaseUnavailable(str(exc).strip().splitlines()[0]) from exc

    @staticmethod
    def _copy_insert(conn: psycopg.Connection, table: Table, items: list[PendingRow]) -> int:
        stage = sql.Identifier(f"stage_{table.name}")
        target = sql.Identifier(table.name)
        columns = sql.SQL(", ").join(sql.Identifier(c) for c in table.columns)
        conn.execute(
            sql.SQL(
                "CREATE TEMP TABLE IF NOT EXISTS {} (LIKE {} INCLUDING DEFAULTS) "
                "ON COMMIT DELETE ROWS"
            ).format(stage, target)
        )
        with conn.cursor() as cur:
            copy_sql = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(stage, columns)
            with cur.copy(copy_sql) as copy:
                copy.set_types(list(table.types))
                for item in items:
                    copy.write_row(item.row)
            cur.execute(
                sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {} ON CONFLICT DO NOTHING").format(
                    target, columns, columns, stage
                )
            )
            return max(cur.rowcount, 0)

    @staticmethod
    def _write_isolating(
        conn: psycopg.Connection, rows: Mapping[Table, list[PendingRow]], offered: dict[str, int]
    ) -> WriteResult:
        inserted: dict[str, int] = defaultdict(int)
        rejected: list[tuple[PendingRow, str]] = []
        with conn.transaction():
            for table, items in rows.items():
                statement = sql.SQL(
                    "INSERT INTO {} ({}) VALUES ({}) ON CONFLICT DO NOTHING"
                ).format(
                    sql.Identifier(table.name),
                    sql.SQL(", ").join(sql.Identifier(c) for c in table.columns),
                    sql.SQL(", ").join(sql.Placeholder() * len(table.columns)),
                )
                for item in items:
                    try:
                        with conn.transaction():
                            cursor = conn.execute(statement, item.row)
                            inserted[table.name] += max(cursor.rowcount, 0)
                    except (psycopg.errors.DataError, psycopg.errors.IntegrityError) as exc:
                        reason = exc.diag.message_primary or str(exc)
                        rejected.append((item, f"{table.name}: {reason}"))
        return WriteResult(dict(inserted), offered, rejected)


@dataclass
class SinkStats:
    records: int = 0
    batches: int = 0
    dead_letters: int = 0
    inserted: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    duplicates: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    latencies_s: list[float] = field(default_factory=list)
    db_failures: int = 0


class _Batch:
    def __init__(self) -> None:
        self.records: list[ConsumerRecord] = []
        self.rows: dict[Table, list[PendingRow]] = defaultdict(list)
        self.captured: list[datetime] = []
        self.started: float | None = None

    def __len__(self) -> int:
        return len(self.records)

    @property
    def row_count(self) -> int:
        return sum(len(items) for items in self.rows.values())


class Sink:
    def __init__(
        self,
        settings: Settings,
        consumer: KafkaConsumer,
        producer: KafkaProducer,
        writer: PostgresWriter,
        *,
        failpoints: Failpoints | None = None,
    ) -> None:
        self._settings = settings.sink
        self._topics = Topics(settings.kafka)
        self._consumer = consumer
        self._producer = producer
        self._writer = writer
        self._dead_letters = DeadLetters(producer, stage="sink")
        self._letter_seq = SeqCounter()
        self._failpoints = failpoints or Failpoints()
        self._batch = _Batch()
        self._stop = threading.Event()
        self.stats = SinkStats()

    # ------------------------------------------------------------------ loop

    def run(self, stop: threading.Event, *, idle_exit_s: float | None = None) -> SinkStats:
        self._stop = stop
        last_report = time.monotonic()
        last_record = time.monotonic()
        flush_every = self._settings.flush_interval_s
        while not stop.is_set():
            wait_s = flush_every
            if self._batch.started is not None:
                wait_s = max(0.0, self._batch.started + flush_every - time.monotonic())
            room = max(1, self._settings.batch_max_rows - self._batch.row_count)
            polled = self._consumer.poll(timeout_ms=int(wait_s * 1000), max_records=room)
            for records in polled.values():
                for record in records:
                    self._add(record)
                    last_record = time.monotonic()
            if self._due():
                self.flush()
            if time.monotonic() - last_report >= _STATS_EVERY_S:
                last_report = time.monotonic()
                self._log_stats()
            if not self._consumer.assignment():
                # Still joining the group (after a crash the old member has to time out first):
                # that is not idleness.
                last_record = time.monotonic()
            idle_s = time.monotonic() - last_record
            if idle_exit_s is not None and not len(self._batch) and idle_s >= idle_exit_s:
                break
        if len(self._batch):
            self.flush()
        self._log_stats()
        return self.stats

    def close(self) -> None:
        """Leave the consumer group at once and release the database connection."""
        self._producer.flush(timeout=30)
        self._producer.close(timeout=10)
        self._consumer.close(autocommit=False)
        self._writer.close()

    def _due(self) -> bool:
        if not len(self._batch) or self._batch.started is None:
            return False
        if self._batch.row_count >= self._settings.batch_max_rows:
            return True
        return time.monotonic() - self._batch.started >= self._settings.flush_interval_s

    # ------------------------------------------------------------------ records

    def _add(self, record: ConsumerRecord) -> None:
        batch = self._batch
        if batch.started is None:
            batch.started = time.monotonic()
        batch.records.append(record)
        self.stats.records += 1
        try:
            message = decode(record.value or b"")
            expected = _expected_kind(record.topic)
            if expected is not None and message.kind != expected:
                raise DecodeError(f"expected {expected} on {record.topic}, got {message.kind}")
            if expected is None and not isinstance(message, DeadLetter):
                raise DecodeError(f"expected dead_letter on {record.topic}, got {message.kind}")
            table, rows = rows_for(message)
        except DecodeError as exc:
            self._reject_record(record, str(exc))
            return
        for row in rows:
            batch.rows[table].append(PendingRow(table, row, record))
        batch.captured.append(message.ts_capture)

    def _reject_record(self, record: ConsumerRecord, reason: str) -> None:
        self.stats.dead_letters += 1
        if is_dead_letter_topic(record.topic):
            # A broken dead letter has no further place to go: keep it in the table, whole.
            letter = self._letter(record, reason)
            for row in dead_letter_rows(letter):
                self._batch.rows[DEAD_LETTERS].append(PendingRow(DEAD_LETTERS, row, record))
            return
        self._dead_letters.send(
            self._topics.dead_letters(record.topic),
            original=record.value or b"",
            error=reason,
            source_kind="kafka",
            source_topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            source_key=record.key.decode(errors="replace") if record.key else None,
        )

    def _letter(self, record: ConsumerRecord, reason: str) -> DeadLetter:
        return DeadLetter(
            id=uuid7(),
            ts_capture=utcnow(),
            seq=next(self._letter_seq),
            stage="sink",
            source_kind="kafka",
            source_topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            source_key=record.key.decode(errors="replace") if record.key else None,
            error=reason,
            original=record.value or b"",
        )

    # ------------------------------------------------------------------ flush

    def flush(self) -> bool:
        """Store the batch, then commit its offsets; False if stopped before it was stored."""
        batch = self._batch
        if not len(batch):
            return True
        result = self._write_with_retry(batch)
        if result is None:
            log.warning(
                "stopping with %d records not stored; they stay uncommitted and will be re-read",
                len(batch),
            )
            return False
        self._failpoints.hit("sink.after_db_commit")
        for item, reason in result.rejected:
            self._reject_record(item.record, reason)
        # Dead letters must be durable before the offsets that produced them are committed.
        self._producer.flush()
        self._failpoints.hit("sink.before_offset_commit")
        commit_records(self._consumer, batch.records)

        now = utcnow()
        self.stats.batches += 1
        for name, count in result.inserted.items():
            self.stats.inserted[name] += count
            self.stats.duplicates[name] += result.offered.get(name, 0) - count
        self.stats.latencies_s.extend((now - t).total_seconds() for t in batch.captured)
        del self.stats.latencies_s[:-10_000]
        self._batch = _Batch()
        return True

    def _write_with_retry(self, batch: _Batch) -> WriteResult | None:
        delay = self._settings.retry_initial_s
        paused = False
        while True:
            try:
                result = self._writer.write(batch.rows)
            except DatabaseUnavailable as exc:
                self.stats.db_failures += 1
                if not paused:
                    # Stop fetching, keep the group membership: Kafka holds the data meanwhile.
                    self._consumer.pause(*self._consumer.assignment())
                    paused = True
                log.error("database unavailable (%s); retrying in %.1f s", exc, delay)
                if self._sleep_polling(delay):
                    return None
                delay = min(delay * 2, self._settings.retry_max_s)
                continue
            if paused:
                self._consumer.resume(*self._consumer.paused())
                log.info("database is back; resumed consuming")
            return result

    def _sleep_polling(self, seconds: float) -> bool:
        """Wait, polling the (paused) consumer so the group keeps us; True if stopping."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self._stop.is_set():
                return True
            # Re-pause every time: a rebalance during the wait may have assigned new partitions.
            self._consumer.pause(*self._consumer.assignment())
            self._consumer.poll(timeout_ms=200)
        return self._stop.is_set()

    def _log_stats(self) -> None:
        if not self.stats.records:
            return
        latencies = sorted(self.stats.latencies_s)
        p50 = latencies[len(latencies) // 2] if latencies else float("nan")
        p95 = latencies[int(len(latencies) * 0.95)] if latencies else float("nan")
        inserted = ", ".join(f"{k} {v}" for k, v in sorted(self.stats.inserted.items()))
        log.info(
            "sink: %d records in %d batches; inserted %s; %d dead letters; "
            "capture→stored p50 %.2f s p95 %.2f s",
            self.stats.records,
            self.stats.batches,
            inserted or "nothing",
            self.stats.dead_letters,
            p50,
            p95,
        )


def _expected_kind(topic: str) -> str | None:
    if is_dead_letter_topic(topic):
        return None
    for suffix, kind in _KIND_BY_TOPIC_SUFFIX.items():
        if topic.endswith(suffix):
            return kind
    return None


class _FlushOnRevoke(ConsumerRebalanceListener):  # type: ignore[misc]
    """Store what is buffered before partitions move to another sink process."""

    def __init__(self) -> None:
        self.sink: Sink | None = None

    def on_partitions_revoked(self, revoked: object) -> None:
        if self.sink is not None and not self.sink.flush():
            raise RuntimeError("could not store buffered records before a rebalance")

    def on_partitions_assigned(self, assigned: object) -> None:
        return None


def sink_topics(topics: Topics) -> list[str]:
    data = [topics.readings, topics.detections, topics.camera_health]
    return data + [topics.dead_letters(t) for t in topics.data_topics()]


def build(settings: Settings) -> Sink:
    topics = Topics(settings.kafka)
    kafka.wait_until_ready(settings.kafka)
    kafka.ensure_topics(settings.kafka, topics.specs())
    listener = _FlushOnRevoke()
    consumer = kafka.consumer(
        settings.kafka,
        settings.sink.group_id,
        sink_topics(topics),
        "sink",
        listener=listener,
        max_poll_records=settings.sink.batch_max_rows,
    )
    producer = kafka.producer(settings.kafka, "sink")
    writer = PostgresWriter(settings.postgres.connect_kwargs("writer"))
    sink = Sink(
        settings, consumer, producer, writer, failpoints=Failpoints(settings.debug.failpoints)
    )
    listener.sink = sink
    return sink
