"""Process life-cycle helpers for long-running commands."""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType

log = logging.getLogger(__name__)


def stop_on_signals() -> threading.Event:
    """An event set by SIGTERM or SIGINT, so services finish their batch and exit cleanly."""
    stop = threading.Event()

    def handler(signum: int, _frame: FrameType | None) -> None:
        if stop.is_set():
            # A second signal means "now": let the default handler end the process.
            signal.signal(signum, signal.SIG_DFL)
            signal.raise_signal(signum)
        log.info("received %s: stopping after the current batch", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    return stop


def stop_after(stop: threading.Event, seconds: float | None) -> None:
    """Set `stop` after `seconds` (if given) without keeping the process alive for it."""
    if seconds is None:
        return
    timer = threading.Timer(seconds, stop.set)
    timer.daemon = True
    timer.start()
