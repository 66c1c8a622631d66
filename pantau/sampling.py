"""Frame sampling on a source's own clock, shared by the camera ingest and the offline
detector run, so that a file replayed through Kafka and the same file run offline keep the
same frames."""

from __future__ import annotations

import logging
import math

log = logging.getLogger(__name__)


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


class FileClock:
    """A file's frame times, in order whatever the container says.

    Some containers report no position (0 or NaN), the same one twice, or one that goes
    back (an AVI whose last frame reads 0.000 after 38.8 s). Such a frame gets the time of
    the frame before plus one frame period at the file's own rate; the next position that
    moves forward is trusted again. The first correction is logged once per file.
    """

    # A container that reports no frame rate (or a nonsense one) is taken to run at this.
    DEFAULT_FPS = 25.0

    def __init__(self, fps: float | None, *, name: str) -> None:
        usable = fps is not None and math.isfinite(fps) and 0.5 <= fps <= 1000.0
        self.period = 1.0 / (fps if usable and fps is not None else self.DEFAULT_FPS)
        self.name = name
        self.corrected = 0
        self._last: float | None = None

    def time(self, reported_s: float) -> float:
        last = self._last
        if math.isfinite(reported_s) and (last is None or reported_s > last):
            self._last = reported_s
            return reported_s
        derived = 0.0 if last is None else last + self.period
        if self.corrected == 0:
            log.warning(
                "%s: the container gave the position %s after %s; frame times are counted "
                "from the frame rate (%.3f s per frame) until it moves forward again",
                self.name,
                f"{reported_s:.3f}" if math.isfinite(reported_s) else "none",
                "the start" if last is None else f"{last:.3f} s",
                self.period,
            )
        self.corrected += 1
        self._last = derived
        return derived
