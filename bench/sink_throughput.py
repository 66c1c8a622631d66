"""Sink throughput, Kafka → PostgreSQL, with the broker and the database on this machine.

Run with the services up: `python bench/sink_throughput.py [--messages 3000000]`
(`--messages 30000000` keeps the sink busy for about five minutes).

Publishes narrow sensor readings (one value each, 500 sensors) to a throw-away topic, then
drains them into a throw-away database three ways, each from a clean table:

- the sink as configured (librdkafka, binary COPY, sink.workers) → sink_rows_per_s
- the same with one worker process                               → sink_one_worker_rows_per_s
- the same on kafka-python                                       → sink_kafka_python_rows_per_s
- a plain writer: librdkafka consumer, executemany INSERTs       → executemany_rows_per_s

and, with no Kafka at all, the same rows made beforehand and written by binary COPY from
Python, sink.batch_max_rows a transaction → raw_copy_rows_per_s, the ceiling of what the sink
does; sink_vs_raw_copy = sink_rows_per_s / raw_copy_rows_per_s.

Rates are rows stored per second between the first and the last commit, as PostgreSQL's own
`stored_at` says, so process start-up and group joins are not counted.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from confluent_kafka import Producer
from psycopg import sql
from tqdm import tqdm

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pantau import kafka  # noqa: E402
from pantau.codec import decode_as, encode  # noqa: E402
from pantau.ids import stable_id  # noqa: E402
from pantau.kafka import open_consumer  # noqa: E402
from pantau.messages import SensorReading  # noqa: E402
from pantau.settings import Settings, load_settings  # noqa: E402
from pantau.topics import Topics  # noqa: E402
from storage.rows import SENSOR_READINGS, reading_rows  # noqa: E402

CONFIG = REPO / "configs" / "pantau.yaml"
SENSORS = 500


def publish(settings: Settings, topic: str, count: int) -> None:
    producer = Producer(
        {
            "bootstrap.servers": settings.kafka.bootstrap_servers,
            **kafka.security_options(settings.kafka, "confluent"),
            "linger.ms": 50,
            "batch.size": 1_000_000,
            "queue.buffering.max.messages": 1_000_000,
            "compression.type": "lz4",
        }
    )

    def records() -> Iterator[tuple[bytes, bytes]]:
        for reading in readings(count, "publishing"):
            yield encode(reading), reading.sensor_id.encode()

    send_all(producer, topic, records())


def readings(count: int, desc: str) -> Iterator[SensorReading]:
    """The benchmark's readings: one value each, from SENSORS sensors."""
    start = datetime.now(UTC) - timedelta(minutes=30)
    now = datetime.now(UTC)
    for i in tqdm(range(count), desc=desc, unit="msg", mininterval=1, file=sys.stderr):
        sensor = f"aq-bench-{i % SENSORS:03d}"
        at = start + timedelta(microseconds=i * 50)
        yield SensorReading(
            id=stable_id(sensor, at.isoformat()),
            ts_capture=at,
            seq=i,
            sensor_id=sensor,
            sensor_type="air_quality",
            values={"pm25": float(i % 300) / 3},
            ts_ingest=now,
        )


def send_all(producer: Producer, topic: str, records: Iterable[tuple[bytes, bytes]]) -> None:
    """Produce (value, key) pairs, waiting for room whenever librdkafka's queue is full."""
    for i, (value, key) in enumerate(records):
        while True:
            try:
                producer.produce(topic, value, key)
                break
            except BufferError:
                producer.poll(0.1)
        if i % 10_000 == 0:
            producer.poll(0)
    producer.flush()


def stored_rate(
    conn: psycopg.Connection,
    expected: int,
    timeout_s: float,
    process: subprocess.Popen[bytes] | None = None,
) -> tuple[int, float]:
    """Wait for `expected` rows; (rows, rows per second between first and last commit)."""
    deadline = time.monotonic() + timeout_s
    rows = 0
    while time.monotonic() < deadline:
        if process is not None and process.poll() not in (None, 0):
            raise RuntimeError(f"the sink exited with code {process.returncode}")
        row = conn.execute("SELECT count(*) FROM sensor_readings").fetchone()
        rows = int(row[0]) if row else 0
        if rows >= expected:
            break
        time.sleep(1)
    row = conn.execute(
        "SELECT count(*), extract(epoch FROM max(stored_at) - min(stored_at)) FROM sensor_readings"
    ).fetchone()
    assert row is not None
    rows, span = int(row[0]), float(row[1] or 0)
    return rows, rows / span if span > 0 else float("nan")


def run_sink(
    env: dict[str, str], conn: psycopg.Connection, expected: int, label: str, workers: int
) -> float:
    conn.execute("TRUNCATE sensor_readings")
    command = [sys.executable, "-m", "pantau.cli", "--config", str(CONFIG), "sink"]
    command += ["--idle-exit", "5", "--workers", str(workers)]
    started = time.monotonic()
    process = subprocess.Popen(command, env=env, cwd=REPO, stdout=subprocess.DEVNULL)
    rows, rate = stored_rate(conn, expected, timeout_s=3600, process=process)
    process.wait(timeout=600)
    print(
        f"{label}: {rows} rows in {time.monotonic() - started:.0f} s wall, {rate:,.0f} rows/s",
        file=sys.stderr,
    )
    return rate


def run_executemany(settings: Settings, conn: psycopg.Connection, expected: int) -> float:
    """The plain way: a consumer, then INSERT ... VALUES row by row via executemany."""
    conn.execute("TRUNCATE sensor_readings")
    consumer = open_consumer(
        settings.kafka,
        client="confluent",
        group_id=f"bench-executemany-{uuid.uuid4().hex[:6]}",
        topics=[Topics(settings.kafka).readings],
        name="bench",
    )
    writer = psycopg.connect(**settings.postgres.connect_kwargs("owner"))  # type: ignore[arg-type]
    stored = 0
    idle_since = time.monotonic()
    while stored < expected and time.monotonic() - idle_since < 30:
        records = consumer.poll(20_000, 0.5)
        if not records:
            continue
        idle_since = time.monotonic()
        rows = [
            row for r in records for row in reading_rows(decode_as(r.value or b"", SensorReading))
        ]
        with writer.cursor() as cur:
            cur.executemany(
                "INSERT INTO sensor_readings (time, sensor_id, quantity, value, seq, ingested_at) "
                "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                rows,
            )
        writer.commit()
        consumer.commit(records)
        stored += len(rows)
    consumer.close()
    writer.close()
    count, rate = stored_rate(conn, expected, timeout_s=60)
    print(f"executemany: {count} rows, {rate:,.0f} rows/s", file=sys.stderr)
    return rate


def run_raw_copy(conn: psycopg.Connection, count: int, batch_rows: int) -> float:
    """The ceiling for the sink's own work: the same rows, made beforehand in this process,
    written by binary COPY into the same table, `batch_rows` a transaction (the sink's
    batch_max_rows). No Kafka, no decoding, no offsets."""
    conn.execute("TRUNCATE sensor_readings")
    rows = [row for reading in readings(count, "raw COPY rows") for row in reading_rows(reading)]
    table = SENSOR_READINGS
    columns = sql.SQL(", ").join(sql.Identifier(c) for c in table.columns)
    statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
        sql.Identifier(table.name), columns
    )
    started = time.monotonic()
    for first in range(0, len(rows), batch_rows):
        with conn.transaction(), conn.cursor() as cur, cur.copy(statement) as copy:
            copy.set_types(list(table.types))
            for row in rows[first : first + batch_rows]:
                copy.write_row(row)
    wall = time.monotonic() - started
    stored, rate = stored_rate(conn, len(rows), timeout_s=60)
    print(
        f"raw COPY: {stored} rows in {wall:.1f} s wall, {rate:,.0f} rows/s between the first "
        "and the last commit",
        file=sys.stderr,
    )
    return rate


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=3_000_000)
    parser.add_argument("--keep", action="store_true", help="keep the benchmark database")
    parser.add_argument(
        "--sink-only", action="store_true", help="only the sink as configured, no comparisons"
    )
    args = parser.parse_args()

    tag = f"bench{uuid.uuid4().hex[:6]}"
    dbname = f"pantau_{tag}"
    env = {
        **os.environ,
        "PANTAU__KAFKA__TOPIC_PREFIX": f"{tag}.",
        "PANTAU__POSTGRES__DBNAME": dbname,
        "PANTAU__LOGGING__LEVEL": "WARNING",
    }
    settings = load_settings(CONFIG, env)
    figures: dict[str, float] = {}
    owner = settings.postgres.connect_kwargs("owner")
    with psycopg.connect(**{**owner, "dbname": "postgres"}, autocommit=True) as admin:  # type: ignore[arg-type]
        admin.execute(f'CREATE DATABASE "{dbname}"')
    try:
        subprocess.run(
            [sys.executable, "-m", "pantau.cli", "--config", str(CONFIG), "migrate"],
            env=env, cwd=REPO, check=True, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        topics = Topics(settings.kafka)
        kafka.ensure_topics(settings.kafka, topics.specs())
        publish(settings, topics.readings, args.messages)
        with psycopg.connect(**owner, autocommit=True) as conn:  # type: ignore[arg-type]
            figures["sink_rows_per_s"] = run_sink(
                {**env, "PANTAU__SINK__GROUP_ID": f"{tag}-confluent"}, conn, args.messages,
                f"sink (librdkafka, {settings.sink.workers} workers)", settings.sink.workers,
            )  # fmt: skip
            # The same rows by a plain binary COPY, in the same run: the sink's ceiling.
            figures["raw_copy_rows_per_s"] = run_raw_copy(
                conn, args.messages, settings.sink.batch_max_rows
            )
            if not args.sink_only:
                figures["sink_one_worker_rows_per_s"] = run_sink(
                    {**env, "PANTAU__SINK__GROUP_ID": f"{tag}-one"}, conn, args.messages,
                    "sink (librdkafka, 1 worker)", 1,
                )  # fmt: skip
                figures["sink_kafka_python_rows_per_s"] = run_sink(
                    {**env, "PANTAU__SINK__GROUP_ID": f"{tag}-kp", "PANTAU__SINK__CLIENT": "kafka-python"},
                    conn, args.messages, f"sink (kafka-python, {settings.sink.workers} workers)",
                    settings.sink.workers,
                )  # fmt: skip
                figures["executemany_rows_per_s"] = run_executemany(settings, conn, args.messages)
    finally:
        if not args.keep:
            with psycopg.connect(**{**owner, "dbname": "postgres"}, autocommit=True) as admin:  # type: ignore[arg-type]
                admin.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
            admin_client = kafka.admin(settings.kafka)
            admin_client.delete_topics([t.name for t in Topics(settings.kafka).specs()])
            admin_client.close()

    for name, value in figures.items():
        print(f"figure: {name} = {value:.0f} rows/s")
    ratio = figures["sink_rows_per_s"] / figures["raw_copy_rows_per_s"]
    print(f"figure: sink_vs_raw_copy = {ratio:.2f} x")
    print(f"figure: sink_messages = {args.messages} messages")
    return 0


if __name__ == "__main__":
    sys.exit(main())
