"""The detector service with fakes around it (consumer, producer, network): no frame stops
it. Frames it cannot use, frames the network or a camera's pipeline fails on, are dead
letters with the reason; a camera changing resolution starts over; only a broken network
or Kafka refusing records stops it, with nothing committed."""

from __future__ import annotations

import logging
import struct
import threading
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from kafka.errors import KafkaTimeoutError
from kafka.future import Future

from detectors.detections import Detections
from detectors.dumping import DumpingDetector
from detectors.service import DetectorService, InfrastructureError
from pantau.codec import MAGIC, decode_as, encode
from pantau.kafka import Record
from pantau.messages import DeadLetter, Frame
from pantau.messages import Detections as DetectionsMessage
from pantau.settings import Settings, load_settings
from pantau.topics import Topics, dead_letter_name
from tests.conftest import REPO, SHARED_DATA

T0 = datetime(2026, 11, 23, 3, 0, tzinfo=UTC)
Image = np.ndarray


# --------------------------------------------------------------------------- fakes


class FakeConsumer:
    """Hands out the given batches, then sets `stop`; records what was committed."""

    def __init__(self, batches: Sequence[Sequence[Record]], stop: threading.Event) -> None:
        self.batches = [list(b) for b in batches]
        self.stop = stop
        self.committed: list[Record] = []

    def poll(self, max_records: int, timeout_s: float) -> list[Record]:
        if not self.batches:
            self.stop.set()
            return []
        return self.batches.pop(0)

    def commit(self, records: Sequence[Record]) -> bool:
        self.committed += records
        return True

    def close(self) -> None:
        pass


class FakeProducer:
    """Keeps what was sent; `refuse` makes Kafka fail the records of a topic."""

    def __init__(self, refuse: str | None = None) -> None:
        self.sent: list[tuple[str, bytes | None, bytes]] = []
        self.refuse = refuse

    def send(self, topic: str, key: bytes | None = None, value: bytes = b"") -> Future:
        self.sent.append((topic, key, value))
        future = Future()
        if topic == self.refuse:
            future.failure(KafkaTimeoutError("no broker answered"))
        else:
            future.success(None)
        return future

    def flush(self, timeout: float | None = None) -> None:
        pass

    def close(self, timeout: float | None = None) -> None:
        pass

    def on(self, topic: str) -> list[bytes]:
        return [value for t, _, value in self.sent if t == topic]


def magenta(image: Image) -> bool:
    """The fakes' poison: a frame that is mostly magenta (JPEG shifts exact values)."""
    b, g, r = (float(v) for v in image.reshape(-1, 3).mean(axis=0))
    return b > 200 and r > 200 and g < 60


class FakeNetwork:
    """Finds nothing; fails on a batch holding a frame `fails_on` picks, or on everything."""

    name = "fake.pt"

    def __init__(self, fails_on: Callable[[Image], bool] = lambda _: False) -> None:
        # Every class configs/pantau.yaml keeps: the service checks them by name at start-up.
        self.names = {
            0: "person", 1: "bicycle", 2: "car", 3: "motorcycle", 5: "bus", 7: "truck",
            24: "backpack", 26: "handbag", 28: "suitcase", 39: "bottle",
        }  # fmt: skip
        self.fails_on = fails_on
        self.calls: list[int] = []

    def detect(self, images: Sequence[Image], *, scaleup: bool = True) -> list[Detections]:
        self.calls.append(len(images))
        if any(self.fails_on(image) for image in images):
            raise RuntimeError("inference runtime: bad input tensor")
        return [Detections.empty() for _ in images]


# --------------------------------------------------------------------------- factories


def settings_for(tmp_path: Path, **overrides: str) -> Settings:
    env = {
        "PANTAU_SHARED_DATA": str(SHARED_DATA),
        "PANTAU__DUMPING__EVIDENCE__DIR": str(tmp_path / "evidence"),
        # The frames here are stamped 2026: none may be skipped as stale.
        "PANTAU__DETECT__MAX_FRAME_AGE_S": "0",
        **{f"PANTAU__{k.upper()}": v for k, v in overrides.items()},
    }
    return load_settings(REPO / "configs" / "pantau.yaml", env)


def picture(width: int = 640, height: int = 360, seed: int = 0) -> Image:
    rng = np.random.default_rng(seed)
    image = np.full((height, width, 3), 110, dtype=np.uint8)
    image[height // 2 :] = 90
    noise = rng.integers(0, 6, size=image.shape, dtype=np.uint8)
    return np.asarray(image + noise, dtype=np.uint8)


def jpeg_of(image: Image) -> bytes:
    ok, buffer = cv2.imencode(".jpg", image)
    assert ok
    return buffer.tobytes()


class Frames:
    """Frame records of several cameras, as the camera ingest would publish them."""

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self.offset = 0
        self.seq: dict[str, int] = {}

    def record(self, value: bytes, camera: str = "cam-a") -> Record:
        self.offset += 1
        return Record(self.topic, 0, self.offset, camera.encode(), value)

    def frame(
        self,
        camera: str = "cam-a",
        image: Image | None = None,
        *,
        size: tuple[int, int] | None = None,
        jpeg: bytes | None = None,
    ) -> tuple[Record, Frame]:
        seq = self.seq.get(camera, 0)
        self.seq[camera] = seq + 1
        image = picture(seed=seq) if image is None else image
        data = jpeg_of(image) if jpeg is None else jpeg
        width, height = size or (image.shape[1], image.shape[0])
        at = T0 + timedelta(seconds=0.2 * seq)
        frame = Frame(
            id=uuid.uuid4(),
            ts_capture=at,
            seq=seq,
            camera_id=camera,
            width=width,
            height=height,
            ts_ingest=at,
            jpeg=data,
        )
        return self.record(encode(frame), camera), frame


def binary(header: bytes, blob: bytes = b"") -> bytes:
    return MAGIC + struct.pack(">BI", 1, len(header)) + header + blob


def claiming(data: bytes, width: int, height: int) -> bytes:
    """A JPEG whose frame header says width x height, its data unchanged (a small file
    claiming a huge picture)."""
    sof = data.index(b"\xff\xc0")
    return data[: sof + 5] + struct.pack(">HH", height, width) + data[sof + 9 :]


class Run:
    def __init__(
        self,
        tmp_path: Path,
        batches: Sequence[Sequence[Record]],
        network: FakeNetwork | None = None,
        producer: FakeProducer | None = None,
        **overrides: str,
    ) -> None:
        self.settings = settings_for(tmp_path, **overrides)
        self.topics = Topics(self.settings.kafka)
        self.stop = threading.Event()
        self.consumer = FakeConsumer(batches, self.stop)
        self.producer = producer or FakeProducer()
        self.network = network or FakeNetwork()
        self.service = DetectorService(
            self.settings,
            self.network,
            self.consumer,  # type: ignore[arg-type]
            self.producer,  # type: ignore[arg-type]
        )

    def __call__(self) -> Run:
        self.service.run(self.stop)
        return self

    def letters(self) -> list[DeadLetter]:
        topic = dead_letter_name(self.topics.frames)
        return [decode_as(v, DeadLetter) for v in self.producer.on(topic)]

    def detected(self) -> list[DetectionsMessage]:
        return [decode_as(v, DetectionsMessage) for v in self.producer.on(self.topics.detections)]

    def pipeline_parts(self, camera: str) -> tuple[Any, Any]:
        pipeline = self.service._pipelines[camera].pipeline
        return pipeline.detector, pipeline.tracker


def topic_of(tmp_path: Path) -> str:
    return Topics(settings_for(tmp_path).kafka).frames


# --------------------------------------------------------------------------- bad frames


def _nested() -> bytes:
    return binary(b'{"kind":"frame","x":' + b"[" * 100_000 + b"]" * 100_000 + b"}", b"\xff\xd8")


def _good_jpeg() -> bytes:
    return jpeg_of(picture())


def _headers_only() -> bytes:
    """A JPEG's segments up to its frame header, then its end: the size reads, nothing
    decodes."""
    data = _good_jpeg()
    sof = data.index(b"\xff\xc0")
    return data[: sof + 2 + int.from_bytes(data[sof + 2 : sof + 4], "big")] + b"\xff\xd9"


BAD_FRAMES: list[tuple[str, Callable[[Frames], Record], str]] = [
    ("nested header", lambda f: f.record(_nested()), "nested deeper than"),
    ("random bytes", lambda f: f.record(b"\x93" + np.random.default_rng(3).bytes(999)), "not JSON"),
    ("a bare JPEG", lambda f: f.record(_good_jpeg()), "not JSON: not valid UTF-8"),
    ("binary layout, bad magic", lambda f: f.record(bytes(range(256))), "bad magic"),
    ("empty record", lambda f: f.record(b""), "empty message"),
    (
        "not a JPEG",
        lambda f: f.frame(jpeg=b"\x89PNG\r\n\x1a\n" + bytes(64), size=(640, 360))[0],
        "not a JPEG: expected the start-of-image marker FF D8, got 89 50",
    ),
    (
        "truncated JPEG",
        lambda f: f.frame(jpeg=_good_jpeg()[:120], size=(640, 360))[0],
        "truncated JPEG",
    ),
    (
        "header disagrees",
        lambda f: f.frame(size=(1280, 720))[0],
        "the message says 1280x720, its JPEG header 640x360",
    ),
    (
        "absurd size",
        lambda f: f.frame(jpeg=claiming(_good_jpeg(), 8000, 8000), size=(8000, 8000))[0],
        "its JPEG is 8000x8000, larger than the detector takes "
        "(detect.max_frame_width x max_frame_height: 4096x4096); not decoded",
    ),
    (
        "headers without image data",
        lambda f: f.frame(jpeg=_headers_only(), size=(640, 360))[0],
        "JPEG does not decode",
    ),
]


@pytest.mark.parametrize(
    ("make", "reason"), [(m, r) for _, m, r in BAD_FRAMES], ids=[n for n, _, _ in BAD_FRAMES]
)
def test_a_frame_it_cannot_use_is_a_dead_letter_and_the_next_is_detected(
    tmp_path: Path, make: Callable[[Frames], Record], reason: str
) -> None:
    frames = Frames(topic_of(tmp_path))
    before, before_frame = frames.frame()
    bad = make(frames)
    after, after_frame = frames.frame()
    run = Run(tmp_path, [[before, bad, after]])()
    (letter,) = run.letters()
    assert reason in letter.error
    assert (letter.offset, letter.original, letter.stage) == (bad.offset, bad.value, "detect")
    assert [m.frame_id for m in run.detected()] == [before_frame.id, after_frame.id]
    assert run.consumer.committed == [before, bad, after]


def test_an_absurd_size_is_refused_from_the_header_without_decoding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    decoded: list[int] = []
    real = cv2.imdecode

    def imdecode(buffer: Any, flags: int) -> Any:
        decoded.append(len(buffer))
        return real(buffer, flags)

    monkeypatch.setattr(cv2, "imdecode", imdecode)
    frames = Frames(topic_of(tmp_path))
    huge = claiming(_good_jpeg(), 6000, 3000)
    record, _ = frames.frame(jpeg=huge, size=(6000, 3000))
    run = Run(tmp_path, [[record]], **{"detect__max_frame_width": "5000"})()
    (letter,) = run.letters()
    assert "its JPEG is 6000x3000, larger than the detector takes" in letter.error
    assert "5000x4096" in letter.error
    assert decoded == []


# --------------------------------------------------------------------------- cameras


def test_a_resolution_change_starts_that_camera_over_and_nothing_is_lost(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    frames = Frames(topic_of(tmp_path))
    small = [frames.frame("cam-a", picture(640, 360, i)) for i in range(3)]
    other = [frames.frame("cam-b", picture(640, 360, i)) for i in range(3)]
    large = [frames.frame("cam-a", picture(1280, 720, i)) for i in range(3)]
    batches = [[small[0][0], other[0][0]], [small[1][0], small[2][0], other[1][0]]]
    run = Run(tmp_path, batches)
    run()
    before_a, before_b = run.pipeline_parts("cam-a"), run.pipeline_parts("cam-b")

    run.stop.clear()
    run.consumer.batches = [[large[0][0], other[2][0]], [large[1][0], large[2][0]]]
    with caplog.at_level(logging.INFO, logger="detectors.camera"):
        run()

    assert run.letters() == []
    detected = {m.frame_id: (m.width, m.height) for m in run.detected()}
    assert detected == {
        **{f.id: (640, 360) for _, f in small + other},
        **{f.id: (1280, 720) for _, f in large},
    }
    changes = [r.getMessage() for r in caplog.records if "resolution changed" in r.getMessage()]
    assert changes == [
        "camera cam-a: resolution changed from 640x360 to 1280x720; its scene models start over"
    ]
    after_a, after_b = run.pipeline_parts("cam-a"), run.pipeline_parts("cam-b")
    assert after_a[0] is not before_a[0] and after_a[1] is not before_a[1]
    assert after_b == before_b


def test_a_pipeline_failure_dead_letters_the_frame_and_starts_only_that_camera_over(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    frames = Frames(topic_of(tmp_path))
    a = [frames.frame("cam-a") for _ in range(4)]
    b = [frames.frame("cam-b") for _ in range(4)]
    doomed = b[1][1]
    real = DumpingDetector.process

    def process(self: DumpingDetector, image: Image, t: float, found: Detections) -> Any:
        if self.camera_id == "cam-b" and t == doomed.ts_capture.timestamp():
            raise RuntimeError("static model: state out of step")
        return real(self, image, t, found)

    monkeypatch.setattr(DumpingDetector, "process", process)
    run = Run(tmp_path, [[a[0][0], b[0][0]]])
    run()
    parts_a, parts_b = run.pipeline_parts("cam-a"), run.pipeline_parts("cam-b")

    run.stop.clear()
    run.consumer.batches = [[a[1][0], b[1][0]], [a[2][0], b[2][0], a[3][0], b[3][0]]]
    with caplog.at_level(logging.ERROR):
        run()

    (letter,) = run.letters()
    assert letter.error == (
        f"frame {doomed.id} from camera cam-b: the camera pipeline failed: "
        "RuntimeError: static model: state out of step"
    )
    assert letter.offset == b[1][0].offset
    detected = {m.frame_id for m in run.detected()}
    assert detected == {f.id for _, f in a + b} - {doomed.id}
    # Only cam-b started over; cam-a kept its models through cam-b's failure.
    assert run.pipeline_parts("cam-a") == parts_a
    new_b = run.pipeline_parts("cam-b")
    assert new_b[0] is not parts_b[0] and new_b[1] is not parts_b[1]
    assert run.service.stats.resets == 1
    assert len(run.consumer.committed) == 8
    tracebacks = [r for r in caplog.records if r.exc_info is not None]
    assert len(tracebacks) == 1 and "cam-b" in tracebacks[0].getMessage()


def test_a_frame_out_of_order_is_detected_but_skips_the_pipeline(tmp_path: Path) -> None:
    frames = Frames(topic_of(tmp_path))
    first, _ = frames.frame()
    frames.seq["cam-a"] = 10
    later, _ = frames.frame()
    frames.seq["cam-a"] = 8  # 0.4 s before `later`: a camera clock stepping back
    earlier, earlier_frame = frames.frame()
    run = Run(tmp_path, [[first, later], [earlier]])()
    assert run.letters() == []
    assert earlier_frame.id in {m.frame_id for m in run.detected()}
    assert run.service._pipelines["cam-a"].t == (T0 + timedelta(seconds=2)).timestamp()


# --------------------------------------------------------------------------- the network


def test_a_frame_the_network_fails_on_alone_is_a_dead_letter(tmp_path: Path) -> None:
    frames = Frames(topic_of(tmp_path))
    poison = np.zeros((360, 640, 3), dtype=np.uint8)
    poison[:] = (255, 0, 255)
    good_1, g1 = frames.frame()
    bad, bad_frame = frames.frame(image=poison)
    good_2, g2 = frames.frame()
    lone, lone_frame = frames.frame(image=poison)
    run = Run(tmp_path, [[good_1, bad, good_2], [lone]], network=FakeNetwork(magenta))()
    letters = run.letters()
    assert [letter.offset for letter in letters] == [bad.offset, lone.offset]
    assert letters[0].error == (
        f"frame {bad_frame.id} from camera cam-a: the detector failed on this frame alone: "
        "RuntimeError: inference runtime: bad input tensor"
    )
    assert str(lone_frame.id) in letters[1].error
    assert {m.frame_id for m in run.detected()} == {g1.id, g2.id}
    # The batch, each of its frames, the lone frame, and a blank picture to tell a broken
    # network from a frame it cannot take.
    assert run.network.calls == [3, 1, 1, 1, 1, 1, 1]
    assert len(run.consumer.committed) == 4


def test_a_network_that_fails_on_everything_stops_it_with_nothing_committed(
    tmp_path: Path,
) -> None:
    frames = Frames(topic_of(tmp_path))
    batch = [frames.frame()[0] for _ in range(3)]
    run = Run(tmp_path, [batch], network=FakeNetwork(lambda _: True))
    with pytest.raises(InfrastructureError, match="the model or its runtime is broken"):
        run()
    assert run.consumer.committed == []
    assert run.letters() == []


def test_records_kafka_does_not_take_stop_it_with_nothing_committed(tmp_path: Path) -> None:
    frames = Frames(topic_of(tmp_path))
    settings = settings_for(tmp_path)
    producer = FakeProducer(refuse=Topics(settings.kafka).detections)
    run = Run(tmp_path, [[frames.frame()[0]]], producer=producer)
    with pytest.raises(InfrastructureError, match="Kafka did not take 1 of the 1 records"):
        run()
    assert run.consumer.committed == []


# --------------------------------------------------------------------------- regions


class ShapesNetwork(FakeNetwork):
    """Finds nothing; records each call's picture sizes and whether it could enlarge them."""

    def __init__(self) -> None:
        super().__init__()
        self.shapes: list[tuple[list[tuple[int, int]], bool]] = []

    def detect(self, images: Sequence[Image], *, scaleup: bool = True) -> list[Detections]:
        self.shapes.append(([im.shape[:2] for im in images], scaleup))
        return super().detect(images)


def test_with_regions_on_the_network_sees_crops_of_what_moved_not_whole_frames(
    tmp_path: Path,
) -> None:
    frames = Frames(topic_of(tmp_path))
    still = picture(seed=0)
    moved = still.copy()
    moved[100:140, 300:330] = 250  # something appears: a small bright patch
    batches = [
        [frames.frame("cam-a", still)[0], frames.frame("cam-b", still)[0]],
        [frames.frame("cam-a", still)[0], frames.frame("cam-b", moved)[0]],
    ]
    network = ShapesNetwork()
    run = Run(
        tmp_path,
        batches,
        network,
        detect__regions__enabled="true",
        detector__imgsz="320",
    )()
    # Batch one: both cameras' first frames, whole: scaled, and in tiles at their own
    # resolution. Batch two: cam-a did not change (no call for it), cam-b gets one crop
    # around the patch at the frame's own resolution.
    assert network.shapes[0] == ([(360, 640), (360, 640)], True)
    assert network.shapes[1] == ([(192, 320)] * 8, False)
    ((crops, scaleup),) = network.shapes[2:]
    assert not scaleup and len(crops) == 1
    height, width = crops[0]
    assert 30 + 2 * 24 <= width <= 320 and 40 + 2 * 24 <= height <= 320
    assert len(run.detected()) == 4  # every frame still has its detections message
