from __future__ import annotations

import pytest

from pantau.messages import Box
from storage.rows import TABLES, Table, rows_for
from tests.factories import ID, SAMPLES, T0


def test_reading_becomes_one_narrow_row_per_quantity() -> None:
    table, rows = rows_for(SAMPLES["sensor_reading"])
    assert table.name == "sensor_readings"
    assert sorted((r[2], r[3]) for r in rows) == [("pm10", 73.2), ("pm25", 41.7)]
    assert all(r[0] == T0 and r[1] == "aq-alun-alun" and r[4] == ID for r in rows)


def test_detections_one_row_per_box_and_none_for_an_empty_frame() -> None:
    message = SAMPLES["detections"].model_copy(
        update={
            "boxes": (
                Box(class_id=0, label="person", confidence=0.9, x1=1, y1=2, x2=3, y2=4),
                Box(
                    class_id=24,
                    label="backpack",
                    confidence=0.5,
                    x1=5,
                    y1=6,
                    x2=7,
                    y2=8,
                    track_id=4,
                ),
            )
        }
    )
    table, rows = rows_for(message)
    assert table.name == "detections"
    assert [(r[3], r[5], r[11]) for r in rows] == [(0, "person", None), (1, "backpack", 4)]
    assert rows_for(message.model_copy(update={"boxes": ()}))[1] == []


def test_heartbeat_and_dead_letter_rows() -> None:
    assert rows_for(SAMPLES["camera_heartbeat"])[1][0][:3] == (T0, "tps-gedeg", "reconnecting")
    letter = SAMPLES["dead_letter"].model_copy(update={"partition": 2, "offset": 99})
    table, rows = rows_for(letter)
    assert table.name == "dead_letters"
    assert rows[0][-1] == b'{"pm25": '
    assert rows[0][6] == 99


def test_frames_are_not_stored_rows() -> None:
    with pytest.raises(TypeError, match="stores no frame messages"):
        rows_for(SAMPLES["frame"])


@pytest.mark.parametrize("table", TABLES, ids=lambda t: t.name)
def test_row_width_matches_the_declared_columns(table: Table) -> None:
    assert len(table.columns) == len(table.types)
    assert len(set(table.columns)) == len(table.columns)
