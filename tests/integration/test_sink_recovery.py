"""The sink stores every message exactly once across crashes, and dead-letters poison."""

from __future__ import annotations

import json
import random
import re
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pantau import kafka
from pantau.codec import decode_as
from pantau.ids import stable_id
from pantau.messages import DeadLetter, SensorReading
from pantau.topics import Topics
from tests.conftest import REPO
from tests.integration.conftest import Pipeline

SENSORS = ("aq-alun-alun", "aq-pasar-tanjung")


def produce_readings(
    pipeline: Pipeline, count: int, start: datetime, per_second: float | None = None
) -> None:
    """What sensor ingest would publish: `count` readings with two values each."""
    topics = Topics(pipeline.settings.kafka)
    kafka.ensure_topics(pipeline.settings.kafka, topics.specs())
    producer = kafka.producer(pipeline.settings.kafka, "test")
    for i in range(count):
        sensor = SENSORS[i % 2]
        at = start + timedelta(milliseconds=i)
        reading = SensorReading(
            id=stable_id(sensor, at.isoformat(), i),
            ts_capture=at,
            seq=i,
            sensor_id=sensor,
            sensor_type="air_quality",
            values={"pm25": 20 + i % 50, "pm10": 40 + i % 70},
            ts_ingest=at,
        )
        kafka.publish(producer, topics.readings, reading)
        if per_second is not None:
            time.sleep(1 / per_second)
    producer.flush()
    producer.close()


def stored(pipeline: Pipeline, start: datetime, count: int) -> tuple[int, int]:
    """(rows, distinct natural keys) stored for the produced time range."""
    with pipeline.db() as conn:
        row = conn.execute(
            "SELECT count(*), count(DISTINCT (sensor_id, quantity, time)) FROM sensor_readings "
            "WHERE time >= %s AND time < %s",
            (start, start + timedelta(milliseconds=count)),
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def sink_lag(pipeline: Pipeline) -> int:
    topics = Topics(pipeline.settings.kafka)
    return kafka.group_lag(
        pipeline.settings.kafka, pipeline.settings.sink.group_id, [topics.readings]
    )


def unique_start() -> datetime:
    # A time range no other test writes to (one in 100 million seconds).
    return datetime(2020, 1, 1, tzinfo=UTC) + timedelta(seconds=random.randrange(10**8))


def test_crash_between_database_commit_and_offset_commit_rereads_without_duplicates(
    pipeline: Pipeline,
) -> None:
    count = 3000
    start = unique_start()
    produce_readings(pipeline, count, start)

    # Unsupervised: a crash here must stay a crash, not be repaired by a restart.
    crashing = pipeline.start(
        "sink-crash",
        "sink",
        "--no-supervise",
        env={
            "PANTAU__DEBUG__FAILPOINTS": "[sink.after_db_commit]",
            "PANTAU__SINK__BATCH_MAX_ROWS": "1000",
        },
    )
    assert crashing.wait(timeout=90) == 97, pipeline.log_of(crashing)
    rows_before, _ = stored(pipeline, start, count)
    # The batch reached the database, but the offsets were never committed.
    assert 0 < rows_before < 2 * count
    assert sink_lag(pipeline) == count

    out = pipeline.run("sink", "--idle-exit", "3")
    rows, distinct = stored(pipeline, start, count)
    assert rows == distinct == 2 * count
    # The restarted sink read the stored batch again and inserted none of it twice.
    skipped = int(re.search(r"(\d+) duplicate rows skipped", out).group(1))  # type: ignore[union-attr]
    assert skipped == rows_before
    assert sink_lag(pipeline) == 0


def test_sigkill_mid_stream_then_restart_stores_every_message_once(pipeline: Pipeline) -> None:
    count = 20_000
    start = unique_start()
    produce_readings(pipeline, count, start)

    # Two worker processes, as deployed: killing their supervisor takes both down mid-batch.
    first = pipeline.start(
        "sink-killed",
        "sink",
        env={"PANTAU__SINK__BATCH_MAX_ROWS": "2000", "PANTAU__SINK__WORKERS": "2"},
    )
    pipeline.wait_for("some rows stored", lambda: stored(pipeline, start, count)[0] > 0, every=0.05)
    first.send_signal(signal.SIGKILL)
    first.wait()
    rows_at_kill, _ = stored(pipeline, start, count)
    assert rows_at_kill < 2 * count, "the sink finished before it could be killed"

    out = pipeline.run("sink", "--idle-exit", "3")
    rows, distinct = stored(pipeline, start, count)
    assert rows == distinct == 2 * count, out
    assert sink_lag(pipeline) == 0


def test_poison_record_is_dead_lettered_and_does_not_block_its_partition(
    pipeline: Pipeline,
) -> None:
    topics = Topics(pipeline.settings.kafka)
    start = unique_start()
    kafka.ensure_topics(pipeline.settings.kafka, topics.specs())
    producer = kafka.producer(pipeline.settings.kafka, "test")
    poison = b'{"kind": "sensor_reading", "schema_version": 1, "values": "garbage"}'
    # Same key as the good readings, so they share a partition behind the poison.
    producer.send(topics.readings, key=SENSORS[0].encode(), value=poison)
    producer.flush()
    producer.close()
    produce_readings(pipeline, 10, start)

    pipeline.run("sink", "--idle-exit", "3")
    rows, _ = stored(pipeline, start, 10)
    assert rows == 20
    letters = [
        decode_as(r.value, DeadLetter)
        for r in pipeline.read_topic(topics.dead_letters(topics.readings))
    ]
    assert len(letters) == 1
    assert letters[0].original == poison and letters[0].stage == "sink"
    assert letters[0].source_topic == topics.readings and letters[0].offset == 0
    assert "invalid sensor_reading" in letters[0].error
    # The sink stores the dead letter too, once it is read back from the dead-letter topic.
    pipeline.run("sink", "--idle-exit", "3")
    assert pipeline.scalar("SELECT count(*) FROM dead_letters WHERE id = %s", letters[0].id) == 1


def test_database_outage_while_messages_flow_loses_nothing(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    count = 6000
    start = unique_start()
    status = tmp_path / "health" / "sink.json"
    sink = pipeline.start("sink", "sink", env={"PANTAU__RUNTIME__STATUS_DIR": str(status.parent)})
    feeder = threading.Thread(
        target=produce_readings, args=(pipeline, count, start), kwargs={"per_second": 300}
    )
    feeder.start()
    pipeline.wait_for("the first rows", lambda: stored(pipeline, start, count)[0] > 0)
    services = [sys.executable, "-m", "pantau.cli", "services"]
    subprocess.run([*services, "down", "postgres"], check=True, cwd=REPO, capture_output=True)
    try:
        time.sleep(8)  # messages keep arriving in Kafka meanwhile
        assert sink.poll() is None, "the sink must survive the database outage"
    finally:
        subprocess.run([*services, "up", "postgres"], check=True, cwd=REPO, capture_output=True)
    feeder.join()
    pipeline.wait_for(
        "every row after the outage",
        lambda: stored(pipeline, start, count) == (2 * count, 2 * count),
        timeout=120,
        every=1,
    )
    pipeline.wait_for("offsets committed", lambda: sink_lag(pipeline) == 0, timeout=30)
    log = pipeline.log_of(sink)
    assert "database unavailable" in log
    assert "database is back; resumed consuming" in log
    # The outage paused the sink; it was never restarted.
    (worker,) = json.loads(status.read_text())["workers"]
    assert worker["restarts"] == 0, worker
    # The sink measured itself while it worked, for the pipeline-health wall.
    with pipeline.db() as conn:
        metrics = dict(
            conn.execute(
                "SELECT metric, max(value) FROM pipeline_metrics "
                "WHERE component = 'sink' AND instance LIKE %s GROUP BY 1",
                (f"%-{worker['pid']}",),
            ).fetchall()
        )
    assert metrics["rows_per_s"] > 0
    assert {"batch_rows_mean", "capture_to_stored_p95_s", "consumer_lag"} <= set(metrics)
