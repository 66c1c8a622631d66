"""Hotspot risk without a database: the recency weighting, the day and hour profile shrunk
towards all places, the top-10 % ranking, and the rolling evaluation on a history with a
planted pattern that the score must find and last week's count misses."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest

from storage.risk import (
    WIB,
    HawkesModel,
    Incident,
    RiskModel,
    evaluate,
    naive_week,
    planted_history,
    score,
    top_places,
    week_start,
)

# Thursday 8 January 2026, 12:00 WIB.
T = datetime(2026, 1, 8, 12, tzinfo=WIB)


def at(days_before: float) -> datetime:
    return T - timedelta(days=days_before)


@pytest.mark.parametrize(
    ("age_days", "half_life", "weight"),
    [(0, 28, 1.0), (28, 28, 0.5), (56, 28, 0.25), (7, 7, 0.5), (3, 1, 0.125)],
)
def test_an_incident_weighs_half_as_much_each_half_life(
    age_days: float, half_life: float, weight: float
) -> None:
    assert RiskModel(half_life_days=half_life).weight(timedelta(days=age_days)) == weight


def test_score_is_the_weighted_count_per_week_spread_by_the_shrunk_profile() -> None:
    incidents = [
        Incident(at(1), "A"),  # Wednesday, weight 1/2
        Incident(at(2), "A"),  # Tuesday, weight 1/4
        Incident(at(3), "B"),  # Monday, weight 1/8
    ]
    risks = score(incidents, T, RiskModel(half_life_days=1, prior_strength=1))
    a, b = risks["A"], risks["B"]
    assert a.expected_week == pytest.approx(0.75 * 7 * math.log(2))
    assert b.expected_week == pytest.approx(0.125 * 7 * math.log(2))
    assert (a.incidents, b.incidents) == (2, 1)
    # All places: Monday 1/7, Tuesday 2/7, Wednesday 4/7 of the weight; A's own (1/4 on
    # Tuesday, 1/2 on Wednesday) plus one incident's worth of that, over 3/4 + 1.
    assert a.weekday_share == pytest.approx((4 / 49, 15 / 49, 30 / 49, 0, 0, 0, 0))
    assert a.likely_weekdays(2) == [2, 1]
    assert a.hour_share[12] == pytest.approx(1.0)
    assert a.likely_hours(1) == [12]
    assert a.expected_day(2) == pytest.approx(a.expected_week * 30 / 49)
    assert a.expected_slot(2, 12) == pytest.approx(a.expected_week * 30 / 49)
    assert a.expected_slot(2, 13) == 0.0


def test_score_reads_only_the_history_before_its_time_within_the_look_back() -> None:
    incidents = [
        Incident(T, "later"),
        Incident(T + timedelta(days=1), "later"),
        Incident(at(121), "forgotten"),
        Incident(at(119), "kept"),
    ]
    assert set(score(incidents, T)) == {"kept"}


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        Incident(datetime(2026, 1, 8, 12), "A")
    with pytest.raises(ValueError, match="naive"):
        score([], datetime(2026, 1, 8, 12))


def test_naive_ranking_is_last_weeks_count() -> None:
    incidents = [
        Incident(at(7), "A"),  # exactly a week before: counted
        Incident(at(7.5), "A"),  # earlier: not
        Incident(at(0.1), "B"),
        Incident(at(0.2), "B"),
        Incident(T, "C"),  # the coming week: not
    ]
    assert naive_week(incidents, T) == {"A": 1.0, "B": 2.0}


@pytest.mark.parametrize(
    ("places", "share", "expected"),
    [
        (["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"], 0.1, {"c"}),
        (["a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k"], 0.1, {"c", "a"}),
        (["z", "y"], 0.1, {"y"}),  # nobody scored: the first by name
    ],
)
def test_top_places_takes_the_top_share_ties_by_name(
    places: list[str], share: float, expected: set[str]
) -> None:
    scores = {"c": 3.0, "b": 1.0, "a": 1.0}
    assert top_places(scores, places, share) == expected


def test_evaluation_counts_the_coming_periods_incidents_in_each_top() -> None:
    places = [f"p{i}" for i in range(10)]
    # p1 dumped on steadily for four weeks; p2 once, in the last week.
    history = [Incident(at(7 * w + 1), "p1") for w in range(4)] + [
        Incident(at(2), "p2"),
        Incident(at(3), "p2"),
    ]
    coming = [Incident(T + timedelta(days=1), "p1"), Incident(T + timedelta(days=2), "p3")]
    result = evaluate(history + coming, places, [T])
    assert (result.periods, result.incidents) == (1, 2)
    # The score keeps p1 on top; last week's count puts p2 there.
    assert (result.risk_hits, result.naive_hits) == (1, 0)
    assert (result.risk_hit_rate, result.naive_hit_rate) == (0.5, 0.0)


def test_week_start_is_monday_midnight_wib() -> None:
    sunday_night_utc = datetime(2026, 1, 11, 18, tzinfo=UTC)  # Monday 01:00 WIB
    assert week_start(sunday_night_utc) == datetime(2026, 1, 12, tzinfo=WIB)


def test_the_score_finds_the_planted_pattern_that_last_weeks_count_misses() -> None:
    history = planted_history(start=datetime(2026, 1, 5, tzinfo=WIB), weeks=24, seed=3)
    weeks = [history.start + timedelta(weeks=w) for w in range(6, history.weeks)]
    weekly = evaluate(history.incidents, history.places, weeks)
    assert weekly.periods == 18
    assert weekly.risk_hit_rate > weekly.naive_hit_rate + 0.05

    days = [history.start + timedelta(days=d) for d in range(42, 7 * history.weeks, 3)]
    daily = evaluate(history.incidents, history.places, days, period=timedelta(days=1))
    assert daily.risk_hit_rate > daily.naive_hit_rate + 0.05

    # At the end, the places dumped on every other week are in the score's top tenth
    # whichever their week is; last week's count holds at most those of last week.
    end = history.start + timedelta(weeks=history.weeks)
    risks = score(history.incidents, end)
    top = top_places({p: r.expected_week for p, r in risks.items()}, history.places, 0.1)
    assert len(top & set(history.rhythmic)) >= 6
    # And their likely weekday is the one they were planted on, in the evening.
    for place in history.rhythmic:
        planted_days = {i.at.astimezone(WIB).weekday() for i in history.incidents[-400:]}
        assert risks[place].likely_weekdays(1)[0] in planted_days
        assert risks[place].likely_hours(1)[0] in range(18, 23)


def test_hawkes_week_is_background_plus_the_fading_boosts_share_of_the_coming_week() -> None:
    model = HawkesModel(alpha=0.5, decay_days=7, lookback_days=70)
    week = model.expected_week([Incident(at(7), "A"), Incident(at(71), "A")], T)
    # Background: half of one dumping in 70 days, for 7 days; the boost: half a dumping,
    # faded for one time constant, of which 1 - e^-1 falls in the coming week.
    assert week == {"A": pytest.approx(0.5 * 7 / 70 + 0.5 * math.exp(-1) * (1 - math.exp(-1)))}
