"""Shared plumbing of the end-to-end benchmarks: `pantau` processes in an isolated slice of
the real services (own topic prefix, consumer groups and, where asked, database).

A `PipelineRun` is a context manager: on the way out, normally, on an error or on Ctrl-C /
SIGTERM, it stops every process it started (SIGTERM, then SIGKILL) and deletes the run's
topics. Children also get SIGKILL from the kernel if the benchmark itself is killed.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
import psycopg
from psycopg import sql

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pantau import kafka  # noqa: E402
from pantau.runtime import die_with_parent  # noqa: E402
from pantau.settings import Settings, load_settings  # noqa: E402

BASE_CONFIG = REPO / "configs" / "pantau.yaml"
SHARED_DATA = Path(os.environ.get("PANTAU_SHARED_DATA") or REPO.parent / "shared" / "data")


_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of these processes and of those they started (a supervised
    stage's workers), their threads included, in seconds."""
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / _TICK + cpu_seconds(children(pid))
    return total


def children(pid: int) -> list[int]:
    """The processes `pid` started (Linux)."""
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


class RunFailed(RuntimeError):
    """A stage died or did not get where it should in time (message carries its log tail)."""


def base_environ() -> dict[str, str]:
    """The environment without any PANTAU__ override a developer may have exported."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PANTAU__")}
    env["PANTAU_SHARED_DATA"] = str(SHARED_DATA)
    return env


def stop_on_sigterm() -> None:
    """Turn SIGTERM into KeyboardInterrupt, so `finally` and `with` cleanups run."""

    def handler(_signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


@contextmanager
def bench_database(prefix: str = "pantau_bench") -> Iterator[str]:
    """A fresh database migrated with the real `pantau migrate`, dropped afterwards."""
    settings = load_settings(BASE_CONFIG, base_environ())
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    owner: dict[str, Any] = dict(settings.postgres.connect_kwargs("owner"))
    with psycopg.connect(**owner, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        subprocess.run(
            [sys.executable, "-m", "pantau.cli", "--config", str(BASE_CONFIG), "migrate"],
            check=True,
            capture_output=True,
            env={**base_environ(), "PANTAU__POSTGRES__DBNAME": name},
            cwd=REPO,
            timeout=180,
        )
        yield name
    finally:
        with psycopg.connect(**owner, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@dataclass
class Stage:
    name: str
    process: subprocess.Popen[bytes]
    log: Path

    def tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:]


@dataclass
class PipelineRun:
    """One isolated run: `tag` names its topics (`{tag}.`) and consumer groups."""

    overrides: Mapping[str, str] = field(default_factory=dict)
    keep_logs: Path | None = None
    """Copy the stages' logs here when the run ends (they live in a temporary folder)."""
    tag: str = field(default_factory=lambda: f"bench{uuid.uuid4().hex[:8]}")
    stages: list[Stage] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._folder = tempfile.TemporaryDirectory(prefix=f"{self.tag}-")
        self.folder = Path(self._folder.name)
        self.env = {
            **base_environ(),
            "PANTAU__KAFKA__TOPIC_PREFIX": f"{self.tag}.",
            "PANTAU__DETECT__GROUP_ID": f"{self.tag}-detect",
            "PANTAU__SINK__GROUP_ID": f"{self.tag}-sink",
            "PANTAU__DETECT__SNAPSHOT_DIR": str(self.folder / "snapshots"),
            "PANTAU__DUMPING__EVIDENCE__DIR": str(self.folder / "evidence"),
            **self.overrides,
        }
        self.settings: Settings = load_settings(BASE_CONFIG, self.env)

    def __enter__(self) -> PipelineRun:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self.stop_all()
        finally:
            try:
                kafka.delete_topics(self.settings.kafka, f"{self.tag}.")
            finally:
                if self.keep_logs is not None:
                    target = self.keep_logs / self.tag
                    target.mkdir(parents=True, exist_ok=True)
                    for stage in self.stages:
                        shutil.copy(stage.log, target / stage.log.name)
                self._folder.cleanup()

    def start(self, name: str, *args: str, env: Mapping[str, str] | None = None) -> Stage:
        log = self.folder / f"{name}-{len(self.stages)}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "pantau.cli", "--config", str(BASE_CONFIG), *args],
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**self.env, **(env or {})},
                cwd=REPO,
                preexec_fn=die_with_parent,
            )
        stage = Stage(name, process, log)
        self.stages.append(stage)
        return stage

    def check_alive(self, *stages: Stage) -> None:
        for stage in stages:
            code = stage.process.poll()
            if code is not None:
                raise RunFailed(f"{stage.name} exited with {code}:\n{stage.tail()}")

    def wait_for_log(self, stage: Stage, text: str, timeout: float) -> None:
        self.wait_until(f"{text!r} in the {stage.name} log", lambda: text in stage.tail(10**6),
                        timeout, stage)  # fmt: skip

    def wait_until(
        self, what: str, check: Callable[[], bool], timeout: float, *alive: Stage
    ) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return
            self.check_alive(*alive)
            time.sleep(0.25)
        raise RunFailed(f"timed out after {timeout:.0f} s waiting for {what}")

    @staticmethod
    def stop(stage: Stage, timeout: float = 30) -> int:
        if stage.process.poll() is None:
            stage.process.send_signal(signal.SIGTERM)
        try:
            return stage.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            stage.process.kill()
            return stage.process.wait()

    def stop_all(self) -> None:
        for stage in reversed(self.stages):
            if stage.process.poll() is None:
                stage.process.send_signal(signal.SIGTERM)
        for stage in reversed(self.stages):
            self.stop(stage)


def sampled_frames(
    path: Path, fps: float, width: int, seconds: float = float("inf")
) -> Iterator[tuple[float, npt.NDArray[np.uint8]]]:
    """A video's frames as a camera ingest samples them: at most `fps` a second of its own
    time, scaled down to `width` pixels wide (never up); (seconds into the video, frame)."""
    capture = cv2.VideoCapture(str(path))
    native = capture.get(cv2.CAP_PROP_FPS) or 10.0
    index, next_t = 0, 0.0
    try:
        while True:
            ok, image = capture.read()
            if not ok:
                return
            t = index / native
            index += 1
            if t > seconds:
                return
            if t + 1e-6 < next_t:
                continue
            next_t += 1.0 / fps
            height, wide = image.shape[:2]
            if wide > width:
                size = (width, round(height * width / wide))
                image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
            yield t, np.asarray(image, dtype=np.uint8)
    finally:
        capture.release()
