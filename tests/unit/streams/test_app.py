"""The stream worker's batch handling, without Kafka: effects before state, dead letters,
replays, and the decoded-state cache beside the table's bytes."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from faust.utils import json as faust_json

from pantau.codec import decode_as, encode
from pantau.ids import stable_id
from pantau.messages import Alert, CameraView, DeadLetter, SensorReading
from pantau.settings import settings_from_mapping
from pantau.topics import Topics
from streams.app import StreamsApp, _States
from streams.state import WindowAggregate, dump_state, load_state, new_state

SETTINGS = settings_from_mapping(
    {
        "sensors": [{"id": "wl-lengkong", "type": "water_level"}],
        "streams": {
            "rules": [
                {
                    "id": "water-high",
                    "type": "threshold",
                    "sensor_type": "water_level",
                    "quantity": "waterLevel",
                    "raise_above": 3.0,
                    "clear_below": 2.7,
                }
            ]
        },
    },
    base_dir=Path("."),
)
T0 = datetime(2026, 11, 23, 3, 0, tzinfo=UTC)
TOPICS = Topics(SETTINGS.kafka)
READINGS = TOPICS.readings


@dataclass
class Record:
    """What the handler reads of a faust message."""

    key: bytes | None
    value: bytes | None
    offset: int
    topic: str = READINGS
    partition: int = 0


class Producer:
    """Records each send; the broker acknowledges only when the test says so."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None, bytes]] = []
        self.pending: list[asyncio.Future[None]] = []

    async def send(self, topic: str, key: bytes | None, value: bytes, *_: Any) -> Any:
        self.sent.append((topic, key, value))
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.pending.append(future)
        return future

    def acknowledge(self) -> None:
        for future in self.pending:
            if not future.done():
                future.set_result(None)


def level(seq: int, value: float) -> Record:
    r = SensorReading(
        id=stable_id("test-app", seq),
        ts_capture=T0 + timedelta(seconds=10 * seq),
        seq=seq,
        sensor_id="wl-lengkong",
        sensor_type="water_level",
        values={"waterLevel": value},
        ts_ingest=T0 + timedelta(seconds=10 * seq),
    )
    return Record(key=r.key, value=encode(r), offset=seq)


@pytest.fixture
def worker() -> tuple[StreamsApp, dict[str, Any], Producer]:
    streams = StreamsApp(SETTINGS)
    table: dict[str, Any] = {}
    streams.state = table
    streams._states = _States(table)
    producer = Producer()
    streams.app.producer = producer
    return streams, table, producer


def handle(streams: StreamsApp, records: list[Record]) -> None:
    asyncio.run(_handle_acknowledged(streams, records))


async def _handle_acknowledged(streams: StreamsApp, records: list[Record]) -> None:
    task = asyncio.create_task(streams._handle(records, streams.readings))  # type: ignore[arg-type]
    while not task.done():
        await asyncio.sleep(0)
        streams.app.producer.acknowledge()
    await task


def test_state_is_stored_only_after_the_broker_has_the_alarm(
    worker: tuple[StreamsApp, dict[str, Any], Producer],
) -> None:
    streams, table, producer = worker

    async def scenario() -> None:
        task = asyncio.create_task(
            streams._handle([level(0, 2.0), level(1, 3.4)], streams.readings)  # type: ignore[list-item]
        )
        for _ in range(20):
            await asyncio.sleep(0)
        [(topic, key, value)] = producer.sent
        assert (topic, key) == (TOPICS.alerts, b"wl-lengkong")
        assert decode_as(value, Alert).change == "opened"
        assert table == {}, "the state reached the table before its alarm was acknowledged"
        producer.acknowledge()
        await task
        assert load_state(table["wl-lengkong"]).offsets == {READINGS: 1}

    asyncio.run(scenario())


def test_bad_reading_becomes_a_dead_letter_and_the_rest_is_applied(
    worker: tuple[StreamsApp, dict[str, Any], Producer],
) -> None:
    streams, table, producer = worker
    broken = Record(key=b"wl-lengkong", value=b'{"kind": "sensor_reading"', offset=1)
    handle(streams, [level(0, 2.0), broken, level(2, 3.4)])
    topics = [topic for topic, _, _ in producer.sent]
    assert topics == [TOPICS.alerts, TOPICS.dead_letters(READINGS)]
    letter = decode_as(producer.sent[1][2], DeadLetter)
    assert (letter.source_topic, letter.offset, letter.source_key) == (READINGS, 1, "wl-lengkong")
    assert letter.error.startswith("not JSON")
    assert letter.original == broken.value
    assert load_state(table["wl-lengkong"]).offsets == {READINGS: 2}


def test_redelivered_readings_are_skipped_and_change_nothing(
    worker: tuple[StreamsApp, dict[str, Any], Producer],
) -> None:
    streams, table, producer = worker
    handle(streams, [level(0, 2.0), level(1, 3.4)])
    stored = table["wl-lengkong"]
    sent = list(producer.sent)
    # After a crash faust delivers from the committed offset again.
    handle(streams, [level(0, 2.0), level(1, 3.4)])
    assert producer.sent == sent
    assert table["wl-lengkong"] is stored
    handle(streams, [level(1, 3.4), level(2, 2.5)])
    assert [decode_as(v, Alert).change for _, _, v in producer.sent] == ["opened", "cleared"]


def test_state_cache_follows_the_tables_bytes() -> None:
    table: dict[str, Any] = {}
    states = _States(table)
    assert states.take("wl-lengkong") is None
    state = new_state("sensor", "wl-lengkong")
    state.last_ts = 1.0
    states.put_back("wl-lengkong", None, state, changed=True)
    raw = table["wl-lengkong"]
    assert load_state(raw) == state
    # Unchanged bytes: the same decoded object, taken out until it is put back.
    assert states.take("wl-lengkong") == (raw, state)
    assert states.peek("wl-lengkong", raw) is not state
    states.put_back("wl-lengkong", raw, state, changed=False)
    assert states.take("wl-lengkong") == (raw, state)
    # A batch that failed never puts its state back: the stored bytes are decoded again.
    state.last_ts = 99.0
    again = states.take("wl-lengkong")
    assert again is not None and again[1].last_ts == 1.0
    # Other bytes in the table (recovered from the changelog after a rebalance) win.
    states.put_back("wl-lengkong", raw, again[1], changed=False)
    recovered = dump_state(replace(state, last_ts=7.0))
    table["wl-lengkong"] = recovered
    assert states.peek("wl-lengkong", recovered).last_ts == 7.0
    assert states.take("wl-lengkong") == (recovered, load_state(recovered))


def test_states_written_by_fausts_json_serializer_still_load() -> None:
    state = new_state("sensor", "wl-lengkong")
    state.windows = {1795368480: {"waterLevel": WindowAggregate(2, 2.0, 3.4, 5.4)}}
    state.hist = {"waterLevel": [(1795367892.992143, 2.0)]}
    as_json = state.to_json()
    older = faust_json.dumps(as_json)
    assert load_state(older if isinstance(older, bytes) else older.encode()) == state
    assert json.loads(dump_state(state)) == json.loads(json.dumps(as_json))


# Views reach the worker re-keyed onto the state's partitions, through faust's repartition topic.
VIEWS_BY_CAMERA = f"{SETTINGS.streams.app_id}-{TOPICS.camera_view}-views-by-camera-repartition"


def camera_view(offset: int, condition: str, phase: str) -> Record:
    v = CameraView(
        id=stable_id("test-app-view", offset),
        ts_capture=T0 + timedelta(seconds=offset),
        seq=offset,
        camera_id="tps-gedeg",
        condition=condition,
        phase=phase,
        changed_frac=0.05,
        brightness_spread=2.0 if phase == "start" else 45.0,
        sharpness_ratio=0.9,
    )
    return Record(key=v.key, value=encode(v), offset=offset, topic=VIEWS_BY_CAMERA)


def test_camera_views_raise_and_clear_tampered_and_garbage_is_a_dead_letter_of_the_view_topic(
    worker: tuple[StreamsApp, dict[str, Any], Producer],
) -> None:
    streams, table, producer = worker
    [views] = [i for i in streams.inputs if i.topic == TOPICS.camera_view]
    garbage = Record(key=b"tps-gedeg", value=b"\x00not a view", offset=1, topic=VIEWS_BY_CAMERA)

    async def scenario() -> None:
        batch = [camera_view(0, "covered", "start"), garbage, camera_view(2, "covered", "end")]
        task = asyncio.create_task(streams._handle(batch, views))  # type: ignore[arg-type]
        while not task.done():
            await asyncio.sleep(0)
            producer.acknowledge()
        await task

    asyncio.run(scenario())
    alerts = [decode_as(v, Alert) for t, _, v in producer.sent if t == TOPICS.alerts]
    assert [(a.alarm_type, a.state) for a in alerts] == [
        ("camera_tampered", "OPEN"),
        ("camera_tampered", "CLEARED"),
    ]
    [letter] = [
        decode_as(v, DeadLetter)
        for t, _, v in producer.sent
        if t == TOPICS.dead_letters(TOPICS.camera_view)
    ]
    assert (letter.source_topic, letter.offset, letter.source_key) == (
        TOPICS.camera_view,
        1,
        "tps-gedeg",
    )
    assert load_state(table["tps-gedeg"]).kind == "camera"


class _Assigned:
    def __init__(self, topic: str) -> None:
        self.topic, self.partition = topic, 0


def _watch(streams: StreamsApp, monkeypatch: pytest.MonkeyPatch, positions: Any) -> list[str]:
    """One round of the progress watchdog with `positions` (or an exception) from the
    broker; whether it asked for a fresh worker."""
    import streams.app as app_module

    readings = streams.topics.readings
    monkeypatch.setattr(
        type(streams.app), "consumer", property(lambda _self: type("C", (), {
            "assignment": staticmethod(lambda: [_Assigned(readings)])})()),
    )  # fmt: skip

    def measured(*_args: Any) -> Any:
        if isinstance(positions, Exception):
            raise positions
        return positions

    exits: list[str] = []
    monkeypatch.setattr(app_module.kafka, "group_positions", measured)
    monkeypatch.setattr(app_module, "_exit_for_a_fresh_worker", lambda: exits.append("exit"))
    asyncio.run(streams._watch_progress())
    return exits


def test_a_partition_whose_commits_stopped_gets_a_fresh_worker(
    worker: tuple[StreamsApp, dict[str, Any], Producer], monkeypatch: pytest.MonkeyPatch
) -> None:
    streams = worker[0]
    tp = (streams.topics.readings, 0)
    # Committed 10 of 50, and the same 10 since long before the stall limit.
    streams._progress[tp] = (10, -1e9)
    assert _watch(streams, monkeypatch, {tp: (10, 50)}) == ["exit"]


def test_a_broker_away_is_no_stall_and_no_crash_and_the_clock_starts_again(
    worker: tuple[StreamsApp, dict[str, Any], Producer], monkeypatch: pytest.MonkeyPatch
) -> None:
    from kafka.errors import KafkaTimeoutError

    streams = worker[0]
    tp = (streams.topics.readings, 0)
    streams._progress[tp] = (10, -1e9)
    away = KafkaTimeoutError("Unable to bootstrap from localhost:9092")
    assert _watch(streams, monkeypatch, away) == []
    # Back, still at 10: counted from now, not from before the outage.
    assert _watch(streams, monkeypatch, {tp: (10, 50)}) == []
