"""Process life-cycle helpers for long-running commands."""

from __future__ import annotations

import gc
import logging
import os
import signal
import threading
import time
from types import FrameType

log = logging.getLogger(__name__)

# Set by the supervisor (`pantau.supervisor`) in the environment of each worker it starts: the
# worker's name (its presence means "run the stage here"), which start of it this is (1, 2,
# ...), and the pipe on which the worker reports that its main loop came round.
WORKER_ENV = "PANTAU_WORKER"
RUN_ENV = "PANTAU_RUN"
HEARTBEAT_FD_ENV = "PANTAU_HEARTBEAT_FD"
# Exit code of a process whose thread died of an exception nobody caught.
EXIT_THREAD_DIED = 70

_beat_fd: int | None = None
_beat_at = 0.0
_beat_lock = threading.Lock()


def alive() -> None:
    """Tell the supervisor that this worker's main loop came round (at most once a second).

    Costs a clock read when called more often; does nothing outside a supervised worker. A
    loop that stops calling it (stuck in a call, waiting on a dead thread) is restarted after
    `runtime.stall_after_s`.
    """
    global _beat_fd, _beat_at
    now = time.monotonic()
    if now - _beat_at < 1.0:
        return
    with _beat_lock:
        _beat_at = now
        if _beat_fd is None:
            raw = os.environ.get(HEARTBEAT_FD_ENV)
            if not raw or not raw.isdigit():
                _beat_fd = -1
                return
            _beat_fd = int(raw)
            os.set_blocking(_beat_fd, False)
        if _beat_fd < 0:
            return
        try:
            os.write(_beat_fd, b".")
        except BlockingIOError:
            pass  # the supervisor has not read the last beats yet: it knows we are alive
        except OSError:
            _beat_fd = -1  # no supervisor any more (it is gone, and so will we be)


def exit_when_a_thread_dies() -> None:
    """A thread that dies of an uncaught exception ends the process with EXIT_THREAD_DIED.

    Without this a stage whose worker thread died (the MQTT loop, a camera reader, the sink's
    writer) lives on, silent, doing nothing: the worst failure, because nobody sees it. Ended,
    the supervisor restarts it and says why; offsets were committed only for stored data, so
    nothing is lost.
    """

    def hook(args: threading.ExceptHookArgs) -> None:
        if args.exc_type is SystemExit:
            return
        name = args.thread.name if args.thread is not None else "?"
        log.critical(
            "thread %s died: %s; exiting so that the stage starts afresh",
            name,
            args.exc_value,
            exc_info=(args.exc_type, args.exc_value, args.exc_traceback),  # type: ignore[arg-type]
        )
        logging.shutdown()
        os._exit(EXIT_THREAD_DIED)

    threading.excepthook = hook


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
