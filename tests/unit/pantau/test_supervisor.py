"""The supervisor with real worker processes (small Python programs, no sockets)."""

from __future__ import annotations

import io
import json
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from pantau.messages import Metric
from pantau.settings import RuntimeSettings
from pantau.supervisor import Supervisor, WorkerSpec


def program(body: str) -> tuple[str, ...]:
    """A worker: Python code with `alive` (the heartbeat) and `run` (which start this is)."""
    prelude = (
        "import os, sys, time\n"
        "from pantau.runtime import alive, RUN_ENV\n"
        "run = int(os.environ[RUN_ENV])\n"
    )
    return (sys.executable, "-c", prelude + body)


def runtime(tmp_path: Path, **overrides: float) -> RuntimeSettings:
    values: dict[str, object] = {
        "restart_initial_s": 0.2,
        "restart_max_s": 0.8,
        "restart_reset_after_s": 30.0,
        "stall_after_s": 0.0,
        "status_dir": tmp_path,
        "status_interval_s": 0.2,
        **overrides,
    }
    return RuntimeSettings.model_validate(values)


class Recorder:
    def __init__(self) -> None:
        self.metrics: list[Metric] = []

    def __call__(self, messages: Sequence[Metric]) -> None:
        self.metrics.extend(messages)


def supervise(
    tmp_path: Path, workers: list[WorkerSpec], stop_after_s: float | None = None, **settings: float
) -> tuple[int, Supervisor, Recorder, str]:
    recorder = Recorder()
    err = io.BytesIO()
    supervisor = Supervisor(
        "test", workers, runtime(tmp_path, **settings), metrics=recorder, stderr=err
    )
    stop = threading.Event()
    if stop_after_s is not None:
        threading.Timer(stop_after_s, stop.set).start()
    code = supervisor.run(stop)
    return code, supervisor, recorder, err.getvalue().decode()


def test_a_failing_worker_is_restarted_with_its_reason_until_it_finishes(tmp_path: Path) -> None:
    # Fails twice, saying why on stderr, then does its work and exits 0.
    worker = WorkerSpec(
        "flaky",
        program(
            "if run < 3:\n"
            "    print('2026-12-07T00:00:00 ERROR   stage: the database is gone', file=sys.stderr)\n"
            "    sys.exit(3)\n"
            "print('done', file=sys.stderr)\n"
        ),
    )
    started = time.monotonic()
    code, supervisor, recorder, err = supervise(tmp_path, [worker])
    elapsed = time.monotonic() - started

    assert code == 0
    (status,) = supervisor.statuses()
    assert status.state == "done"
    assert status.restarts == 2
    # Back-off: 0.2 s, then 0.4 s before the third start.
    assert elapsed >= 0.6
    assert err.count("the database is gone") == 2 and "done" in err
    restarting = [m for m in recorder.metrics if m.labels.get("state") == "restarting"]
    assert restarting, "no metric said the worker was restarting"
    assert all(m.value == 0 for m in restarting if m.name == "up")
    assert restarting[0].labels["reason"] == (
        "exited with code 3: 2026-12-07T00:00:00 ERROR   stage: the database is gone"
    )
    assert max(m.value for m in recorder.metrics if m.name == "restarts") == 2
    document = json.loads((tmp_path / "test.json").read_text())
    assert document["workers"][0]["state"] == "done"
    assert document["workers"][0]["restarts"] == 2


def test_a_worker_whose_loop_stops_coming_round_is_restarted_as_stalled(tmp_path: Path) -> None:
    # The first run reports progress for a moment, then hangs (alive but stuck); the second
    # works and finishes.
    worker = WorkerSpec(
        "stuck",
        program(
            "if run == 1:\n"
            "    for _ in range(5):\n"
            "        alive(); time.sleep(0.3)\n"
            "    time.sleep(3600)\n"
            "for _ in range(3):\n"
            "    alive(); time.sleep(0.3)\n"
        ),
    )
    code, supervisor, recorder, _ = supervise(tmp_path, [worker], stall_after_s=1.5)
    assert code == 0
    (status,) = supervisor.statuses()
    assert status.restarts == 1
    stalled = [m for m in recorder.metrics if m.labels.get("state") == "stalled"]
    assert stalled, "no metric said the worker was stalled"
    assert "no progress for" in stalled[0].labels["reason"]


def test_stop_ends_every_worker_cleanly(tmp_path: Path) -> None:
    # Workers that run until SIGTERM, and then finish their batch and exit 0.
    body = (
        "import signal\n"
        "signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))\n"
        "while True:\n"
        "    alive(); time.sleep(0.1)\n"
    )
    workers = [WorkerSpec(f"w-{n}", program(body)) for n in (1, 2)]
    code, supervisor, recorder, _ = supervise(tmp_path, workers, stop_after_s=2.0)
    assert code == 0
    assert [s.state for s in supervisor.statuses()] == ["stopped", "stopped"]
    assert [s.restarts for s in supervisor.statuses()] == [0, 0]
    running = {m.labels["worker"] for m in recorder.metrics if m.labels["state"] == "running"}
    assert running == {"w-1", "w-2"}


def test_a_worker_killed_by_a_signal_is_named_so(tmp_path: Path) -> None:
    worker = WorkerSpec(
        "killed",
        program("import signal\nif run == 1:\n    os.kill(os.getpid(), signal.SIGKILL)\n"),
    )
    code, _supervisor, recorder, _ = supervise(tmp_path, [worker])
    assert code == 0
    reasons = {m.labels.get("reason") for m in recorder.metrics}
    assert "killed by SIGKILL" in reasons


def test_a_supervisor_needs_workers(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="needs at least one worker"):
        Supervisor("test", [], runtime(tmp_path))
