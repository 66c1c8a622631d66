"""Hotspot risk: how well last weeks' scores rank next week's dumping, against last week's count.

Run on its own: `python bench/hotspot_risk.py [--weeks 30 --places 100 --seed 7]`. A history
with a planted pattern (a few places dumped on every other week on their own weekday in the
evening, a few every week, a low background everywhere and one-off bursts; see
`storage.risk.planted_history`) is scored week after week from the history before each week,
after a warm-up of `--warmup` weeks. The hit rate is the share of the week's incidents at
the top 10 % of places; the naive ranking is last week's count. The same for single days
(the score then uses the place's day-of-week profile), and for the half-lives tried; and a
self-exciting (Hawkes) variant over a grid of its two knobs, tuned on the very weeks it is
scored on (so its figure is optimistic), next to its boost-free limit (the 120-day mean).
No database and no services are needed.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tqdm import tqdm

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from storage.risk import (  # noqa: E402
    DAY,
    WEEK,
    Evaluation,
    HawkesModel,
    PlantedHistory,
    RiskModel,
    evaluate,
    planted_history,
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--weeks", type=int, default=30, help="weeks of history")
    parser.add_argument("--warmup", type=int, default=6, help="weeks before the first scored")
    parser.add_argument("--places", type=int, default=100, help="camera zones")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--half-lives",
        default="7,14,21,28,42",
        help="half-lives (days) to compare, besides the default model's",
    )
    args = parser.parse_args()

    history = planted_history(
        start=datetime(2026, 1, 5, tzinfo=UTC), weeks=args.weeks, places=args.places, seed=args.seed
    )
    weeks = [history.start + w * WEEK for w in range(args.warmup, history.weeks)]
    days = [history.start + d * DAY for d in range(7 * args.warmup, 7 * history.weeks)]
    default = RiskModel()
    models = [default] + [
        replace(default, half_life_days=float(h))
        for h in args.half_lives.split(",")
        if float(h) != default.half_life_days
    ]
    print(
        f"{len(history.incidents)} incidents at {len(history.places)} places over "
        f"{history.weeks} weeks; planted: {len(history.rhythmic)} every other week, "
        f"{len(history.steady)} every week",
        file=sys.stderr,
    )

    hawkes = [HawkesModel(alpha=0.0)] + [
        HawkesModel(alpha=a, decay_days=d) for a in (0.1, 0.3, 0.5) for d in (1.0, 3.0, 7.0, 14.0)
    ]
    weekly: dict[float, Evaluation] = {}
    self_exciting: dict[HawkesModel, Evaluation] = {}
    daily: dict[float, Evaluation] = {}
    total = len(models) * (len(weeks) + len(days)) + len(hawkes) * len(weeks)
    with tqdm(total=total, unit="period", file=sys.stderr) as bar:
        for model in models:
            bar.set_description(f"half-life {model.half_life_days:g} d")
            weekly[model.half_life_days] = _run(history, weeks, WEEK, model, bar)
            daily[model.half_life_days] = _run(history, days, DAY, model, bar)
        for variant in hawkes:
            bar.set_description(f"Hawkes {variant.alpha:g}/{variant.decay_days:g} d")
            self_exciting[variant] = _run(history, weeks, WEEK, default, bar, hawkes=variant)

    for half_life in sorted(weekly):
        w, d = weekly[half_life], daily[half_life]
        print(
            f"half-life {half_life:>4g} d: week top 10 % {100 * w.risk_hit_rate:5.1f} %, "
            f"day top 10 % {100 * d.risk_hit_rate:5.1f} %",
            file=sys.stderr,
        )
    for variant, result in self_exciting.items():
        print(
            f"Hawkes alpha {variant.alpha:g}, decay {variant.decay_days:>4g} d: "
            f"week top 10 % {100 * result.risk_hit_rate:5.1f} %",
            file=sys.stderr,
        )
    mean_only = self_exciting[hawkes[0]]
    best = max(hawkes[1:], key=lambda v: self_exciting[v].risk_hit_rate)
    w, d = weekly[default.half_life_days], daily[default.half_life_days]
    print(f"weeks scored: {w.periods}, their incidents: {w.incidents}", file=sys.stderr)
    print(f"figure: risk_top10_hit_rate = {100 * w.risk_hit_rate:.1f} %")
    print(f"figure: naive_top10_hit_rate = {100 * w.naive_hit_rate:.1f} %")
    print(f"figure: risk_day_top10_hit_rate = {100 * d.risk_hit_rate:.1f} %")
    print(f"figure: naive_day_top10_hit_rate = {100 * d.naive_hit_rate:.1f} %")
    print(f"figure: hawkes_best_top10_hit_rate = {100 * self_exciting[best].risk_hit_rate:.1f} %")
    print(f"figure: mean_120d_top10_hit_rate = {100 * mean_only.risk_hit_rate:.1f} %")
    print(f"best Hawkes: alpha {best.alpha:g}, decay {best.decay_days:g} d", file=sys.stderr)
    return 0


def _run(
    history: PlantedHistory,
    starts: list[datetime],
    period: timedelta,
    model: RiskModel,
    bar: tqdm,  # type: ignore[type-arg]
    hawkes: HawkesModel | None = None,
) -> Evaluation:
    total: Evaluation | None = None
    for start in starts:
        one = evaluate(
            history.incidents, history.places, [start], period=period, model=model, hawkes=hawkes
        )
        total = one if total is None else _add(total, one)
        bar.update(1)
    assert total is not None
    return total


def _add(a: Evaluation, b: Evaluation) -> Evaluation:
    return Evaluation(
        a.periods + b.periods,
        a.incidents + b.incidents,
        a.risk_hits + b.risk_hits,
        a.naive_hits + b.naive_hits,
        a.share,
    )


if __name__ == "__main__":
    sys.exit(main())
