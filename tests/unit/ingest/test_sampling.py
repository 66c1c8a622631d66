from __future__ import annotations

import itertools
import random

import pytest

from ingest.sampling import Backoff, FpsSampler


def kept(sampler: FpsSampler, times: list[float]) -> list[float]:
    return [t for t in times if sampler.take(t)]


def test_ten_fps_source_sampled_at_five() -> None:
    times = [i / 10 for i in range(100)]  # 10 s of a 10 fps camera
    assert len(kept(FpsSampler(5), times)) == 50


def test_sampling_follows_source_time_not_call_count() -> None:
    # A 30 fps source sampled at 2 fps keeps 2 frames per second of video.
    times = [i / 30 for i in range(300)]
    chosen = kept(FpsSampler(2), times)
    assert len(chosen) == 20
    gaps = [b - a for a, b in itertools.pairwise(chosen)]
    assert min(gaps) >= 0.49


def test_gap_does_not_cause_a_burst() -> None:
    sampler = FpsSampler(5)
    assert kept(sampler, [0.0, 0.2, 0.4]) == [0.0, 0.2, 0.4]
    # The stream froze for 10 s; afterwards the rate is still 5 per second, not a catch-up burst.
    after = [10.0 + i / 25 for i in range(25)]
    assert len(kept(sampler, after)) == 5


def test_time_going_backwards_restarts_the_schedule() -> None:
    sampler = FpsSampler(5)
    kept(sampler, [i / 10 for i in range(50)])
    assert sampler.take(0.0)  # the file looped


def test_fps_must_be_positive() -> None:
    with pytest.raises(ValueError, match="fps must be positive"):
        FpsSampler(0)


def test_backoff_grows_to_its_ceiling_and_resets() -> None:
    backoff = Backoff(1.0, 8.0, rng=random.Random(3))
    delays = [backoff.next_delay() for _ in range(8)]
    for attempt, delay in enumerate(delays):
        ceiling = min(8.0, 2.0**attempt)
        assert ceiling / 2 <= delay <= ceiling
    backoff.reset()
    assert backoff.next_delay() <= 1.0
