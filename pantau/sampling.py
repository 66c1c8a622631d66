"""Frame sampling on a source's own clock, shared by the camera ingest and the offline
detector run, so that a file replayed through Kafka and the same file run offline keep the
same frames."""

from __future__ import annotations


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
