"""A sensor's readings around its alarm as a small SVG line chart (no JavaScript, no
library: it prints, it works on any phone). Pure."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from html import escape
from zoneinfo import ZoneInfo


def svg_chart(
    points: Sequence[tuple[datetime, float]],
    *,
    tz: ZoneInfo,
    threshold: float | None = None,
    marker: datetime | None = None,
    unit: str = "",
    width: int = 640,
    height: int = 220,
) -> str:
    """Readings as a polyline; the threshold as a dashed red line; the alarm's opening as a
    vertical line. An empty series gives an empty string."""
    if not points:
        return ""
    left, right, top, bottom = 48, 8, 10, 24
    t0 = points[0][0].timestamp()
    t1 = max(points[-1][0].timestamp(), t0 + 1.0)
    values = [v for _, v in points] + ([threshold] if threshold is not None else [])
    lo, hi = min(values), max(values)
    if hi - lo < 1e-9:
        lo, hi = lo - 1.0, hi + 1.0
    pad = (hi - lo) * 0.08
    lo, hi = lo - pad, hi + pad
    plot_w, plot_h = width - left - right, height - top - bottom

    def x(t: float) -> float:
        return left + (t - t0) / (t1 - t0) * plot_w

    def y(v: float) -> float:
        return top + (hi - v) / (hi - lo) * plot_h

    line = " ".join(f"{x(t.timestamp()):.1f},{y(v):.1f}" for t, v in points)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'class="chart" role="img">',
        f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" class="chart-bg"/>',
    ]
    for v in (lo + pad, (lo + hi) / 2, hi - pad):
        parts.append(
            f'<text x="{left - 4}" y="{y(v) + 4:.1f}" text-anchor="end" class="chart-label">'
            f"{v:.4g}</text>"
        )
    for t in (t0, (t0 + t1) / 2, t1):
        label = datetime.fromtimestamp(t, tz).strftime("%H:%M")
        parts.append(
            f'<text x="{x(t):.1f}" y="{height - 6}" text-anchor="middle" class="chart-label">'
            f"{label}</text>"
        )
    if threshold is not None:
        parts.append(
            f'<line x1="{left}" x2="{width - right}" y1="{y(threshold):.1f}" '
            f'y2="{y(threshold):.1f}" class="chart-threshold"/>'
        )
    if marker is not None and t0 <= marker.timestamp() <= t1:
        mx = x(marker.timestamp())
        parts.append(
            f'<line x1="{mx:.1f}" x2="{mx:.1f}" y1="{top}" y2="{top + plot_h}" '
            f'class="chart-marker"/>'
        )
    parts.append(f'<polyline points="{line}" class="chart-line"/>')
    if unit:
        parts.append(
            f'<text x="{left + 4}" y="{top + 12}" class="chart-label">{escape(unit)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)
