"""Pure timing helpers for the camera loop: frame sampling and reconnect back-off."""

from __future__ import annotations

import random


class FpsSampler:
    """Picks frames so that about `fps` frames per second of source time are kept.

    Time is the source's own clock (a file's position, or wall-clock for live streams), so
    sampling does not depend on how fast frames are decoded.
    """

    def __init__(self, fps: float) -> None:
        if fps <= 0:
            raise ValueError(f"fps must be positive, got {fps}")
        self.period = 1.0 / fps
        self._due: float | None = None

    def take(self, t: float) -> bool:
        due = self._due
        # A jump backwards (a file looped, a stream restarted) starts a new schedule.
        if due is None or t < due - 2 * self.period:
            self._due = t + self.period
            return True
        if t + 1e-9 < due:
            return False
        # After a gap, schedule from now rather than emitting a burst to catch up.
        self._due = (t if t - due > self.period else due) + self.period
        return True


class Backoff:
    """Exponential back-off with full jitter, reset after a success."""

    def __init__(
        self, initial_s: float, maximum_s: float, rng: random.Random | None = None
    ) -> None:
        if initial_s <= 0 or maximum_s < initial_s:
            raise ValueError(f"need 0 < initial <= maximum, got {initial_s}, {maximum_s}")
        self.initial_s = initial_s
        self.maximum_s = maximum_s
        self.attempts = 0
        self._rng = rng or random.Random()

    def next_delay(self) -> float:
        ceiling = min(self.maximum_s, self.initial_s * (2**self.attempts))
        self.attempts += 1
        # Jitter spreads reconnects of many cameras after a network outage.
        return self._rng.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        self.attempts = 0
