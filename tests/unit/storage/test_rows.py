from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID

import pytest

from pantau.messages import Box, CameraHeartbeat, DeadLetter, Detections, SensorReading
from storage.rows import TABLES, rows_for

T0 = datetime(2026, 11, 23, 3, 0, tzinfo=UTC)
ID = UUID("01937a4e-8c2b-7d10-9a4f-3b2c1d0e5f60")


def test_reading_becomes_one_narrow_row_per_quantity() -> None:
    reading = SensorReading(
        id=ID,
        ts_capture=T0,
        seq=3,
        sensor_id="aq-01",
        sensor_type="air_quality",
        values={"pm25": 41.7, "pm10": 73.2},
        ts_ingest=T0,
    )
    table, rows = rows_for(reading)
    assert table.name == "sensor_readings"
    assert sorted((r[2], r[3]) for r in rows) == [("pm10", 73.2), ("pm25", 41.7)]
    assert all(r[0] == T0 and r[1] == "aq-01" and r[4] == ID for r in rows)


def test_detections_one_row_per_box_and_none_for_an_empty_frame() -> None:
    boxes = (
        Box(class_id=0, label="person", confidence=0.9, x1=1, y1=2, x2=3, y2=4),
        Box(class_id=24, label="backpack", confidence=0.5, x1=5, y1=6, x2=7, y2=8, track_id=4),
    )
    message = Detections(
        id=ID,
        ts_capture=T0,
        seq=1,
        camera_id="c1",
        frame_id=ID,
        width=640,
        height=360,
        model="m",
        inference_ms=20,
        ts_detected=T0,
        boxes=boxes,
    )
    table, rows = rows_for(message)
    assert table.name == "detections"
    assert [(r[3], r[5], r[11]) for r in rows] == [(0, "person", None), (1, "backpack", 4)]
    assert rows_for(message.model_copy(update={"boxes": ()}))[1] == []


def test_heartbeat_and_dead_letter_rows() -> None:
    beat = CameraHeartbeat(
        id=ID,
        ts_capture=T0,
        seq=1,
        camera_id="c1",
        status="online",
        fps=5.0,
        frames_decoded=10,
        frames_published=5,
        frames_skipped=5,
        reconnects=0,
    )
    assert rows_for(beat)[1][0][:3] == (T0, "c1", "online")
    letter = DeadLetter(
        id=ID,
        ts_capture=T0,
        seq=0,
        stage="sink",
        source_kind="kafka",
        source_topic="x.v1",
        partition=2,
        offset=99,
        error="bad",
        original=b"\x00raw",
    )
    table, rows = rows_for(letter)
    assert table.name == "dead_letters" and rows[0][-1] == b"\x00raw" and rows[0][6] == 99


@pytest.mark.parametrize("table", TABLES, ids=lambda t: t.name)
def test_row_width_matches_the_declared_columns(table) -> None:  # type: ignore[no-untyped-def]
    assert len(table.columns) == len(table.types)
    assert len(set(table.columns)) == len(table.columns)
