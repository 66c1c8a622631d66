"""The report: an aligned table, JSON and a plot."""

from __future__ import annotations

import json
from pathlib import Path

from detectors.evaluation import (
    evaluate,
    format_table,
    write_report,
)
from tests.unit.detectors.evaluation.factories import (
    fake_annotations,
    fake_run,
)


def test_the_table_json_and_plot_are_written(tmp_path: Path) -> None:
    report = evaluate(fake_annotations(tmp_path), fake_run, progress=False)
    paths = write_report(report, tmp_path / "out")
    table = paths["table"].read_text(encoding="utf-8")
    assert table == format_table(report)
    lines = [line for line in table.splitlines() if line and not line.startswith("-")]
    assert len({len(line) for line in lines[:-1]}) == 1, "columns are aligned"
    header, *rows = lines
    assert header.split()[:4] == ["clip", "group", "truth", "found"]
    table_rows, footer = rows[:-1], rows[-1]
    assert rows[1].split() == [
        "leave-b",
        "leave",
        "2",
        "2",
        "1",
        "1",
        "1",
        "0.50",
        "0.50",
        "0.50",
        "32.0",
        "32.0",
        "32.0",
        "-",
        "0/0",
        "0",
    ]
    assert rows[2].split()[4:] == ["0", "0", "0", "-", "-", "-", "-", "-", "-", "-", "0/0", "0"]
    assert table_rows[-1].split()[:5] == ["TOTAL", "4", "clips", "3", "4"]
    # One false alarm in the two negatives' hour of video.
    assert footer == "false alarms per camera-hour: 1.0 (1 in 1.00 h of clips without dumping)"

    summary = json.loads(paths["json"].read_text(encoding="utf-8"))
    assert summary["total"]["precision"] == 0.5 and summary["total"]["delay_s"]["p50"] == 31.5
    assert summary["total"]["false_alarms_per_camera_hour"] == 1.0
    assert summary["total"]["negative_hours"] == 1.0
    assert summary["groups"]["leave"]["false_alarms_per_camera_hour"] is None
    assert summary["groups"]["negative"]["recall"] is None
    busy = next(c for c in summary["clips"] if c["clip"] == "busy")
    assert busy["false_alarms"] == [
        {"appeared_at": 5.0, "alerted_at": 35.0, "box": None, "event_id": None}
    ]
    leave_b = next(c for c in summary["clips"] if c["clip"] == "leave-b")
    assert [m["drop_at"] for m in leave_b["missed"]] == [60.0]

    png = paths["plot"].read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
