"""A file's frame times stay in order whatever its container reports."""

from __future__ import annotations

import logging
import math

import pytest

from pantau.sampling import FileClock


def times(clock: FileClock, reported: list[float]) -> list[float]:
    return [round(clock.time(t), 3) for t in reported]


@pytest.mark.parametrize(
    ("fps", "reported", "expected"),
    [
        # A well-behaved file: its positions as they are.
        (10.0, [0.0, 0.1, 0.2, 0.3], [0.0, 0.1, 0.2, 0.3]),
        # The last frame reads 0.000 after 38.8 s (as some AVI files do).
        (10.0, [38.6, 38.7, 38.8, 0.0], [38.6, 38.7, 38.8, 38.9]),
        # The same position twice, then forward again: trusted again.
        (25.0, [1.0, 1.0, 1.08, 1.12], [1.0, 1.04, 1.08, 1.12]),
        # Backwards in the middle, then a position the derived time already passed.
        (10.0, [5.0, 3.0, 5.05, 5.3], [5.0, 5.1, 5.2, 5.3]),
        # No position at all: counted from the frame rate.
        (5.0, [math.nan, math.nan, 0.0, 0.0], [0.0, 0.2, 0.4, 0.6]),
        # A container without a frame rate: 25 per second.
        (0.0, [2.0, 2.0, 2.0], [2.0, 2.04, 2.08]),
        (math.inf, [2.0, 2.0], [2.0, 2.04]),
    ],
)
def test_frame_times_always_move_forward(
    fps: float, reported: list[float], expected: list[float]
) -> None:
    assert times(FileClock(fps, name="clip.avi"), reported) == pytest.approx(expected)


def test_a_correction_is_told_once_per_file(caplog: pytest.LogCaptureFixture) -> None:
    clock = FileClock(10.0, name="clip.avi")
    with caplog.at_level(logging.WARNING, logger="pantau.sampling"):
        times(clock, [1.0, 0.0, 0.0, 2.0, 0.0])
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "clip.avi" in warnings[0].getMessage()
    assert clock.corrected == 3
