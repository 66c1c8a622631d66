"""An MJPEG-over-HTTP camera with basic authentication, as cheap IP cameras serve it."""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import cv2
import numpy as np
import pytest

from pantau.codec import decode_as
from pantau.messages import Frame
from pantau.topics import Topics
from tests.conftest import SAMPLE_CLIP
from tests.integration.conftest import Pipeline

USER, PASSWORD = "operator", "Kamera-Rahasia-7"
BOUNDARY = "pantauframe"


def clip_jpegs(count: int) -> list[bytes]:
    capture = cv2.VideoCapture(str(SAMPLE_CLIP))
    capture.set(cv2.CAP_PROP_POS_MSEC, 9000)
    frames = []
    while len(frames) < count:
        ok, image = capture.read()
        assert ok
        frames.append(cv2.imencode(".jpg", image)[1].tobytes())
    capture.release()
    return frames


class MjpegCamera(BaseHTTPRequestHandler):
    frames: ClassVar[list[bytes]] = []
    expected_auth = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()

    def do_GET(self) -> None:
        if self.headers.get("Authorization") != self.expected_auth:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="camera"')
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
        self.end_headers()
        try:
            for i in range(10_000):
                jpeg = self.frames[i % len(self.frames)]
                self.wfile.write(
                    f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\n"
                    f"Content-Length: {len(jpeg)}\r\n\r\n".encode()
                )
                self.wfile.write(jpeg + b"\r\n")
                time.sleep(0.1)  # a 10 fps camera
        except (BrokenPipeError, ConnectionResetError):
            return

    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.fixture
def http_camera() -> Iterator[str]:
    MjpegCamera.frames = clip_jpegs(20)
    server = ThreadingHTTPServer(("127.0.0.1", 0), MjpegCamera)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://{USER}:{PASSWORD}@127.0.0.1:{server.server_address[1]}/video.mjpg"
    server.shutdown()
    server.server_close()


def test_mjpeg_http_camera_with_credentials(pipeline: Pipeline, http_camera: str) -> None:
    process = pipeline.start(
        "camera",
        "ingest",
        "camera",
        "--max-frames",
        "8",
        "--duration",
        "40",
        # The looped 2 s of a person standing still would be gated out; this test is about
        # the HTTP source, so every sampled frame goes out.
        env={
            "PANTAU__CAMERAS__0__URL": http_camera,
            "PANTAU__CAMERAS__0__FPS": "4",
            "PANTAU__INGEST__MOTION__ENABLED": "false",
        },
    )
    assert process.wait(timeout=60) == 0, pipeline.log_of(process)
    log = pipeline.log_of(process)
    assert PASSWORD not in log
    assert f"{USER}:" not in log
    assert "opened http://***@127.0.0.1:" in log

    frames = [
        decode_as(r.value, Frame)
        for r in pipeline.read_topic(Topics(pipeline.settings.kafka).frames)
    ]
    assert len(frames) == 8
    image = cv2.imdecode(np.frombuffer(frames[0].jpeg, dtype=np.uint8), cv2.IMREAD_COLOR)
    assert image.shape == (360, 640, 3)
    # Sampled on wall-clock time at 4 frames/s from a 10 frames/s stream.
    spread = (frames[-1].ts_capture - frames[0].ts_capture).total_seconds()
    assert 1.4 <= spread <= 3.5
