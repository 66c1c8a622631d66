"""The evaluation report: a plain-text table, JSON, and a PNG plot."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from detectors.evaluation.scoring import SECONDS_PER_HOUR, Report, Scores

REPORT_TABLE = "evaluation.txt"
REPORT_JSON = "evaluation.json"
REPORT_PLOT = "evaluation.png"


def _num(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def format_table(report: Report) -> str:
    """Plain text, columns aligned: every clip, then every group, then the total; under it
    the false alarms per camera-hour of the clips without dumping.

    `IoU`: mean box IoU of the events found; `views`: view alarms found of those expected;
    `extra`: view alarms nobody expected."""
    head = ("clip", "group", "truth", "found", "TP", "FP", "FN", "P", "R", "F1",
            "delay mean", "p50", "max", "IoU", "views", "extra")  # fmt: skip

    def row(name: str, group: str, truth: str, found: str, s: Scores) -> tuple[str, ...]:
        return (name, group, truth, found, str(s.tp), str(s.fp), str(s.fn), _num(s.precision),
                _num(s.recall), _num(s.f1), _num(s.delay_mean, 1), _num(s.delay_p50, 1),
                _num(s.delay_max, 1), _num(s.iou_mean),
                f"{s.views_found}/{s.views_expected}", str(s.views_unexpected))  # fmt: skip

    rows = [
        row(r.clip.name, r.clip.set_name, str(len(r.clip.events)), str(len(r.detected)), r.scores)
        for r in report.clips
    ]
    groups = [
        row(f"[{g}]", f"{s.clips} clips", str(s.tp + s.fn), str(s.tp + s.fp), s)
        for g, s in report.groups.items()
    ]
    t = report.total
    total = [row("TOTAL", f"{t.clips} clips", str(t.tp + t.fn), str(t.tp + t.fp), t)]
    widths = [max(len(r[i]) for r in [head, *rows, *groups, *total]) for i in range(len(head))]

    def line(cells: Sequence[str]) -> str:
        # Names left, numbers right, like any table people read down.
        parts = [
            c.ljust(w) if i < 2 else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(parts).rstrip()

    rule = "-" * len(line(["-" * w for w in widths]))
    out = [line(head), rule, *map(line, rows), rule, *map(line, groups), rule, *map(line, total)]
    return "\n".join(out) + "\n\n" + false_alarm_line(t) + "\n"


def false_alarm_line(s: Scores) -> str:
    negatives = s.negative_s / SECONDS_PER_HOUR
    if s.false_alarms_per_hour is None:
        return "false alarms per camera-hour: - (no clip without dumping, or none of known length)"
    return (
        f"false alarms per camera-hour: {s.false_alarms_per_hour:.1f} "
        f"({s.negative_fp} in {negatives:.2f} h of clips without dumping)"
    )


def write_json(report: Report, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report.to_dict(), indent=2) + "\n", encoding="utf-8")
    return path


def write_plot(report: Report, path: Path) -> Path:
    """PNG: precision / recall / F1 / box IoU per group and in total (false alarms per
    camera-hour in the title), the notification delays, and the view alarms."""
    # Imported here: only the report needs matplotlib, and Agg draws without a display.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names = [*report.groups, "total"]
    scores = [*report.groups.values(), report.total]
    fig = Figure(figsize=(max(10.0, 1.6 * len(names) + 9.0), 4.5), layout="constrained")
    FigureCanvasAgg(fig)
    bars, spread, views = fig.subplots(1, 3, width_ratios=[max(2, len(names)), 2, 2])
    x = np.arange(len(names), dtype=np.float64)
    width = 0.2
    for k, (label, values) in enumerate(
        (
            ("precision", [s.precision for s in scores]),
            ("recall", [s.recall for s in scores]),
            ("F1", [s.f1 for s in scores]),
            ("box IoU", [s.iou_mean for s in scores]),
        )
    ):
        pos = x + (k - 1.5) * width
        heights = [math.nan if v is None else v for v in values]
        bars.bar(pos, heights, width, label=label)
        for p, v in zip(pos, values, strict=True):
            if v is not None:
                bars.text(p, v + 0.02, f"{v:.2f}", ha="center", va="bottom", fontsize=7,
                          rotation=90)  # fmt: skip
    for xi, s in zip(x, scores, strict=True):
        # A set without dumping has no recall, and no precision when it stays quiet; an empty
        # slot must not read as a zero score, so say what the set scored instead.
        if s.tp + s.fn == 0:
            bars.text(xi, 0.05, f"no events\n{s.fp} false\nalarm{'s' if s.fp != 1 else ''}",
                      ha="center", va="bottom", fontsize=7)  # fmt: skip
    bars.set_xticks(x, [f"{n}\n({s.clips} clips)" for n, s in zip(names, scores, strict=True)],
                    fontsize=8)  # fmt: skip
    bars.set_ylim(0, 1.25)
    bars.set_ylabel("score")
    per_hour = report.total.false_alarms_per_hour
    bars.set_title(
        "event-level scores per clip set\nfalse alarms per camera-hour without dumping: "
        + ("-" if per_hour is None else f"{per_hour:.1f}"),
        fontsize=10,
    )
    bars.legend(loc="upper right", fontsize=8, ncols=4)

    delays = [list(s.delays) for s in report.groups.values()]
    filled = [(n, d) for n, d in zip(report.groups, delays, strict=True) if d]
    if filled:
        rng = np.random.default_rng(0)
        for i, (_, d) in enumerate(filled):
            jitter = rng.uniform(-0.12, 0.12, len(d))
            spread.scatter(np.full(len(d), i, dtype=np.float64) + jitter, d, s=18, alpha=0.8)
        spread.boxplot([d for _, d in filled], positions=range(len(filled)), widths=0.5)
        spread.set_xticks(range(len(filled)), [n for n, _ in filled], fontsize=8, rotation=30)
        if report.total.delay_p50 is not None:
            spread.axhline(report.total.delay_p50, ls="--", lw=1, color="grey",
                           label=f"median {report.total.delay_p50:.1f} s")  # fmt: skip
            spread.legend(fontsize=8)
    else:
        spread.text(0.5, 0.5, "no true positives", ha="center", va="center",
                    transform=spread.transAxes)  # fmt: skip
        spread.set_xticks([])
    spread.set_ylabel("alert - drop (s)")
    spread.set_title("notification delay of true positives")

    # View alarms per clip set: found and missed stack up to those expected; unexpected beside.
    found = np.array([s.views_found for s in scores], dtype=np.float64)
    missed = np.array([s.views_missed for s in scores], dtype=np.float64)
    extra = np.array([s.views_unexpected for s in scores], dtype=np.float64)
    views.bar(x - 0.2, found, 0.4, label="found", color="tab:green")
    views.bar(x - 0.2, missed, 0.4, bottom=found, label="missed", color="tab:red")
    views.bar(x + 0.2, extra, 0.4, label="unexpected", color="tab:orange")
    for xi, f, m, e in zip(x, found, missed, extra, strict=True):
        views.text(xi - 0.2, f + m + 0.05, f"{f:.0f}/{f + m:.0f}", ha="center", va="bottom",
                   fontsize=7)  # fmt: skip
        if e:
            views.text(xi + 0.2, e + 0.05, f"{e:.0f}", ha="center", va="bottom", fontsize=7)
    views.set_xticks(x, names, fontsize=8, rotation=30)
    views.set_ylim(0, max(1.0, float(max((found + missed).max(), extra.max()))) * 1.3)
    views.set_ylabel("camera view alarms")
    views.set_title("camera moved / covered alarms")
    views.legend(fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path


def write_report(report: Report, out_dir: Path) -> dict[str, Path]:
    """Table, JSON and plot into `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    table = out_dir / REPORT_TABLE
    table.write_text(format_table(report), encoding="utf-8")
    return {
        "table": table,
        "json": write_json(report, out_dir / REPORT_JSON),
        "plot": write_plot(report, out_dir / REPORT_PLOT),
    }
