from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from console.chart import svg_chart

WIB = ZoneInfo("Asia/Jakarta")
T0 = datetime(2026, 12, 7, 3, 0, tzinfo=UTC)


def test_readings_threshold_and_opening_are_drawn_in_local_time() -> None:
    points = [(T0 + timedelta(minutes=m), 2.0 + m / 30) for m in range(0, 121, 10)]
    svg = svg_chart(points, tz=WIB, threshold=4.0, marker=T0 + timedelta(minutes=60), unit="m")
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert svg.count(",") >= len(points)  # one x,y pair per reading
    assert 'class="chart-threshold"' in svg and 'class="chart-marker"' in svg
    # 03:00 UTC is 10:00 WIB.
    assert ">10:00<" in svg and ">12:00<" in svg


def test_no_readings_no_chart_and_a_flat_series_still_draws() -> None:
    assert svg_chart([], tz=WIB) == ""
    flat = svg_chart([(T0, 5.0), (T0 + timedelta(minutes=1), 5.0)], tz=WIB)
    assert "nan" not in flat and "<polyline" in flat
