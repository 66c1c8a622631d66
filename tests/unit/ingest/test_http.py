from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from kafka.errors import KafkaTimeoutError

from ingest.http import BadBatch, HttpIngest, StoreFailed, parse_batch
from pantau.codec import decode_as
from pantau.messages import DeadLetter, SensorReading
from pantau.settings import Settings, SettingsError, settings_from_mapping
from pantau.topics import Topics

NOW = datetime(2026, 11, 23, 3, 0, 0, tzinfo=UTC)
OK_TIME = "2026-11-23T02:59:00Z"


class SentFuture:
    """What KafkaProducer.send returns, already settled."""

    def __init__(self, error: Exception | None) -> None:
        self._error = error

    def get(self, timeout: float | None = None) -> None:
        if self._error is not None:
            raise self._error


class FakeProducer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None, bytes]] = []
        self.error: Exception | None = None

    def send(self, topic: str, key: bytes | None = None, value: bytes = b"") -> SentFuture:
        self.sent.append((topic, key, value))
        return SentFuture(self.error)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return settings_from_mapping(
        {
            "kafka": {"topic_prefix": "t."},
            "sensors": [
                {"id": "wl-01", "type": "water_level", "units": {"waterLevel": "cm"}},
                {"id": "aq-01", "type": "air_quality"},
            ],
        },
        tmp_path,
    )


def ingest_with(settings: Settings) -> tuple[HttpIngest, FakeProducer]:
    producer = FakeProducer()
    return HttpIngest(settings, producer, Topics(settings.kafka), clock=lambda: NOW), producer  # type: ignore[arg-type]


def item(sensor_id: str = "aq-01", **fields: object) -> dict[str, object]:
    return {"sensorId": sensor_id, "dateObserved": OK_TIME, **fields}


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        (b"<xml/>", 400, "body is not JSON"),
        (b'"readings"', 400, "body must be a JSON array of readings, got str"),
        (b'{"data": []}', 400, "got keys 'data'"),
        (b'{"readings": [], "site": "x"}', 400, "got keys 'readings', 'site'"),
        (b'{"readings": 5}', 400, "body must be a JSON array of readings, got int"),
        (b"[]", 400, "body holds no readings"),
        (json.dumps([{}] * 4).encode(), 413, "4 readings in one request; the limit is 3"),
    ],
)
def test_a_body_that_is_not_a_batch_is_refused_whole(body: bytes, status: int, error: str) -> None:
    with pytest.raises(BadBatch) as caught:
        parse_batch(body, max_items=3)
    assert caught.value.status == status
    assert error in caught.value.error


@pytest.mark.parametrize(
    "body", [b'[{"sensorId": "aq-01"}, 7]', b'{"readings": [{"sensorId": "aq-01"}, 7]}']
)
def test_both_batch_shapes_give_their_items(body: bytes) -> None:
    assert parse_batch(body, max_items=3) == [{"sensorId": "aq-01"}, 7]


def test_each_item_is_judged_on_its_own(settings: Settings) -> None:
    ingest, producer = ingest_with(settings)
    batch = ingest.ingest(
        [
            item("wl-01", seq=1, waterLevel=231),
            item("ghost", seq=1, pm25=3),
            item("aq-01", seq=1, pm25=3),
            item("aq-01", seq=1, pm25=4),
            [1, 2],
        ]
    )
    assert (batch.status, batch.accepted, batch.rejected) == (207, 2, 3)
    body = batch.as_json()
    assert [r["status"] for r in body["results"]] == [
        "accepted",
        "rejected",
        "accepted",
        "rejected",
        "rejected",
    ]
    assert body["results"][1]["error"] == "unknown sensor 'ghost': not in the sensor registry"
    assert body["results"][3]["error"] == "duplicate seq 1 for sensor aq-01 (already ingested)"
    assert body["results"][4]["error"] == "payload must be a JSON object, got list"

    readings = [
        decode_as(v, SensorReading) for t, _k, v in producer.sent if t == "t.sensors.readings.v1"
    ]
    assert [r.values for r in readings] == [{"waterLevel": 2.31}, {"pm25": 3.0}]
    assert [str(r.id) for r in readings] == [body["results"][0]["id"], body["results"][2]["id"]]
    letters = [
        (k, decode_as(v, DeadLetter))
        for t, k, v in producer.sent
        if t == "t.sensors.readings.dlq.v1"
    ]
    assert [k for k, _letter in letters] == [b"ghost", b"aq-01", None]
    ghost = letters[0][1]
    assert ghost.source_kind == "http" and ghost.stage == "ingest.http"
    assert json.loads(ghost.original) == item("ghost", seq=1, pm25=3)


@pytest.mark.parametrize(
    ("items", "status"),
    [
        ([item(seq=1, pm25=3), item(seq=2, pm25=3)], 200),
        ([item(seq=1, pm25=3), item(seq=2, pm25=-3)], 207),
        ([item(seq=1, pm25=-3), item("ghost", seq=2, pm25=3)], 400),
    ],
)
def test_status_says_whether_all_some_or_none_were_accepted(
    settings: Settings, items: list[object], status: int
) -> None:
    ingest, _producer = ingest_with(settings)
    assert ingest.ingest(items).status == status


def test_a_batch_kafka_did_not_confirm_can_be_sent_again(settings: Settings) -> None:
    ingest, producer = ingest_with(settings)
    batch = [item(seq=1, pm25=3), item("wl-01", seq=5, waterLevel=120)]
    producer.error = KafkaTimeoutError("Batch for t.sensors.readings.v1-0 has expired")
    with pytest.raises(StoreFailed, match="nothing of it is accepted: send it again"):
        ingest.ingest(batch)
    assert ingest.stats.accepted == 0 and ingest.stats.failed_batches == 1

    producer.error = None
    retried = ingest.ingest(batch)
    assert (retried.status, retried.accepted) == (200, 2)


def test_a_registry_unit_that_cannot_work_stops_start_up(tmp_path: Path) -> None:
    settings = settings_from_mapping(
        {"sensors": [{"id": "wl-01", "type": "water_level", "units": {"waterLevel": "feet"}}]},
        tmp_path,
    )
    with pytest.raises(SettingsError) as caught:
        ingest_with(settings)
    assert "sensor wl-01: units.waterLevel: unit 'feet' is unknown" in str(caught.value)
