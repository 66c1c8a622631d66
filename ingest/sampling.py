"""Pure timing helpers for the camera loop: frame sampling (from the spine) and reconnect
back-off."""

from __future__ import annotations

import random

from pantau.sampling import FpsSampler

__all__ = ["Backoff", "FpsSampler"]


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
