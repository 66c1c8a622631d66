"""The supervisor every long-running `pantau` command runs under.

`pantau sink`, `pantau detect`, `pantau ingest ...`, `pantau streams`, `pantau notify` start
their stage in worker processes (one, or `sink.workers` for the sink) and watch them:

- A worker that exits with an error, or is killed, is started again after a back-off
  (`runtime.restart_initial_s`, doubling up to `runtime.restart_max_s`; a worker that ran
  `runtime.restart_reset_after_s` starts afresh). Exit code 75 asks for a fresh worker at once
  (the stream processor's stall watchdog uses it). Exit code 0 means the work is done (a
  `--duration` or `--idle-exit` ran out): that worker is not started again.
- A worker's main loop reports that it came round through a pipe (`pantau.runtime.alive`). A
  worker silent for `runtime.stall_after_s` is alive but stuck (a dead thread it waits on, a
  blocked call): it is stopped and started again, with "stalled" as the reason.
- The supervisor says what it sees: in its log, with the reason a worker stopped (its exit
  code and the last error it logged); in a status file per command under
  `runtime.status_dir` (`pantau health` prints them); as `up` and `restarts` metrics on
  `pipeline.metrics.v1`, which the sink stores and the pipeline dashboard shows; and, when
  `runtime.health_port` is set, over HTTP (`/healthz`, `/readyz`, `/metrics`: see
  `pantau.health_http`) from the state its loop publishes each time round. A stage that is
  restarting or silent is visible on the wall, not only in a log nobody reads.

Workers inherit stdout; their stderr passes through the supervisor line by line, which keeps
the last lines for the reason. SIGTERM or SIGINT stop the workers (each finishes its batch)
and then the supervisor; if the supervisor itself is killed, the kernel kills its workers.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Literal

from pantau.health_http import UP_STATES, HealthSnapshot, WorkerHealth
from pantau.ids import SeqCounter, stable_id
from pantau.messages import Metric
from pantau.runtime import HEARTBEAT_FD_ENV, RUN_ENV, WORKER_ENV, die_with_parent
from pantau.settings import RuntimeSettings

log = logging.getLogger(__name__)

# A worker that exits with this code wants to be replaced at once, without back-off.
EXIT_RESTART_NOW = 75
# How long a stopping worker may take to finish its batch before it is killed.
_STOP_TIMEOUT_S = 90.0
# A stalled worker gets this long after SIGTERM before SIGKILL.
_STALL_KILL_AFTER_S = 10.0
_TICK_S = 0.2

State = Literal["starting", "running", "restarting", "stalled", "stopping", "stopped", "done"]


@dataclass(frozen=True)
class WorkerSpec:
    """One worker: its name (shown in status and metrics) and its command line."""

    name: str
    command: tuple[str, ...]


@dataclass
class WorkerStatus:
    name: str
    state: State = "starting"
    pid: int | None = None
    restarts: int = 0
    started_at: datetime | None = None
    reason: str | None = None
    exit_code: int | None = None

    def as_json(self, now: float, last_beat: float | None) -> dict[str, object]:
        return {
            "name": self.name,
            "state": self.state,
            "pid": self.pid,
            "restarts": self.restarts,
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "reason": self.reason,
            "exit_code": self.exit_code,
            "last_progress_s": round(now - last_beat, 1) if last_beat is not None else None,
        }


MetricsSink = Callable[[Sequence[Metric]], None]


@dataclass
class _Worker:
    spec: WorkerSpec
    status: WorkerStatus
    process: subprocess.Popen[bytes] | None = None
    beat_fd: int | None = None
    started: float = 0.0
    last_beat: float | None = None
    restart_at: float | None = None
    delay_s: float = 0.0
    kill_at: float | None = None
    stderr_tail: deque[str] = field(default_factory=lambda: deque(maxlen=40))
    reader: threading.Thread | None = None


class Supervisor:
    """Runs `workers` until they are done or `stop` is set; see the module's docstring."""

    def __init__(
        self,
        component: str,
        workers: Sequence[WorkerSpec],
        runtime: RuntimeSettings,
        *,
        env: Mapping[str, str] | None = None,
        metrics: MetricsSink | None = None,
        stderr: IO[bytes] | None = None,
    ) -> None:
        if not workers:
            raise ValueError(f"{component}: a supervisor needs at least one worker")
        self.component = component
        self._runtime = runtime
        self._env = dict(os.environ if env is None else env)
        self._metrics = metrics
        self._stderr = stderr if stderr is not None else sys.stderr.buffer
        self._stderr_lock = threading.Lock()
        self._workers = [_Worker(spec, WorkerStatus(spec.name)) for spec in workers]
        self._instance = f"{socket.gethostname()}-{os.getpid()}"
        self._seq = SeqCounter()
        self._status_at = 0.0
        self._status_path = runtime.status_dir / f"{component}.json"
        self._started_unix_s = time.time()
        # Replaced (never changed) by the loop each time round, so that the health server's
        # thread reads one consistent picture without a lock.
        self._health: HealthSnapshot | None = None

    # ------------------------------------------------------------------ loop

    def run(self, stop: threading.Event) -> int:
        for worker in self._workers:
            self._start(worker)
        self._report(force=True)
        self._take_health(running=True)
        try:
            while not stop.wait(_TICK_S):
                now = time.monotonic()
                for worker in self._workers:
                    self._tend(worker, now)
                self._report()
                self._take_health(running=True)
                if all(w.status.state == "done" for w in self._workers):
                    break
        finally:
            self._take_health(running=False)
            code = self._stop_all()
            self._report(force=True)
            self._take_health(running=False)
        return code

    def _tend(self, worker: _Worker, now: float) -> None:
        status = worker.status
        if status.state in ("done", "stopped"):
            return
        if status.state == "restarting":
            if worker.restart_at is not None and now >= worker.restart_at:
                self._start(worker)
            return
        self._read_beats(worker, now)
        process = worker.process
        assert process is not None
        code = process.poll()
        if code is not None:
            self._exited(worker, code, now)
            return
        if status.state == "starting" and worker.last_beat is not None:
            status.state = "running"
            self._report(force=True)
        stall_s = self._runtime.stall_after_s
        if stall_s > 0 and status.state in ("starting", "running"):
            silent_s = now - (worker.last_beat if worker.last_beat is not None else worker.started)
            if silent_s >= stall_s:
                status.state = "stalled"
                status.reason = f"no progress for {silent_s:.0f} s: stopped to start afresh"
                log.error("%s: worker %s (pid %d) %s", self.component, status.name,
                          process.pid, status.reason)  # fmt: skip
                process.send_signal(signal.SIGTERM)
                worker.kill_at = now + _STALL_KILL_AFTER_S
                self._report(force=True)
        elif status.state == "stalled" and worker.kill_at is not None and now >= worker.kill_at:
            log.error("%s: worker %s did not stop; killing it", self.component, status.name)
            process.kill()
            worker.kill_at = None

    def _exited(self, worker: _Worker, code: int, now: float) -> None:
        status = worker.status
        self._close_worker(worker)
        status.exit_code = code
        status.pid = None
        if code == 0 and status.state != "stalled":
            status.state = "done"
            status.reason = None
            log.info("%s: worker %s finished", self.component, status.name)
            self._report(force=True)
            return
        ran_s = now - worker.started
        if status.state == "stalled":
            reason = status.reason or "stalled"
        else:
            reason = f"{_exit_text(code)}{_last_error(worker.stderr_tail)}"
        if code == EXIT_RESTART_NOW:
            delay = 0.0
        elif ran_s >= self._runtime.restart_reset_after_s or worker.delay_s == 0:
            delay = self._runtime.restart_initial_s
        else:
            delay = min(worker.delay_s * 2, self._runtime.restart_max_s)
        worker.delay_s = delay
        worker.restart_at = now + delay
        status.state = "restarting"
        status.reason = reason
        status.restarts += 1
        log.error(
            "%s: worker %s stopped after %.0f s (%s); restarting in %.1f s (restart %d)",
            self.component,
            status.name,
            ran_s,
            reason,
            delay,
            status.restarts,
        )
        self._report(force=True)

    # ------------------------------------------------------------------ processes

    def _start(self, worker: _Worker) -> None:
        read_fd, write_fd = os.pipe()
        os.set_blocking(read_fd, False)
        env = {
            **self._env,
            WORKER_ENV: worker.spec.name,
            RUN_ENV: str(worker.status.restarts + 1),
            HEARTBEAT_FD_ENV: str(write_fd),
        }
        try:
            process = subprocess.Popen(
                list(worker.spec.command),
                env=env,
                stderr=subprocess.PIPE,
                pass_fds=(write_fd,),
                preexec_fn=die_with_parent,
            )
        finally:
            os.close(write_fd)
        worker.process = process
        worker.beat_fd = read_fd
        worker.started = time.monotonic()
        worker.last_beat = None
        worker.restart_at = None
        worker.kill_at = None
        worker.stderr_tail.clear()
        status = worker.status
        status.state = "starting"
        status.pid = process.pid
        status.started_at = datetime.now(UTC)
        status.exit_code = None
        assert process.stderr is not None
        worker.reader = threading.Thread(
            target=self._pass_stderr,
            args=(process.stderr, worker.stderr_tail),
            name=f"stderr-{worker.spec.name}",
            daemon=True,
        )
        worker.reader.start()
        log.info("%s: started worker %s (pid %d)", self.component, status.name, process.pid)

    def _pass_stderr(self, stream: IO[bytes], tail: deque[str]) -> None:
        for line in iter(stream.readline, b""):
            with self._stderr_lock:
                try:
                    self._stderr.write(line)
                    self._stderr.flush()
                except (OSError, ValueError):
                    pass
            tail.append(line.decode(errors="replace").rstrip())
        stream.close()

    def _read_beats(self, worker: _Worker, now: float) -> None:
        if worker.beat_fd is None:
            return
        try:
            data = os.read(worker.beat_fd, 4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            worker.last_beat = now

    def _close_worker(self, worker: _Worker) -> None:
        if worker.reader is not None:
            # The stderr pipe ends with the process; its last lines carry the reason.
            worker.reader.join(timeout=2)
            worker.reader = None
        if worker.beat_fd is not None:
            os.close(worker.beat_fd)
            worker.beat_fd = None

    def _stop_all(self) -> int:
        running = [w for w in self._workers if w.process is not None and w.process.poll() is None]
        for worker in running:
            worker.status.state = "stopping"
            assert worker.process is not None
            worker.process.send_signal(signal.SIGTERM)
        code = 0
        for worker in self._workers:
            process = worker.process
            if process is None:
                continue
            try:
                process.wait(timeout=_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                log.error("%s: worker %s did not stop in %.0f s; killing it",
                          self.component, worker.spec.name, _STOP_TIMEOUT_S)  # fmt: skip
                process.kill()
                process.wait()
            self._close_worker(worker)
            if worker in running:
                worker.status.state = "stopped"
                worker.status.pid = None
                worker.status.exit_code = process.returncode
                returned = _exit_status(process.returncode)
                if returned and not code:
                    code = returned
        return code

    # ------------------------------------------------------------------ reporting

    def statuses(self) -> list[WorkerStatus]:
        return [w.status for w in self._workers]

    def health(self) -> HealthSnapshot | None:
        """The state the loop last saw (None before it started), for the health server."""
        return self._health

    def _take_health(self, *, running: bool) -> None:
        workers = []
        for worker in self._workers:
            status = worker.status
            workers.append(
                WorkerHealth(
                    name=status.name,
                    state=status.state,
                    restarts=status.restarts,
                    started=worker.started,
                    last_beat=worker.last_beat,
                    ended=None if status.exit_code is None else _exit_text(status.exit_code),
                )
            )
        self._health = HealthSnapshot(
            component=self.component,
            started_unix_s=self._started_unix_s,
            taken_at=time.monotonic(),
            running=running,
            stall_after_s=self._runtime.stall_after_s,
            workers=tuple(workers),
        )

    def _report(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._status_at < self._runtime.status_interval_s:
            return
        self._status_at = now
        self._write_status(now)
        if self._metrics is not None:
            try:
                self._metrics(self._metric_messages())
            except Exception as exc:
                # Metrics are the wall's view; a broker that is down must not stop the
                # supervisor, whose job matters most exactly then.
                log.debug("%s: metrics not sent: %s", self.component, exc)

    def _write_status(self, now: float) -> None:
        document = {
            "component": self.component,
            "instance": self._instance,
            "updated_at": datetime.now(UTC).isoformat(),
            "workers": [w.status.as_json(now, w.last_beat) for w in self._workers],
        }
        try:
            self._status_path.parent.mkdir(parents=True, exist_ok=True)
            scratch = self._status_path.with_suffix(f".{os.getpid()}.tmp")
            scratch.write_text(json.dumps(document, indent=2) + "\n")
            scratch.replace(self._status_path)
        except OSError as exc:
            log.warning("%s: cannot write %s: %s", self.component, self._status_path, exc)

    def _metric_messages(self) -> list[Metric]:
        at = datetime.now(UTC)
        messages = []
        for worker in self._workers:
            status = worker.status
            labels = {"worker": status.name, "state": status.state}
            if status.reason:
                labels["reason"] = status.reason[:1000]
            up = 1.0 if status.state in UP_STATES else 0.0
            for name, value, unit in (
                ("up", up, ""),
                ("restarts", float(status.restarts), "restarts"),
            ):
                messages.append(
                    Metric(
                        id=stable_id("supervisor", self._instance, status.name, name, at),
                        ts_capture=at,
                        seq=next(self._seq),
                        component=self.component,
                        # One series per worker: the table's key is (component, instance,
                        # metric, time), and the workers of one supervisor report together.
                        instance=f"{self._instance}/{status.name}",
                        name=name,
                        value=value,
                        unit=unit,
                        labels=labels,
                    )
                )
        return messages


def _exit_status(code: int) -> int:
    """A stopped worker's code as this process's exit status: 0 for one that ended by the
    SIGTERM it was sent (a worker still starting has no handler yet), 128 + n for another
    signal, as a shell reports it."""
    if code == -signal.SIGTERM:
        return 0
    return 128 - code if code < 0 else code


def _exit_text(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with code {code}"


def _last_error(tail: deque[str]) -> str:
    """': <the last error the worker logged or printed>', or nothing."""
    for line in reversed(tail):
        if " ERROR " in line or " CRITICAL " in line or line.startswith("pantau"):
            return f": {_clip(line.strip())}"
        if line and not line[0].isspace() and ("Error" in line or "Exception" in line):
            # The last line of a traceback: "RuntimeError: Kafka did not ..."
            return f": {_clip(line.strip())}"
    return ""


def _clip(line: str) -> str:
    return line if len(line) <= 300 else line[:297] + "..."


def read_statuses(status_dir: Path) -> list[dict[str, object]]:
    """The status documents of every supervised command (for `pantau health`)."""
    documents = []
    for path in sorted(status_dir.glob("*.json")):
        try:
            documents.append(json.loads(path.read_text()))
        except (OSError, ValueError) as exc:
            log.warning("cannot read %s: %s", path, exc)
    return documents
