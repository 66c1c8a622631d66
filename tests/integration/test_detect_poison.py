"""`pantau detect` with the real YOLO weights and the real Kafka, fed what a broken or hostile
camera sends: every bad frame is a dead letter with its reason, every good frame after them
is detected (also after the camera switches to another resolution), the process keeps
running, commits past the bad frames (a restart does not meet them again) and stops
cleanly on SIGTERM."""

from __future__ import annotations

import struct
import uuid
from datetime import timedelta
from pathlib import Path

import cv2
import numpy as np

from pantau import kafka
from pantau.codec import MAGIC, decode_as, encode
from pantau.ids import utcnow
from pantau.messages import DeadLetter, Detections, Frame
from pantau.topics import Topics, dead_letter_name
from tests.conftest import SAMPLE_CLIP
from tests.integration.conftest import Pipeline

CAMERA = "gerbang-poison"


def clip_frames(count: int) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(SAMPLE_CLIP))
    capture.set(cv2.CAP_PROP_POS_MSEC, 10_000)
    frames = []
    while len(frames) < count:
        ok, image = capture.read()
        assert ok, f"{SAMPLE_CLIP} ended early"
        frames.append(np.asarray(image))
    capture.release()
    return frames


def jpeg_of(image: np.ndarray, width: int, height: int) -> bytes:
    ok, buffer = cv2.imencode(".jpg", cv2.resize(image, (width, height)))
    assert ok
    return buffer.tobytes()


class Camera:
    """Frames as a camera's ingest publishes them, numbered and timed."""

    def __init__(self) -> None:
        self.seq = 0
        self.start = utcnow()

    def frame(self, jpeg: bytes, width: int, height: int) -> Frame:
        at = self.start + timedelta(seconds=0.2 * self.seq)
        self.seq += 1
        return Frame(
            id=uuid.uuid4(), ts_capture=at, seq=self.seq, camera_id=CAMERA,
            width=width, height=height, ts_ingest=at, jpeg=jpeg,
        )  # fmt: skip


def claiming(data: bytes, width: int, height: int) -> bytes:
    """The same small JPEG with a frame header that claims width x height."""
    sof = data.index(b"\xff\xc0")
    return data[: sof + 5] + struct.pack(">HH", height, width) + data[sof + 9 :]


def test_bad_frames_are_dead_letters_and_detection_goes_on(
    pipeline: Pipeline, tmp_path: Path, shared_data: Path
) -> None:
    settings = pipeline.settings
    topics = Topics(settings.kafka)
    kafka.ensure_topics(settings.kafka, topics.specs())
    env = {
        "PANTAU__DETECT__MAX_FRAME_AGE_S": "0",
        "PANTAU__DUMPING__EVIDENCE__DIR": str(tmp_path / "evidence"),
    }
    detect = pipeline.start("detect", "detect", env=env)

    images = clip_frames(7)
    camera = Camera()
    small = [camera.frame(jpeg_of(i, 640, 360), 640, 360) for i in images[:3]]
    disagreeing = camera.frame(jpeg_of(images[3], 640, 360), 1280, 720)
    huge = camera.frame(claiming(jpeg_of(images[3], 640, 360), 8000, 8000), 8000, 8000)
    large = [camera.frame(jpeg_of(i, 1280, 720), 1280, 720) for i in images[3:]]
    nested = b'{"kind":"frame","camera_id":' + b"[" * 50_000 + b"]" * 50_000 + b"}"
    bad = {
        "nested header": MAGIC + struct.pack(">BI", 1, len(nested)) + nested + b"\xff\xd8",
        "garbage": np.random.default_rng(5).bytes(3000),
        "header disagrees": encode(disagreeing),
        "8000x8000": encode(huge),
    }
    sequence = [encode(small[0]), *bad.values(), *(encode(f) for f in small[1:] + large)]
    producer = kafka.producer(settings.kafka, "test-camera")
    try:
        for value in sequence:
            producer.send(topics.frames, key=CAMERA.encode(), value=value)
        producer.flush()
    finally:
        producer.close()

    good = {f.id: (f.width, f.height) for f in small + large}

    def detected() -> dict[uuid.UUID, tuple[int, int]]:
        messages = [decode_as(r.value, Detections) for r in pipeline.read_topic(topics.detections)]
        return {m.frame_id: (m.width, m.height) for m in messages}

    pipeline.wait_for(
        "detections of every good frame", lambda: detected().keys() >= good.keys(), timeout=240
    )
    assert detected() == good

    letters_topic = dead_letter_name(topics.frames)
    letters = [decode_as(r.value, DeadLetter) for r in pipeline.read_topic(letters_topic)]
    reasons = {letter.original: letter.error for letter in letters}
    assert len(letters) == len(bad)
    assert "nested deeper than" in reasons[bad["nested header"]]
    assert reasons[bad["garbage"]].startswith("not JSON: not valid UTF-8")
    assert reasons[bad["header disagrees"]] == (
        f"frame {disagreeing.id} from camera {CAMERA}: the message says 1280x720, "
        "its JPEG header 640x360"
    )
    assert reasons[bad["8000x8000"]].startswith(
        f"frame {huge.id} from camera {CAMERA}: its JPEG is 8000x8000, larger than the "
        "detector takes"
    )
    assert {letter.stage for letter in letters} == {"detect"}

    assert detect.poll() is None, pipeline.all_logs()
    log = pipeline.log_of(detect)
    assert (
        f"camera {CAMERA}: resolution changed from 640x360 to 1280x720; "
        "its scene models start over" in log
    )
    assert "Traceback" not in log
    assert pipeline.stop(detect) == 0, pipeline.log_of(detect)
    # Committed past every record, the bad ones too: a restart does not meet them again.
    assert kafka.group_lag(settings.kafka, settings.detect.group_id, [topics.frames]) == 0
