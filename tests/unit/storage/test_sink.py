"""The sink's poison handling without Kafka or PostgreSQL: bisection, row encoding, the loop."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
import psycopg.errors
import pytest
from kafka.future import Future
from psycopg import sql
from psycopg.adapt import PyFormat, Transformer
from psycopg.postgres import types as pg_types
from psycopg.pq import Format

import storage.sink as sink_module
from pantau.codec import decode_as, encode
from pantau.ids import uuid7
from pantau.kafka import Record
from pantau.messages import DeadLetter
from pantau.poison import MAX_ORIGINAL_BYTES
from pantau.settings import Settings
from pantau.topics import Topics
from storage.rows import DETECTIONS, SENSOR_READINGS, Row, Table, rows_for
from storage.sink import (
    DatabaseRefused,
    DatabaseUnavailable,
    PostgresWriter,
    RowEncodingError,
    Sink,
    SinkFailed,
    WriteResult,
    isolate,
    sink_topics,
)
from tests.factories import SAMPLES

# ---------------------------------------------------------------------------- bisection


def refusing(
    bad: set[int], error: Callable[[], Exception]
) -> tuple[Callable[..., int], list[tuple[int, ...]]]:
    """A store that refuses any part holding one of the `bad` items, as a COPY would."""
    attempts: list[tuple[int, ...]] = []

    def store(part: Sequence[int]) -> int:
        attempts.append(tuple(part))
        if bad.intersection(part):
            raise error()
        return len(part)

    return store, attempts


@pytest.mark.parametrize(
    ("count", "bad"),
    [
        (1, set()),
        (1, {0}),
        (10, {0}),
        (10, {9}),
        (10, {3, 4, 5}),
        (10, set(range(10))),
        (100, {0, 50, 99}),
        (20_000, {12_345}),
    ],
)
def test_bisection_finds_exactly_the_rows_the_database_refuses(count: int, bad: set[int]) -> None:
    store, _ = refusing(bad, lambda: psycopg.errors.CheckViolation("violates check constraint"))
    stored, refused = isolate(list(range(count)), store)
    assert [index for index, _ in refused] == sorted(bad)
    assert stored == count - len(bad)
    assert all("CheckViolation: violates check constraint" in reason for _, reason in refused)


def test_one_bad_row_in_twenty_thousand_costs_a_few_dozen_copies_not_twenty_thousand() -> None:
    store, attempts = refusing({7_777}, lambda: psycopg.errors.NotNullViolation("null value"))
    isolate(list(range(20_000)), store)
    assert len(attempts) <= 2 * math.ceil(math.log2(20_000)) + 1
    # Every good row was stored exactly once.
    stored = [i for part in attempts if 7_777 not in part for i in part]
    assert sorted(stored) == [i for i in range(20_000) if i != 7_777]


def test_a_row_the_encoder_names_is_split_off_at_once() -> None:
    attempts: list[tuple[int, ...]] = []

    def store(part: Sequence[int]) -> int:
        attempts.append(tuple(part))
        if 600 in part:
            raise RowEncodingError(part.index(600), "cannot be encoded: OverflowError: too big")
        return len(part)

    stored, refused = isolate(list(range(1000)), store)
    assert refused == [(600, "cannot be encoded: OverflowError: too big")]
    assert stored == 999
    assert attempts == [tuple(range(1000)), tuple(range(600)), tuple(range(601, 1000))]


@pytest.mark.parametrize(
    "error",
    [
        psycopg.errors.NumericValueOutOfRange("integer out of range"),
        psycopg.errors.CharacterNotInRepertoire('invalid byte sequence for encoding "UTF8"'),
        psycopg.errors.InvalidTextRepresentation("invalid input syntax for type json"),
        psycopg.errors.NotNullViolation("null value in column"),
        psycopg.errors.CheckViolation("violates check constraint"),
        psycopg.errors.UniqueViolation("duplicate key value"),
        psycopg.DataError("a dumper's complaint"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_data_and_integrity_errors_are_the_rows_fault(error: Exception) -> None:
    def store(part: Sequence[int]) -> int:
        if 2 in part:
            raise error
        return len(part)

    stored, refused = isolate([0, 1, 2, 3], store)
    assert stored == 3
    assert [index for index, _ in refused] == [2]
    assert type(error).__name__ in refused[0][1]


@pytest.mark.parametrize(
    "error",
    [
        psycopg.errors.InsufficientPrivilege("permission denied for table sensor_readings"),
        psycopg.errors.UndefinedTable('relation "sensor_readings" does not exist'),
        psycopg.errors.UndefinedColumn('column "seq" does not exist'),
        psycopg.errors.ReadOnlySqlTransaction("cannot execute COPY in a read-only transaction"),
        psycopg.OperationalError("connection refused"),
        # Not raised while encoding a row: a bug, not bad data.
        TypeError("unsupported operand"),
        RuntimeError("surprise"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_errors_that_are_no_rows_fault_are_raised_not_dead_lettered(error: Exception) -> None:
    def store(part: Sequence[int]) -> int:
        raise error

    with pytest.raises(type(error)):
        isolate([0, 1, 2, 3], store)


# ---------------------------------------------------------------------------- row encoding


class FakeCopy:
    """Encodes rows with psycopg's own binary dumpers, as `cursor.copy` does, but keeps them."""

    def __init__(self) -> None:
        self.rows: list[Row] = []
        self._tx = Transformer()

    def set_types(self, names: list[str]) -> None:
        self._tx.set_dumper_types([pg_types[n].oid for n in names], Format.BINARY)

    def write_row(self, row: Row) -> None:
        self._tx.dump_sequence(row, [PyFormat.BINARY] * len(row))
        self.rows.append(row)


class FakeCursor:
    def __init__(self, copy: FakeCopy) -> None:
        self._copy = copy

    def __enter__(self) -> FakeCursor:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    @contextmanager
    def copy(self, _statement: object) -> Iterator[FakeCopy]:
        yield self._copy


class FakeCopyConnection:
    def __init__(self) -> None:
        self.copied = FakeCopy()

    def cursor(self) -> FakeCursor:
        return FakeCursor(self.copied)


def with_value(table: Table, row: Row, column: str, value: object) -> Row:
    cells = list(row)
    cells[table.columns.index(column)] = value
    return tuple(cells)


READING_ROW = rows_for(SAMPLES["sensor_reading"])[1][0]
DETECTION_ROW = rows_for(SAMPLES["detections"])[1][0]


@pytest.mark.parametrize(
    ("table", "row", "expected"),
    [
        # psycopg would silently store these as 0, 4464 and Infinity: the check refuses them.
        (
            DETECTIONS,
            with_value(DETECTIONS, DETECTION_ROW, "frame_width", 2**40),
            "frame_width 1099511627776 does not fit integer",
        ),
        (
            DETECTIONS,
            with_value(DETECTIONS, DETECTION_ROW, "box_index", 70_000),
            "box_index 70000 does not fit smallint",
        ),
        (
            DETECTIONS,
            with_value(DETECTIONS, DETECTION_ROW, "x1", 1e39),
            "x1 1e+39 does not fit real",
        ),
        (
            DETECTIONS,
            with_value(DETECTIONS, DETECTION_ROW, "track_id", 10**30),
            "track_id 1000000000000000000000000000000 does not fit bigint",
        ),
        (
            DETECTIONS,
            with_value(DETECTIONS, DETECTION_ROW, "track_id", 10**5000),
            "track_id an integer of 16610 bits does not fit bigint",
        ),
        (
            SENSOR_READINGS,
            with_value(SENSOR_READINGS, READING_ROW, "seq", 2**63),
            "seq 9223372036854775808 does not fit bigint",
        ),
        (
            SENSOR_READINGS,
            with_value(SENSOR_READINGS, READING_ROW, "sensor_id", "aq-\ud800"),
            "UnicodeEncodeError",
        ),
        (
            SENSOR_READINGS,
            with_value(SENSOR_READINGS, READING_ROW, "value", "41.7"),
            "TypeError",
        ),
    ],
)
def test_a_value_that_does_not_fit_its_column_names_its_row(
    table: Table, row: Row, expected: str
) -> None:
    good = [READING_ROW if table is SENSOR_READINGS else DETECTION_ROW] * 3
    conn = FakeCopyConnection()
    with pytest.raises(RowEncodingError) as caught:
        PostgresWriter._copy(conn, sql.Identifier(table.name), table, [*good, row, *good])
    assert caught.value.position == 3
    assert expected in caught.value.reason
    assert len(conn.copied.rows) == 3


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("x1", 3.4028234663852886e38),
        ("x1", -3.4028235e38),
        ("x1", math.inf),
        ("track_id", 2**63 - 1),
        ("track_id", None),
        ("box_index", 2**15 - 1),
        ("frame_width", 2**31 - 1),
    ],
)
def test_values_that_fit_their_column_pass(column: str, value: object) -> None:
    conn = FakeCopyConnection()
    row = with_value(DETECTIONS, DETECTION_ROW, column, value)
    PostgresWriter._copy(conn, sql.Identifier("detections"), DETECTIONS, [row])
    assert conn.copied.rows == [row]


# ---------------------------------------------------------------------------- the sink loop

SETTINGS = Settings.model_validate(
    {"sink": {"flush_interval_s": 0.05, "metrics_interval_s": 3600, "retry_initial_s": 0.01}}
)
TOPICS = Topics(SETTINGS.kafka)


class FakeConsumer:
    def __init__(self, records: Iterable[Record], fail_after: Exception | None = None) -> None:
        self._pending = list(records)
        self._fail_after = fail_after
        self.committed: list[Record] = []

    def poll(self, max_records: int, timeout_s: float) -> list[Record]:
        if not self._pending and self._fail_after is not None:
            raise self._fail_after
        taken, self._pending = self._pending[:max_records], self._pending[max_records:]
        if not taken:
            threading.Event().wait(min(timeout_s, 0.01))
        return taken

    def commit(self, records: Iterable[Record]) -> bool:
        self.committed.extend(records)
        return True

    def pause_all(self) -> None:
        pass

    def resume_all(self) -> None:
        pass

    def has_assignment(self) -> bool:
        return True

    def lag(self) -> int:
        return len(self._pending)

    def close(self) -> None:
        pass


class FakeProducer:
    def __init__(self, accept: bool = True) -> None:
        self.sent: list[tuple[str, bytes]] = []
        self._accept = accept

    def send(self, topic: str, key: bytes | None = None, value: bytes = b"") -> Future:
        self.sent.append((topic, value))
        future = Future()
        if self._accept:
            future.success(None)
        else:
            future.failure(RuntimeError("MessageSizeTooLargeError"))
        return future

    def flush(self, timeout: float | None = None) -> None:
        pass

    def close(self, timeout: float | None = None) -> None:
        pass

    def letters(self, topic: str) -> list[DeadLetter]:
        return [decode_as(value, DeadLetter) for t, value in self.sent if t == topic]


class FakeWriter:
    """Stores rows in memory; `refuse(table, row)` says which rows PostgreSQL would refuse."""

    def __init__(
        self,
        refuse: Callable[[Table, Row], bool] = lambda _t, _r: False,
        fail: Callable[[], Exception | None] = lambda: None,
    ) -> None:
        self.rows: dict[str, list[Row]] = {}
        self._refuse = refuse
        self._fail = fail

    def write(self, rows: Mapping[Table, list[Row]]) -> WriteResult:
        error = self._fail()
        if error is not None:
            raise error
        rejected = []
        for table, items in rows.items():
            for index, row in enumerate(items):
                if self._refuse(table, row):
                    rejected.append((table, index, f"{table.name}: refused"))
                else:
                    self.rows.setdefault(table.name, []).append(row)
        return WriteResult({t.name: len(i) for t, i in rows.items()}, {}, rejected)

    def close(self) -> None:
        pass


def run_sink(
    records: list[Record],
    *,
    writer: FakeWriter | None = None,
    consumer: FakeConsumer | None = None,
    producer: FakeProducer | None = None,
) -> tuple[Sink, FakeConsumer, FakeProducer, FakeWriter]:
    consumer = consumer or FakeConsumer(records)
    producer = producer or FakeProducer()
    writer = writer or FakeWriter()
    sink = Sink(SETTINGS, consumer, producer, writer)
    sink.run(threading.Event(), idle_exit_s=0.2)
    return sink, consumer, producer, writer


def readings(*values: bytes | None) -> list[Record]:
    return [Record(TOPICS.readings, 0, offset, b"aq-01", v) for offset, v in enumerate(values)]


def writer_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "sink-writer" and t.is_alive()]


GOOD = encode(SAMPLES["sensor_reading"])
OTHER = encode(SAMPLES["sensor_reading"].model_copy(update={"seq": 813}))


@pytest.mark.parametrize(
    "error",
    [
        RecursionError("maximum recursion depth exceeded"),
        OverflowError("int too big to convert"),
        ValueError("Exceeds the limit (4300 digits) for integer string conversion"),
        TypeError("unhashable type"),
        KeyError("values"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_whatever_decoding_raises_dead_letters_the_record_and_the_next_is_kept(
    error: Exception, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = sink_module.decode_as

    def decode(data: bytes, cls: Any) -> Any:
        if data == b"boom":
            raise error
        return real(data, cls)

    monkeypatch.setattr(sink_module, "decode_as", decode)
    records = readings(GOOD, b"boom", OTHER)
    _, consumer, producer, writer = run_sink(records)

    assert [row[4] for row in writer.rows["sensor_readings"]] == [812, 812, 813, 813]
    [letter] = producer.letters(TOPICS.dead_letters(TOPICS.readings))
    assert letter.original == b"boom" and letter.offset == 1
    assert letter.error.startswith(type(error).__name__)
    assert consumer.committed == records


def test_a_record_whose_rows_cannot_be_made_is_dead_lettered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = sink_module.all_rows_for

    def rows(message: Any, sampler: Any = None) -> Any:
        if message.seq == 813:
            raise ZeroDivisionError("division by zero")
        return real(message, sampler)

    monkeypatch.setattr(sink_module, "all_rows_for", rows)
    _, consumer, producer, writer = run_sink(readings(OTHER, GOOD))
    assert [row[4] for row in writer.rows["sensor_readings"]] == [812, 812]
    [letter] = producer.letters(TOPICS.dead_letters(TOPICS.readings))
    assert letter.error == "ZeroDivisionError: division by zero"
    assert len(consumer.committed) == 2


def test_hostile_payloads_through_the_real_decoder_never_stop_the_sink() -> None:
    hostile = [
        b'{"a":' + b"[" * 10_000 + b"]" * 10_000 + b"}",
        GOOD.replace(b'"seq":812', b'"seq":' + b"9" * 5000),
        GOOD.replace(b'"seq":812', b'"seq":' + str(10**30).encode()),
        GOOD.replace(b'"aq-alun-alun"', b'"aq-\xff\xfe"'),
        b"",
        None,
        bytes(range(256)),
    ]
    records = readings(*hostile, GOOD)
    _, consumer, producer, writer = run_sink(records)
    assert len(writer.rows["sensor_readings"]) == 2
    letters = producer.letters(TOPICS.dead_letters(TOPICS.readings))
    assert [letter.original for letter in letters] == [h or b"" for h in hostile]
    assert all(letter.error for letter in letters)
    assert consumer.committed == records


def test_a_record_whose_rows_the_database_refuses_is_dead_lettered_once() -> None:
    # Both rows of the reading with seq 813 are refused; the other reading is stored.
    writer = FakeWriter(refuse=lambda _t, row: row[4] == 813)
    records = readings(GOOD, OTHER)
    sink, consumer, producer, writer = run_sink(records, writer=writer)
    [letter] = producer.letters(TOPICS.dead_letters(TOPICS.readings))
    assert letter.original == OTHER
    assert letter.error == "sensor_readings: refused (and 1 more of its rows)"
    assert len(writer.rows["sensor_readings"]) == 2
    assert consumer.committed == records
    assert sink.stats.dead_letters == 1


def test_a_broken_dead_letter_is_kept_in_the_table_clipped() -> None:
    huge = b"\x00PNT" + b"x" * (MAX_ORIGINAL_BYTES + 1000)
    topic = TOPICS.dead_letters(TOPICS.readings)
    records = [Record(topic, 0, 5, b"aq-\xff", huge)]
    _, consumer, producer, writer = run_sink(records)
    [row] = writer.rows["dead_letters"]
    assert row[-1] == huge[:MAX_ORIGINAL_BYTES]
    assert f"[original: {len(huge)} bytes, the first {MAX_ORIGINAL_BYTES} kept]" in row[8]
    assert row[4] == topic and row[6] == 5 and row[7] == "aq-\ufffd"
    # Nowhere further to send it: the table is its last stop.
    assert producer.sent == []
    assert consumer.committed == records


@pytest.mark.parametrize(
    "error",
    [
        DatabaseRefused("PostgreSQL refused rows for sensor_readings (InsufficientPrivilege)"),
        RuntimeError("a bug in the writer"),
        OverflowError("int too big to convert"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_a_failing_writer_stops_the_sink_loudly_and_commits_nothing(error: Exception) -> None:
    writer = FakeWriter(fail=lambda: error)
    consumer = FakeConsumer(readings(GOOD, OTHER))
    with pytest.raises(SinkFailed, match=type(error).__name__):
        run_sink([], writer=writer, consumer=consumer)
    assert consumer.committed == []
    assert writer_threads() == []


def test_an_exception_in_the_main_loop_leaves_no_writer_thread_behind() -> None:
    consumer = FakeConsumer(readings(GOOD), fail_after=RuntimeError("broker said no"))
    with pytest.raises(RuntimeError, match="broker said no"):
        run_sink([], consumer=consumer)
    assert writer_threads() == []


def test_dead_letters_kafka_did_not_take_stop_the_sink_before_the_offsets() -> None:
    consumer = FakeConsumer(readings(b"not json", GOOD))
    with pytest.raises(SinkFailed, match="Kafka did not accept 1 dead letters"):
        run_sink([], consumer=consumer, producer=FakeProducer(accept=False))
    assert consumer.committed == []


def test_stopping_during_a_database_outage_commits_nothing_and_returns() -> None:
    stop = threading.Event()
    calls = []

    def unavailable() -> Exception:
        calls.append(1)
        stop.set()
        return DatabaseUnavailable("connection refused")

    consumer = FakeConsumer(readings(GOOD))
    sink = Sink(SETTINGS, consumer, FakeProducer(), FakeWriter(fail=unavailable))
    stats = sink.run(stop, idle_exit_s=None)
    assert calls and consumer.committed == [] and stats.db_failures >= 1
    assert writer_threads() == []


def test_camera_views_are_stored_and_anything_else_on_their_topic_is_a_dead_letter() -> None:
    view = SAMPLES["camera_view"].model_copy(
        update={"id": uuid7(), "condition": "covered", "brightness_spread": 2.5}
    )
    heartbeat = encode(SAMPLES["camera_heartbeat"])
    records = [
        Record(TOPICS.camera_view, 0, 0, b"tps-gedeg", encode(view)),
        Record(TOPICS.camera_view, 0, 1, b"tps-gedeg", heartbeat),
    ]
    assert TOPICS.camera_view in sink_topics(TOPICS)
    assert TOPICS.dead_letters(TOPICS.camera_view) in sink_topics(TOPICS)

    _, consumer, producer, writer = run_sink(records)

    [row] = writer.rows["camera_view_changes"]
    assert row[1:5] == (view.id, "tps-gedeg", "covered", "start")
    [letter] = producer.letters(TOPICS.dead_letters(TOPICS.camera_view))
    assert (letter.offset, letter.original) == (1, heartbeat)
    assert consumer.committed == records
