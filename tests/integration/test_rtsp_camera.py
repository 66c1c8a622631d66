"""`pantau ingest camera` against a real, password-protected RTSP camera.

The camera is `scripts/rtsp-camera serve`: GStreamer's RTSP server playing the shared clip in
a loop behind Basic authentication, as an IP camera would. `scripts/rtsp-camera install` puts
its Debian packages in place once; without them these tests fail and say so.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np
import pytest

from pantau.codec import decode_as
from pantau.messages import CameraHeartbeat, Frame
from pantau.topics import Topics
from tests.conftest import REPO, SAMPLE_CLIP
from tests.integration.conftest import Pipeline

CAMERA = "demo-table"  # the first camera of configs/pantau.yaml, whose URL the tests override
USER = "operator"
SCRIPT = REPO / "scripts" / "rtsp-camera"
READY = "rtsp: serving "
INSTALL_HINT = "run `scripts/rtsp-camera install` once (it installs GStreamer's RTSP server)"
START_TIMEOUT_S = 30.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class RtspCamera:
    """One `scripts/rtsp-camera serve`, restartable on the same port with the same password."""

    clip: Path
    logs: Path
    port: int = field(default_factory=free_port)
    path: str = "clip"
    password: str = field(default_factory=lambda: secrets.token_urlsafe(12))
    process: subprocess.Popen[bytes] | None = None
    runs: list[Path] = field(default_factory=list)

    def url(self, password: str | None = None) -> str:
        return f"rtsp://{USER}:{password or self.password}@127.0.0.1:{self.port}/{self.path}"

    @property
    def safe_url(self) -> str:
        """The URL as pantau must log it."""
        return f"rtsp://***@127.0.0.1:{self.port}/{self.path}"

    def start(self) -> None:
        assert self.process is None, "already running"
        log = self.logs / f"rtsp-camera-{len(self.runs)}.log"
        self.runs.append(log)
        command = [str(SCRIPT), "serve", "--port", str(self.port), "--user", USER]
        command += ["--path", self.path, str(self.clip)]
        # The password travels in the environment, never on a command line others can list.
        env = {**os.environ, "RTSP_CAMERA_PASSWORD": self.password}
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, cwd=REPO, env=env
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while READY not in log.read_text(errors="replace"):
            code = self.process.poll()
            if code is not None:
                self.process = None
                pytest.fail(
                    f"scripts/rtsp-camera serve exited {code} before serving; {INSTALL_HINT} "
                    f"if it is missing.\n{self.output()}",
                    pytrace=False,
                )
            if time.monotonic() > deadline:
                self.stop()
                pytest.fail(
                    f"scripts/rtsp-camera serve printed no {READY!r} line within "
                    f"{START_TIMEOUT_S:.0f} s:\n{self.output()}",
                    pytrace=False,
                )
            time.sleep(0.1)

    def kill(self) -> None:
        """The camera dies without a word: no RTSP TEARDOWN, no clean shutdown."""
        assert self.process is not None, "not running"
        self.process.kill()
        self.process.wait(timeout=10)
        self.process = None

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def output(self) -> str:
        return "\n".join(log.read_text(errors="replace") for log in self.runs)


@pytest.fixture
def rtsp_camera(shared_data: Path, tmp_path: Path) -> Iterator[RtspCamera]:
    if not os.access(SCRIPT, os.X_OK):
        pytest.fail(f"{SCRIPT.relative_to(REPO)} is missing or not executable", pytrace=False)
    logs = tmp_path / "rtsp"
    logs.mkdir()
    camera = RtspCamera(clip=SAMPLE_CLIP, logs=logs)
    camera.start()
    try:
        yield camera
    finally:
        camera.stop()
    # The server is handed the password; it must not repeat it.
    assert camera.password not in camera.output()


def ingest_env(url: str, **extra: str) -> dict[str, str]:
    return {"PANTAU__CAMERAS__0__URL": url, "PANTAU__LOGGING__LEVEL": "DEBUG", **extra}


def assert_no_credentials(text: str, *passwords: str) -> None:
    for password in passwords:
        assert password not in text
    assert f"{USER}:" not in text


def frames_of(pipeline: Pipeline) -> list[Frame]:
    records = pipeline.read_topic(Topics(pipeline.settings.kafka).frames)
    return [decode_as(r.value, Frame) for r in records]


def beats_of(pipeline: Pipeline) -> list[CameraHeartbeat]:
    records = pipeline.read_topic(Topics(pipeline.settings.kafka).camera_health)
    return [decode_as(r.value, CameraHeartbeat) for r in records]


def clip_frames(seconds: float, width: int, height: int) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(SAMPLE_CLIP))
    frames = []
    try:
        while capture.get(cv2.CAP_PROP_POS_MSEC) < seconds * 1000:
            ok, image = capture.read()
            if not ok:
                break
            frames.append(cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA))
    finally:
        capture.release()
    return frames


def test_camera_with_credentials_publishes_frames_and_never_logs_them(
    pipeline: Pipeline, rtsp_camera: RtspCamera
) -> None:
    out = pipeline.run(
        "ingest", "camera", "--max-frames", "10", timeout=60, env=ingest_env(rtsp_camera.url())
    )
    assert f"camera {CAMERA}: opened {rtsp_camera.safe_url}" in out
    assert f"camera {CAMERA}: decoded" in out and "published 10," in out
    assert_no_credentials(out, rtsp_camera.password)
    assert "client 127.0.0.1 connected" in rtsp_camera.output()

    frames = frames_of(pipeline)
    assert len(frames) == 10
    # A live stream has no file position; max_width 640 scales the camera's 768x432 down.
    assert all(f.camera_id == CAMERA and f.source_pos_ms is None for f in frames)
    assert {(f.width, f.height) for f in frames} == {(640, 360)}
    assert [f.seq for f in frames] == list(range(frames[0].seq, frames[0].seq + 10))
    # The pictures are the clip's: each first client starts the camera at the beginning of it.
    reference = clip_frames(15, 640, 360)
    for frame in frames:
        image = cv2.imdecode(np.frombuffer(frame.jpeg, np.uint8), cv2.IMREAD_COLOR)
        assert image is not None and image.shape == (360, 640, 3)
        closest = min(float(np.mean(cv2.absdiff(image, r))) for r in reference)
        assert closest < 8, f"a published frame differs from every clip frame ({closest:.1f})"

    beats = beats_of(pipeline)
    assert beats and beats[-1].status == "ended" and beats[-1].frames_published == 10
    assert "online" in {b.status for b in beats}
    assert beats[-1].reconnects == 0


def test_wrong_password_keeps_retrying_without_frames_or_leaks(
    pipeline: Pipeline, rtsp_camera: RtspCamera
) -> None:
    wrong = f"wrong-{secrets.token_hex(6)}"
    process = pipeline.start(
        "camera", "ingest", "camera", "--duration", "6", env=ingest_env(rtsp_camera.url(wrong))
    )
    assert process.wait(timeout=60) == 0, pipeline.log_of(process)
    log = pipeline.log_of(process)
    assert f"cannot open {rtsp_camera.safe_url}" in log
    assert log.count("retrying in") >= 2
    assert_no_credentials(log, wrong, rtsp_camera.password)
    # It reached the camera and was turned away, unlike an unreachable address.
    assert "client 127.0.0.1 connected" in rtsp_camera.output()

    assert frames_of(pipeline) == []
    beats = beats_of(pipeline)
    assert len(beats) >= 3
    statuses = {b.status for b in beats[:-1]}
    assert "reconnecting" in statuses
    assert statuses <= {"connecting", "reconnecting"}
    assert all(b.frames_published == 0 for b in beats)
    assert beats[-1].status == "ended" and beats[-1].reconnects >= 2
    for beat in beats:
        assert_no_credentials(beat.last_error or "", wrong, rtsp_camera.password)


def test_camera_that_dies_and_comes_back_is_reconnected(
    pipeline: Pipeline, rtsp_camera: RtspCamera
) -> None:
    process = pipeline.start(
        "camera",
        "ingest",
        "camera",
        env=ingest_env(rtsp_camera.url(), PANTAU__INGEST__RECONNECT_MAX_S="2"),
    )
    pipeline.wait_for("frames from the camera", lambda: len(frames_of(pipeline)) >= 5, 30, 1)
    assert "retrying in" not in pipeline.log_of(process)

    killed = datetime.now(UTC)
    rtsp_camera.kill()
    noticed: list[CameraHeartbeat] = []

    def dead_camera_noticed() -> bool:
        noticed[:] = [b for b in beats_of(pipeline) if b.ts_capture > killed]
        return any(b.status == "reconnecting" for b in noticed)

    # The RTSP connection closes with the server, so no read timeout has to run out.
    pipeline.wait_for("a reconnecting heartbeat after the kill", dead_camera_noticed, 8, 0.5)
    first = next(b for b in noticed if b.status == "reconnecting")
    print(f"dead camera reported within {(first.ts_capture - killed).total_seconds():.1f} s")
    # While the camera is down the ingest keeps trying (and failing) to open it.
    pipeline.wait_for("a failed reopen", lambda: "retrying in" in pipeline.log_of(process), 10)

    restarted = datetime.now(UTC)
    rtsp_camera.start()
    pipeline.wait_for(
        "frames after the camera came back",
        lambda: sum(f.ts_capture > restarted for f in frames_of(pipeline)) >= 5,
        30,
        1,
    )
    assert pipeline.stop(process) == 0, pipeline.log_of(process)

    log = pipeline.log_of(process)
    assert log.count(f"camera {CAMERA}: opened {rtsp_camera.safe_url}") == 2
    assert "reconnecting" in log
    assert_no_credentials(log, rtsp_camera.password)

    frames = frames_of(pipeline)
    # One sequence across the outage: nothing published was lost or numbered twice.
    assert [f.seq for f in frames] == list(range(frames[0].seq, frames[0].seq + len(frames)))
    assert {(f.width, f.height) for f in frames} == {(640, 360)}
    beats = beats_of(pipeline)
    assert beats[-1].status == "ended" and beats[-1].reconnects >= 1
    assert beats[-1].frames_published == len(frames)
    assert any(b.status == "online" and b.ts_capture > restarted for b in beats)
    for beat in beats:
        assert_no_credentials(beat.last_error or "", rtsp_camera.password)
