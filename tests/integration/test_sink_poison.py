"""No input stops the sink: whatever lands on its topics, and whatever rows PostgreSQL refuses,
the valid data is stored exactly once, the bad is dead-lettered with its reason, and the sink
goes on. Only a database that refuses for no row's fault stops it, loudly and non-zero."""

from __future__ import annotations

import json
import random
import re
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from pantau import kafka
from pantau.codec import decode_as, encode
from pantau.messages import DeadLetter, Message
from pantau.topics import Topics
from storage.rows import ALERTS, DETECTIONS, SENSOR_READINGS, Row, Table, rows_for
from storage.sink import DatabaseRefused, PostgresWriter, sink_topics
from tests.factories import SAMPLES
from tests.integration.conftest import Pipeline, drop_database


def unique_start() -> datetime:
    # A time range no other test writes to (one in 100 million seconds).
    return datetime(2021, 1, 1, tzinfo=UTC) + timedelta(seconds=random.randrange(10**8))


def with_value(table: Table, row: Row, column: str, value: object) -> Row:
    cells = list(row)
    cells[table.columns.index(column)] = value
    return tuple(cells)


def reading_rows(sensor: str, start: datetime, count: int) -> list[Row]:
    return [
        (start + timedelta(milliseconds=i), sensor, "pm25", float(i), i, start, "gw-test")
        for i in range(count)
    ]


def detection_row(camera: str, at: datetime) -> Row:
    message = SAMPLES["detections"].model_copy(
        update={"camera_id": camera, "ts_capture": at, "frame_id": uuid.uuid4()}
    )
    return rows_for(message)[1][0]


def alert_row(alarm_id: uuid.UUID, version: int, source: str, opened: datetime) -> Row:
    message = SAMPLES["alert"].model_copy(
        update={"alarm_id": alarm_id, "version": version, "source_id": source, "opened_at": opened}
    )
    return rows_for(message)[1][0]


def writer_for(pipeline: Pipeline) -> PostgresWriter:
    return PostgresWriter(pipeline.settings.postgres.connect_kwargs("writer"))


# ------------------------------------------------------------------ PostgresWriter, for real


def test_the_writer_stores_every_row_but_those_postgresql_or_the_encoder_refuses(
    pipeline: Pipeline,
) -> None:
    start = unique_start()
    sensor, camera, source = f"aq-{pipeline.tag}", f"cam-{pipeline.tag}", f"wl-{pipeline.tag}"

    readings = reading_rows(sensor, start, 6)
    readings[2] = with_value(SENSOR_READINGS, readings[2], "sensor_id", "aq-\x00")
    readings[4] = with_value(SENSOR_READINGS, readings[4], "seq", 2**63)

    detections = [detection_row(camera, start + timedelta(seconds=i)) for i in range(8)]
    refused_detections = {
        1: ("frame_width", 2**40, "frame_width 1099511627776 does not fit integer"),
        2: ("x1", 1e39, "x1 1e+39 does not fit real"),
        3: ("track_id", 10**30, "does not fit bigint"),
        5: ("confidence", 1.5, "check constraint"),
        6: ("label", None, "not-null constraint"),
    }
    for index, (column, value, _) in refused_detections.items():
        detections[index] = with_value(DETECTIONS, detections[index], column, value)

    # Life-cycle rows: the staging path. A repeats in one batch (the newest version wins),
    # B cannot be encoded, C is alone.
    a, b, c = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    alerts = [
        alert_row(c, 1, source, start),
        with_value(ALERTS, alert_row(b, 1, source, start), "count", 2**40),
        alert_row(a, 1, source, start),
        alert_row(a, 3, source, start),
        alert_row(a, 2, source, start),
    ]

    writer = writer_for(pipeline)
    try:
        result = writer.write({SENSOR_READINGS: readings, DETECTIONS: detections, ALERTS: alerts})
    finally:
        writer.close()

    reasons = {(table.name, index): reason for table, index, reason in result.rejected}
    assert set(reasons) == {
        ("sensor_readings", 2),
        ("sensor_readings", 4),
        *(("detections", i) for i in refused_detections),
        ("alerts", 1),
    }
    assert "0x00" in reasons[("sensor_readings", 2)]
    assert "column sensor_id" in reasons[("sensor_readings", 2)]
    assert "seq 9223372036854775808 does not fit bigint" in reasons[("sensor_readings", 4)]
    for index, (_, _, expected) in refused_detections.items():
        assert expected in reasons[("detections", index)]
    assert "count 1099511627776 does not fit integer" in reasons[("alerts", 1)]
    assert all(reason.startswith(f"{table}: ") for (table, _), reason in reasons.items())

    assert result.inserted == {"sensor_readings": 4, "detections": 3, "alerts": 2}
    stored_seqs = pipeline.scalar(
        "SELECT array_agg(seq ORDER BY seq) FROM sensor_readings WHERE sensor_id = %s", sensor
    )
    assert stored_seqs == [0, 1, 3, 5]
    assert pipeline.scalar("SELECT count(*) FROM detections WHERE camera_id = %s", camera) == 3
    with pipeline.db() as conn:
        stored_alerts = dict(
            conn.execute(
                "SELECT alarm_id, version FROM alerts WHERE source_id = %s", (source,)
            ).fetchall()
        )
    assert stored_alerts == {a: 3, c: 1}


def test_a_re_delivered_batch_with_a_bad_row_stores_only_what_is_new(pipeline: Pipeline) -> None:
    start = unique_start()
    sensor = f"aq-{pipeline.tag}"
    first = reading_rows(sensor, start, 10)
    writer = writer_for(pipeline)
    try:
        assert writer.write({SENSOR_READINGS: first}).inserted == {"sensor_readings": 10}
        again = [*reading_rows(sensor, start, 12)]
        again[11] = with_value(SENSOR_READINGS, again[11], "quantity", "pm\x0025")
        result = writer.write({SENSOR_READINGS: again})
    finally:
        writer.close()
    assert [(t.name, i) for t, i, _ in result.rejected] == [("sensor_readings", 11)]
    assert result.inserted == {"sensor_readings": 1}
    assert (
        pipeline.scalar("SELECT count(*) FROM sensor_readings WHERE sensor_id = %s", sensor) == 11
    )


@contextmanager
def role_without_insert(pipeline: Pipeline) -> Iterator[str]:
    role = f"{pipeline.tag}_reader"
    with pipeline.db() as conn:
        conn.execute(f'CREATE ROLE "{role}" LOGIN')
        conn.execute(f'GRANT USAGE ON SCHEMA public TO "{role}"')
        conn.execute(f'GRANT SELECT ON sensor_readings TO "{role}"')
    try:
        yield role
    finally:
        with pipeline.db() as conn:
            conn.execute(f'REVOKE ALL ON sensor_readings FROM "{role}"')
            conn.execute(f'REVOKE ALL ON SCHEMA public FROM "{role}"')
            conn.execute(f'DROP ROLE "{role}"')


MISSING_TABLE = Table("no_such_table", SENSOR_READINGS.columns, SENSOR_READINGS.types)
MISSING_COLUMN = Table(
    "sensor_readings",
    (*SENSOR_READINGS.columns[:-1], "no_such_column"),
    SENSOR_READINGS.types,
)


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("no INSERT grant", "InsufficientPrivilege"),
        ("missing table", "UndefinedTable"),
        ("missing column", "UndefinedColumn"),
    ],
)
def test_a_refusal_that_is_no_rows_fault_raises_and_stores_nothing(
    pipeline: Pipeline, case: str, expected: str
) -> None:
    start = unique_start()
    sensor = f"aq-{pipeline.tag}"
    rows = reading_rows(sensor, start, 5)
    # A bad row among them must not turn the refusal into a dead letter.
    rows[3] = with_value(SENSOR_READINGS, rows[3], "sensor_id", "aq-\x00")
    kwargs = pipeline.settings.postgres.connect_kwargs("writer")
    batch: dict[Table, list[Row]] = {SENSOR_READINGS: rows}
    with role_without_insert(pipeline) as reader:
        if case == "no INSERT grant":
            kwargs = {**kwargs, "user": reader}
        elif case == "missing table":
            batch[MISSING_TABLE] = reading_rows(sensor, start + timedelta(hours=1), 2)
        else:
            batch = {MISSING_COLUMN: rows}
        writer = PostgresWriter(kwargs)
        try:
            with pytest.raises(DatabaseRefused, match=expected):
                writer.write(batch)
        finally:
            writer.close()
    assert pipeline.scalar("SELECT count(*) FROM sensor_readings WHERE sensor_id = %s", sensor) == 0


# ------------------------------------------------------------------ a real `pantau sink`


def with_raw(message: Message, path: tuple[str | int, ...], raw: bytes) -> bytes:
    """`message` as JSON, with the value at `path` replaced by `raw` JSON text (which need not
    be valid JSON, nor valid UTF-8)."""
    fields = json.loads(encode(message))
    node: Any = fields
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = "__RAW__"
    return json.dumps(fields, separators=(",", ":")).encode().replace(b'"__RAW__"', raw)


@dataclass
class Source:
    topic: str
    key: str
    valid: Callable[[int], Message]
    id_field: str
    nan_at: tuple[str | int, ...]
    infinity_at: tuple[str | int, ...]
    track_at: tuple[str | int, ...] | None = None


def sources(pipeline: Pipeline, start: datetime) -> list[Source]:
    topics = Topics(pipeline.settings.kafka)
    sensor, camera, place = f"aq-{pipeline.tag}", f"cam-{pipeline.tag}", f"wl-{pipeline.tag}"

    def at(n: int) -> datetime:
        return start + timedelta(seconds=n)

    def reading(n: int) -> Message:
        return SAMPLES["sensor_reading"].model_copy(
            update={"id": uuid.uuid4(), "sensor_id": sensor, "ts_capture": at(n), "seq": n}
        )

    def detections(n: int) -> Message:
        sample = SAMPLES["detections"]
        # Distinct tracks: the sink keeps a track's box at most once a second.
        boxes = (sample.boxes[0].model_copy(update={"track_id": n}), sample.boxes[1])  # type: ignore[attr-defined]
        return sample.model_copy(
            update={
                "id": uuid.uuid4(),
                "camera_id": camera,
                "frame_id": uuid.uuid4(),
                "ts_capture": at(n),
                "boxes": boxes,
            }
        )

    def heartbeat(n: int) -> Message:
        return SAMPLES["camera_heartbeat"].model_copy(
            update={"id": uuid.uuid4(), "camera_id": camera, "ts_capture": at(n), "seq": n}
        )

    def event(n: int) -> Message:
        return SAMPLES["dumping_event"].model_copy(
            update={"id": uuid.uuid4(), "event_id": uuid.uuid4(), "camera_id": camera, "seq": n}
        )

    def alert(n: int) -> Message:
        return SAMPLES["alert"].model_copy(
            update={"id": uuid.uuid4(), "alarm_id": uuid.uuid4(), "source_id": place, "seq": n}
        )

    return [
        Source(topics.readings, sensor, reading, "sensor_id", ("values", "pm25"), ("values", "pm10")),
        Source(
            topics.detections, camera, detections, "camera_id", ("inference_ms",), ("boxes", 0, "x1"),
            track_at=("boxes", 0, "track_id"),
        ),
        Source(topics.camera_health, camera, heartbeat, "camera_id", ("fps",), ("fps",)),
        Source(topics.dumping_events, camera, event, "camera_id", ("confidence",), ("box", "x1")),
        Source(topics.alerts, place, alert, "source_id", ("last_value",), ("threshold",)),
    ]  # fmt: skip


def hostile(source: Source) -> dict[str, bytes | None]:
    """Every kind of bad input a tester threw at the sink, shaped like `source`'s messages."""
    base = source.valid(0)
    payloads: dict[str, bytes | None] = {
        "nested 10,000 levels": b'{"a":' + b"[" * 10_000 + b"]" * 10_000 + b"}",
        "a 5,000-digit integer": with_raw(base, ("seq",), b"9" * 5000),
        "seq 10**30": with_raw(base, ("seq",), str(10**30).encode()),
        "seq 2**63": with_raw(base, ("seq",), str(2**63).encode()),
        "invalid UTF-8": with_raw(base, (source.id_field,), b'"x\xff\xfe"'),
        "random bytes": random.Random(source.topic).randbytes(300),
        "an empty value": b"",
        "no value at all": None,
        "NaN": with_raw(base, source.nan_at, b"NaN"),
        "Infinity": with_raw(base, source.infinity_at, b"Infinity"),
        "year 1 at +07:00": with_raw(base, ("ts_capture",), b'"0001-01-01T00:00:00+07:00"'),
    }
    if source.track_at is not None:
        payloads["track_id 10**30"] = with_raw(base, source.track_at, str(10**30).encode())
    return payloads


def stored_counts(pipeline: Pipeline) -> dict[str, int]:
    sensor, camera, place = f"aq-{pipeline.tag}", f"cam-{pipeline.tag}", f"wl-{pipeline.tag}"
    with pipeline.db() as conn:
        return {
            table: int(conn.execute(query, (key,)).fetchone()[0])  # type: ignore[index]
            for table, query, key in (
                ("sensor_readings", "SELECT count(*) FROM sensor_readings WHERE sensor_id = %s", sensor),
                ("detections", "SELECT count(*) FROM detections WHERE camera_id = %s", camera),
                ("camera_health", "SELECT count(*) FROM camera_health WHERE camera_id = %s", camera),
                ("dumping_events", "SELECT count(*) FROM dumping_events WHERE camera_id = %s", camera),
                ("alerts", "SELECT count(*) FROM alerts WHERE source_id = %s", place),
            )
        }  # fmt: skip


def test_hostile_records_on_every_topic_are_dead_lettered_and_the_sink_goes_on(
    pipeline: Pipeline,
) -> None:
    settings = pipeline.settings
    topics = Topics(settings.kafka)
    kafka.ensure_topics(settings.kafka, topics.specs())
    start = unique_start()
    producer = kafka.producer(settings.kafka, "test")
    # Per topic: where each bad record landed, and how many valid ones follow them.
    bad: dict[str, dict[tuple[int, int], tuple[str, bytes]]] = {}
    valid: dict[str, int] = {}
    for source in sources(pipeline, start):
        bad[source.topic] = {}
        for n, (what, payload) in enumerate(hostile(source).items(), start=1):
            key = source.key.encode()
            sent = producer.send(source.topic, key=key, value=payload).get(timeout=30)
            bad[source.topic][(sent.partition, sent.offset)] = (what, payload or b"")
            # A valid message right behind it, on the same partition (same key).
            behind = producer.send(source.topic, key=key, value=encode(source.valid(n)))
            assert behind.get(timeout=30).partition == sent.partition
            valid[source.topic] = n
    # A broken dead letter has nowhere further to go: the table keeps it, whole.
    broken_topic = topics.dead_letters(topics.readings)
    broken = b"\x00PNT\x01\x00\x00\xff\xffnot a dead letter"
    producer.send(broken_topic, key=b"x", value=broken).get(timeout=30)
    producer.flush()
    producer.close()
    expected_rows = {
        "sensor_readings": 2 * valid[topics.readings],
        "detections": 2 * valid[topics.detections],
        "camera_health": valid[topics.camera_health],
        "dumping_events": valid[topics.dumping_events],
        "alerts": valid[topics.alerts],
    }

    sink = pipeline.start("sink", "sink")

    def letters() -> dict[str, list[DeadLetter]]:
        return {
            topic: [
                decode_as(r.value, DeadLetter)
                for r in pipeline.read_topic(topics.dead_letters(topic))
                if r.value != broken
            ]
            for topic in bad
        }

    pipeline.wait_for(
        "every valid message stored", lambda: stored_counts(pipeline) == expected_rows, timeout=120
    )
    pipeline.wait_for(
        "every bad one on its dead-letter topic",
        lambda: all(len(found) >= len(bad[t]) for t, found in letters().items()),
        timeout=60,
    )
    found = letters()
    ids = [letter.id for topic_letters in found.values() for letter in topic_letters]
    pipeline.wait_for(
        "the dead letters in the dead_letters table",
        lambda: (
            pipeline.scalar("SELECT count(*) FROM dead_letters WHERE id = ANY(%s)", ids) == len(ids)
        ),
        timeout=60,
    )

    for topic, topic_letters in found.items():
        by_place = {(letter.partition, letter.offset): letter for letter in topic_letters}
        # Exactly one dead letter per bad record: at its place, with what it was, and why.
        assert len(topic_letters) == len(bad[topic]) == len(by_place)
        assert set(by_place) == set(bad[topic])
        for place, (what, payload) in bad[topic].items():
            letter = by_place[place]
            assert letter.original == payload, (topic, what)
            assert letter.stage == "sink" and letter.source_topic == topic
            assert letter.error.strip(), (topic, what)
            field = {"seq 10**30": "seq", "seq 2**63": "seq", "track_id 10**30": "track_id"}
            if what in field:
                assert field[what] in letter.error, (topic, what, letter.error)
    pipeline.wait_for(
        "the broken dead letter kept in the table",
        lambda: (
            pipeline.scalar(
                "SELECT count(*) FROM dead_letters WHERE source_topic = %s AND original = %s "
                "AND stage = 'sink' AND error <> ''",
                broken_topic,
                broken,
            )
            == 1
        ),
    )
    # Still exactly once, after everything was read.
    assert stored_counts(pipeline) == expected_rows
    assert sink.poll() is None, pipeline.log_of(sink)
    assert pipeline.stop(sink) == 0, pipeline.log_of(sink)
    # Everything read was committed. (The metrics topic is left out: the supervisor reports
    # the sink stopped after the sink has stopped; the next run stores that.)
    read = [t for t in sink_topics(topics) if t != topics.metrics]
    assert kafka.group_lag(settings.kafka, settings.sink.group_id, read) == 0


@contextmanager
def database_without_schema(pipeline: Pipeline) -> Iterator[str]:
    name = f"{pipeline.tag}_empty"
    with pipeline.db() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        drop_database(pipeline.settings, name)


@pytest.mark.parametrize("workers", [1, 2])
def test_a_database_refusing_for_no_rows_fault_stops_the_sink_non_zero_committing_nothing(
    pipeline: Pipeline, workers: int, tmp_path: Path
) -> None:
    settings = pipeline.settings
    topics = Topics(settings.kafka)
    kafka.ensure_topics(settings.kafka, topics.specs())
    producer = kafka.producer(settings.kafka, "test")
    start = unique_start()
    for n in range(10):
        reading = SAMPLES["sensor_reading"].model_copy(
            update={"ts_capture": start + timedelta(seconds=n), "seq": n}
        )
        kafka.publish(producer, topics.readings, reading)
    producer.flush()
    producer.close()

    status = tmp_path / "health" / "sink.json"

    def every_worker_restarting_for_it() -> bool:
        if not status.exists():
            return False
        states = json.loads(status.read_text())["workers"]
        return len(states) == workers and all(
            w["restarts"] >= 1 and "UndefinedTable" in (w["reason"] or "") for w in states
        )

    with database_without_schema(pipeline) as empty:
        sink = pipeline.start(
            "sink",
            "sink",
            "--workers",
            str(workers),
            env={
                "PANTAU__POSTGRES__DBNAME": empty,
                "PANTAU__RUNTIME__STATUS_DIR": str(status.parent),
            },
        )
        # Each worker stops non-zero; its supervisor says why and tries again after a while.
        pipeline.wait_for(
            "every sink worker stopped for the missing table", every_worker_restarting_for_it
        )
        # A worker may be failing again as the stop arrives: its code is the supervisor's.
        assert pipeline.stop(sink) in (0, 1)
    log = pipeline.log_of(sink)
    # Whichever table its first batch needed (readings, or the supervisor's own metrics).
    assert re.search(r'UndefinedTable: relation "\w+" does not exist', log), log
    assert "pantau sink: stopped" in log
    # Nothing was dead-lettered for it, and nothing committed: it is all read again.
    assert pipeline.read_topic(topics.dead_letters(topics.readings)) == []
    lag = kafka.group_lag(settings.kafka, settings.sink.group_id, [topics.readings])
    assert lag == 10
