from __future__ import annotations

from datetime import timedelta

import pytest

from pantau.messages import Box, CameraView
from storage.rows import TABLES, Table, TrackSampler, Upsert, rows_for
from tests.factories import SAMPLES, T0


def test_reading_becomes_one_narrow_row_per_quantity() -> None:
    table, rows = rows_for(SAMPLES["sensor_reading"])
    assert table.name == "sensor_readings"
    assert sorted((r[2], r[3]) for r in rows) == [("pm10", 73.2), ("pm25", 41.7)]
    assert all(r[0] == T0 and r[1] == "aq-alun-alun" and r[4] == 812 for r in rows)


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


def test_life_cycle_messages_map_to_their_tables() -> None:
    for kind, table_name in [
        ("dumping_event", "dumping_events"),
        ("alert", "alerts"),
        ("notification", "notifications"),
        ("sensor_window", "sensor_readings_1m"),
        ("metric", "pipeline_metrics"),
    ]:
        table, rows = rows_for(SAMPLES[kind])
        assert table.name == table_name
        assert len(rows) == 1
        assert len(rows[0]) == len(table.columns)
    table, rows = rows_for(SAMPLES["dumping_event"])
    event_row = dict(zip(table.columns, rows[0], strict=True))
    assert event_row["version"] == 2
    assert event_row["label"] == "handbag"
    assert event_row["evidence"][0]["sha256"].startswith("abab")


def test_track_sampler_keeps_one_box_per_track_per_interval() -> None:
    sampler = TrackSampler(timedelta(seconds=1))
    t = [T0 + timedelta(milliseconds=200 * i) for i in range(11)]  # 2 s at 5 frames/s
    kept = [i for i, at in enumerate(t) if sampler.take("cam", 7, at)]
    assert kept == [0, 5, 10]
    # Untracked boxes and other tracks are not held back.
    assert all(sampler.take("cam", None, t[1]) for _ in range(3))
    assert sampler.take("cam", 8, t[1])
    assert sampler.take("other-cam", 7, t[1])


def test_track_sampler_with_zero_interval_keeps_everything() -> None:
    sampler = TrackSampler(timedelta(0))
    assert all(sampler.take("cam", 1, T0) for _ in range(5))


def test_detection_rows_are_sampled_by_track() -> None:
    boxes = tuple(
        Box(class_id=0, label="person", confidence=0.9, x1=1, y1=2, x2=3, y2=4, track_id=5)
        for _ in range(1)
    )
    sampler = TrackSampler(timedelta(seconds=1))
    frames = [
        SAMPLES["detections"].model_copy(
            update={"boxes": boxes, "ts_capture": T0 + timedelta(milliseconds=200 * i)}
        )
        for i in range(10)
    ]
    stored = sum(len(rows_for(f, sampler)[1]) for f in frames)
    assert stored == 2


def test_upsert_must_name_real_columns() -> None:
    with pytest.raises(ValueError, match="unknown columns"):
        Table("t", ("a", "b"), ("int4", "int4"), Upsert(("a",), "version"))


def test_camera_view_becomes_one_row_with_what_the_detector_measured() -> None:
    view = SAMPLES["camera_view"]
    assert isinstance(view, CameraView)
    table, rows = rows_for(view)
    assert table.name == "camera_view_changes"
    assert dict(zip(table.columns, rows[0], strict=True)) == {
        "time": T0,
        "id": view.id,
        "camera_id": "tps-gedeg",
        "condition": "moved",
        "phase": "start",
        "changed_frac": 0.82,
        "brightness_spread": 47.5,
        "sharpness_ratio": 1.1,
        "relearn_s": 120.0,
    }
