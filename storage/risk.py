"""Hotspot risk for patrols: how much dumping to expect at each place in a coming week or day,
from the place's incident history, and how well that ranking foretold what came.

Pure: no database, no sockets. The `hotspot_risk*` views (migration 0016) compute the same
score in SQL with `RiskModel()`'s defaults; this module is the reference they are tested
against, and what the evaluation (`bench/hotspot_risk.py`) runs week after week.

The score of a place, `expected_week`, is its recency-weighted incident count (an incident
`age` days old weighs 2^(-age / half_life_days)) turned into incidents per week: an
exponential decay with half-life h remembers h / ln 2 days of history, so the weighted count
times 7 ln 2 / h is a weekly rate. A coming day's or hour's share of that week comes from the
place's own day-of-week and hour-of-day profile (WIB), shrunk towards the profile of all
places together so that a place seen twice is not said to dump only at those two hours.
"""

from __future__ import annotations

import math
import random
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

WIB = ZoneInfo("Asia/Jakarta")
WEEK = timedelta(days=7)
DAY = timedelta(days=1)
# Monday first, as `datetime.weekday()` and ISO count.
WEEKDAYS_ID = ("Senin", "Selasa", "Rabu", "Kamis", "Jumat", "Sabtu", "Minggu")


@dataclass(frozen=True)
class Incident:
    """One real dumping (an alarm not called false) at a place: a camera and zone, or a desa."""

    at: datetime
    place: str

    def __post_init__(self) -> None:
        if self.at.tzinfo is None or self.at.utcoffset() is None:
            raise ValueError(
                f"incident at {self.place}: expected a timezone-aware time, "
                f"got naive {self.at.isoformat()}"
            )


@dataclass(frozen=True)
class RiskModel:
    """The score's knobs. The SQL views use the defaults."""

    # Four weeks: a place dumped on every other week needs a memory of several weeks (7 days
    # ranked the planted history's next weeks at half the rate, bench/hotspot_risk.py).
    # Longer still ranks a history that never changes slightly better (the 120-day mean by
    # 2.5 points), but would keep a place that is cleaned up or a camera that is moved near
    # the top for months.
    half_life_days: float = 28.0
    # How many incidents' worth of the all-places profile is mixed into each place's own.
    prior_strength: float = 2.0
    # Incidents older than this weigh 5 % or less at the default half-life; not read at all.
    lookback_days: float = 120.0

    def __post_init__(self) -> None:
        if self.half_life_days <= 0 or self.lookback_days <= 0 or self.prior_strength < 0:
            raise ValueError(
                "risk model: expected half_life_days > 0, lookback_days > 0 and "
                f"prior_strength >= 0, got {self.half_life_days}, {self.lookback_days}, "
                f"{self.prior_strength}"
            )

    def weight(self, age: timedelta) -> float:
        return math.pow(2.0, -(age / DAY) / self.half_life_days)

    @property
    def per_week(self) -> float:
        """Weighted count → incidents per week."""
        return 7.0 * math.log(2.0) / self.half_life_days


@dataclass(frozen=True)
class PlaceRisk:
    """A place's risk as seen at `at`: incidents expected in the coming week, and how they
    spread over the days of the week (Monday first) and the hours of the day, WIB."""

    place: str
    expected_week: float
    weekday_share: tuple[float, ...] = field(repr=False)
    hour_share: tuple[float, ...] = field(repr=False)
    incidents: int = 0

    def expected_day(self, weekday: int) -> float:
        return self.expected_week * self.weekday_share[weekday]

    def expected_slot(self, weekday: int, hour: int) -> float:
        # Day and hour taken as independent: the history of one place is far too thin for a
        # 7 x 24 table of its own.
        return self.expected_day(weekday) * self.hour_share[hour]

    def likely_weekdays(self, n: int = 2) -> list[int]:
        return _top_indices(self.weekday_share, n)

    def likely_hours(self, n: int = 3) -> list[int]:
        return _top_indices(self.hour_share, n)


def _top_indices(values: Sequence[float], n: int) -> list[int]:
    return sorted(range(len(values)), key=lambda i: (-values[i], i))[:n]


def _local(at: datetime) -> datetime:
    return at.astimezone(WIB)


def score(
    incidents: Iterable[Incident], at: datetime, model: RiskModel | None = None
) -> dict[str, PlaceRisk]:
    """Every place with an incident in the look-back before `at`, scored from those alone
    (anything at or after `at` is ignored, so an evaluation cannot peek)."""
    model = model or RiskModel()
    if at.tzinfo is None:
        raise ValueError(f"risk at: expected a timezone-aware time, got naive {at.isoformat()}")
    since = at - timedelta(days=model.lookback_days)
    level: dict[str, float] = defaultdict(float)
    counts: Counter[str] = Counter()
    by_day: dict[str, list[float]] = defaultdict(lambda: [0.0] * 7)
    by_hour: dict[str, list[float]] = defaultdict(lambda: [0.0] * 24)
    all_days = [0.0] * 7
    all_hours = [0.0] * 24
    for incident in incidents:
        if not since <= incident.at < at:
            continue
        w = model.weight(at - incident.at)
        local = _local(incident.at)
        level[incident.place] += w
        counts[incident.place] += 1
        by_day[incident.place][local.weekday()] += w
        by_hour[incident.place][local.hour] += w
        all_days[local.weekday()] += w
        all_hours[local.hour] += w
    prior_days = _shares(all_days)
    prior_hours = _shares(all_hours)
    k = model.prior_strength
    return {
        place: PlaceRisk(
            place=place,
            expected_week=total * model.per_week,
            weekday_share=_shrunk(by_day[place], total, prior_days, k),
            hour_share=_shrunk(by_hour[place], total, prior_hours, k),
            incidents=counts[place],
        )
        for place, total in level.items()
    }


def _shares(values: Sequence[float]) -> tuple[float, ...]:
    total = sum(values)
    if total <= 0:
        return tuple(1.0 / len(values) for _ in values)
    return tuple(v / total for v in values)


def _shrunk(
    own: Sequence[float], total: float, prior: Sequence[float], k: float
) -> tuple[float, ...]:
    return tuple((v + k * p) / (total + k) for v, p in zip(own, prior, strict=True))


def naive_week(incidents: Iterable[Incident], at: datetime) -> dict[str, float]:
    """The ranking to beat: each place's incident count in the week before `at`."""
    counts: Counter[str] = Counter(i.place for i in incidents if at - WEEK <= i.at < at)
    return {place: float(n) for place, n in counts.items()}


@dataclass(frozen=True)
class HawkesModel:
    """A self-exciting variant, kept for comparison: a place's dumping rate is a constant
    background (its 120-day mean, times 1 - `alpha`) plus, after each dumping, a boost worth
    `alpha` dumpings in all that fades with a time constant of `decay_days`. The expected week
    integrates that rate over the coming 7 days."""

    alpha: float = 0.5
    decay_days: float = 3.0
    lookback_days: float = 120.0

    def expected_week(self, incidents: Iterable[Incident], at: datetime) -> dict[str, float]:
        since = at - timedelta(days=self.lookback_days)
        week_days = WEEK / DAY
        # The share of a boost that falls in the coming week, for one `age` days old.
        fade = 1.0 - math.exp(-week_days / self.decay_days)
        out: dict[str, float] = defaultdict(float)
        for incident in incidents:
            if not since <= incident.at < at:
                continue
            age = (at - incident.at) / DAY
            out[incident.place] += (1 - self.alpha) * week_days / self.lookback_days
            out[incident.place] += self.alpha * math.exp(-age / self.decay_days) * fade
        return dict(out)


def top_places(scores: Mapping[str, float], places: Sequence[str], share: float) -> set[str]:
    """The top `share` of `places` (at least one) by score. Places without a score count as
    zero; ties go by name, so a ranking that cannot tell places apart gains nothing by it."""
    n = max(1, math.ceil(share * len(places)))
    ranked = sorted(places, key=lambda p: (-scores.get(p, 0.0), p))
    return set(ranked[:n])


@dataclass(frozen=True)
class Evaluation:
    """Hits pooled over the periods: the share of the periods' incidents that fell in the
    places each ranking put in its top `share` from the history before the period."""

    periods: int
    incidents: int
    risk_hits: int
    naive_hits: int
    share: float

    @property
    def risk_hit_rate(self) -> float:
        return self.risk_hits / self.incidents if self.incidents else 0.0

    @property
    def naive_hit_rate(self) -> float:
        return self.naive_hits / self.incidents if self.incidents else 0.0


def evaluate(
    incidents: Sequence[Incident],
    places: Sequence[str],
    starts: Iterable[datetime],
    *,
    period: timedelta = WEEK,
    model: RiskModel | None = None,
    share: float = 0.1,
    hawkes: HawkesModel | None = None,
) -> Evaluation:
    """Rolling evaluation: for each period [start, start + period), rank `places` by the
    risk score and by last week's count, both from the history before `start`, and count the
    period's incidents that land in each top `share`. A day-long period ranks by the
    expected dumping on that weekday; the naive ranking is last week's count either way.
    With `hawkes`, the self-exciting variant's week takes the place of the risk score."""
    model = model or RiskModel()
    ordered = sorted(incidents, key=lambda i: i.at)
    periods = total = risk_hits = naive_hits = 0
    for start in starts:
        risks = score(ordered, start, model)
        if hawkes is not None:
            risk_scores = hawkes.expected_week(ordered, start)
        elif period >= WEEK:
            risk_scores = {p: r.expected_week for p, r in risks.items()}
        else:
            weekday = _local(start).weekday()
            risk_scores = {p: r.expected_day(weekday) for p, r in risks.items()}
        top_risk = top_places(risk_scores, places, share)
        top_naive = top_places(naive_week(ordered, start), places, share)
        coming = [i.place for i in ordered if start <= i.at < start + period]
        periods += 1
        total += len(coming)
        risk_hits += sum(p in top_risk for p in coming)
        naive_hits += sum(p in top_naive for p in coming)
    return Evaluation(periods, total, risk_hits, naive_hits, share)


def week_start(at: datetime) -> datetime:
    """Monday 00:00 WIB of the week `at` falls in."""
    local = _local(at)
    return (local - timedelta(days=local.weekday())).replace(
        hour=0, minute=0, second=0, microsecond=0
    )


@dataclass(frozen=True)
class PlantedHistory:
    """Synthetic incident history with a pattern planted in it: `rhythmic` places are dumped
    on every other week, on their own weekday in the evening, which last week's count always
    misses; `steady` places get one incident every week on a fixed weekday; every place has a
    low background; and one-off bursts at random places fool a ranking by last week alone."""

    incidents: tuple[Incident, ...]
    places: tuple[str, ...]
    rhythmic: tuple[str, ...]
    steady: tuple[str, ...]
    start: datetime
    weeks: int


def planted_history(
    *, start: datetime, weeks: int = 30, places: int = 100, seed: int = 7
) -> PlantedHistory:
    """`weeks` of history from the Monday (WIB) of `start`, reproducible from `seed`."""
    rng = random.Random(seed)
    first = week_start(start)
    names = tuple(f"seed-cam-{i:03d}/tepi-jalan" for i in range(places))
    shuffled = list(names)
    rng.shuffle(shuffled)
    rhythmic = tuple(sorted(shuffled[:8]))
    steady = tuple(sorted(shuffled[8:12]))
    evening = (18, 19, 20, 21, 22)
    incidents: list[Incident] = []

    def at(week: int, weekday: int, hour: int) -> datetime:
        return first + timedelta(days=7 * week + weekday, hours=hour, minutes=rng.randrange(60))

    plan = {p: (rng.randrange(7), rng.randrange(2)) for p in rhythmic + steady}
    base = {p: rng.uniform(0.05, 0.5) for p in names}
    for week in range(weeks):
        for place in names:
            # Background: a Poisson number a week, at any day and hour.
            for _ in range(_poisson(rng, base[place])):
                incidents.append(Incident(at(week, rng.randrange(7), rng.randrange(24)), place))
        for place in rhythmic:
            weekday, parity = plan[place]
            if week % 2 == parity:
                for _ in range(rng.choice((2, 3, 4))):
                    incidents.append(Incident(at(week, weekday, rng.choice(evening)), place))
        for place in steady:
            weekday, _ = plan[place]
            if rng.random() < 0.9:
                incidents.append(Incident(at(week, weekday, rng.choice(evening)), place))
        # Bursts: a place that is busy for one week and quiet again after.
        for place in rng.sample(names, 4):
            for _ in range(rng.choice((3, 4, 5))):
                incidents.append(Incident(at(week, rng.randrange(7), rng.randrange(24)), place))
    incidents.sort(key=lambda i: i.at)
    return PlantedHistory(tuple(incidents), names, rhythmic, steady, first, weeks)


def _poisson(rng: random.Random, mean: float) -> int:
    # Knuth's method: the means here are well under 1.
    limit, k, p = math.exp(-mean), 0, rng.random()
    while p > limit:
        k += 1
        p *= rng.random()
    return k
