"""The real shared YOLO weights through every backend type (ultralytics .pt; OpenVINO and ONNX
Runtime, both with our own letterbox and decoding) at both input sizes, on real frames."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np
import pytest

from detectors.backends import DetectorError, UltralyticsBackend, export_model, load_backend
from detectors.service import DetectorService
from pantau.codec import decode_as, encode
from pantau.ids import stable_id
from pantau.kafka import Record
from pantau.messages import Detections as DetectionsMessage
from pantau.messages import Frame
from pantau.settings import (
    AutoDetector,
    DetectorSettings,
    OnnxDetector,
    OpenVinoDetector,
    SettingsError,
    UltralyticsDetector,
    load_settings,
)
from tests.conftest import OPENVINO_MODEL, PT_MODEL, REPO, SAMPLE_CLIP

# Exports are cached where `pantau detector-export` puts them; made locally from the .pt.
EXPORTS = REPO / ".pantau" / "models"


def frame_at(seconds: float) -> np.ndarray:
    capture = cv2.VideoCapture(str(SAMPLE_CLIP))
    capture.set(cv2.CAP_PROP_POS_MSEC, seconds * 1000)
    ok, image = capture.read()
    capture.release()
    assert ok
    return np.asarray(image)


def detector(kind: str, imgsz: int) -> DetectorSettings:
    if kind == "ultralytics":
        return UltralyticsDetector(model=PT_MODEL, imgsz=imgsz, confidence=0.35)
    if kind == "openvino-int8":
        return OpenVinoDetector(model=OPENVINO_MODEL, imgsz=imgsz, confidence=0.35)
    if kind == "openvino":
        folder = export_model(PT_MODEL, "openvino", imgsz, EXPORTS)
        return OpenVinoDetector(model=folder, imgsz=imgsz, confidence=0.35)
    assert kind == "onnx"
    return OnnxDetector(
        model=export_model(PT_MODEL, "onnx", imgsz, EXPORTS), imgsz=imgsz, confidence=0.35
    )


CASES = [
    ("ultralytics", 640),
    ("ultralytics", 320),
    # The shared int8 export is static at 640; 320 runs on a local fp32 export.
    ("openvino-int8", 640),
    ("openvino", 320),
    ("onnx", 640),
    ("onnx", 320),
]


@pytest.mark.parametrize(("kind", "imgsz"), CASES, ids=[f"{k}-{s}" for k, s in CASES])
def test_finds_the_person_at_the_table_and_nobody_in_the_empty_room(
    shared_data: Path, kind: str, imgsz: int
) -> None:
    backend = load_backend(detector(kind, imgsz))
    with_person, empty_room = backend.detect([frame_at(12.0), frame_at(1.0)])
    people = [i for i, c in enumerate(with_person.class_id) if backend.names[int(c)] == "person"]
    assert len(people) == 1
    x1, y1, x2, y2 = with_person.xyxy[people[0]]
    # Standing at the table, roughly in the middle of the 768-pixel-wide view.
    assert 250 < (x1 + x2) / 2 < 550
    assert y2 - y1 > 200
    assert with_person.confidence[people[0]] > 0.6
    assert "person" not in {backend.names[int(c)] for c in empty_room.class_id}


OURS = [("onnx", 320), ("onnx", 640), ("openvino", 320), ("openvino", 640)]


@pytest.mark.parametrize(("kind", "imgsz"), OURS, ids=[f"{k}-{s}" for k, s in OURS])
def test_our_decoding_matches_ultralytics_on_the_same_network(
    shared_data: Path, kind: str, imgsz: int
) -> None:
    # Same weights, same letterbox: our input conversion, decoding and NMS must give
    # ultralytics' boxes, in one call for several frames (OpenVINO runs them side by side).
    frames = [frame_at(s) for s in (9.0, 12.0, 30.0, 60.0)]
    reference = load_backend(detector("ultralytics", imgsz))
    ours = load_backend(detector(kind, imgsz))
    assert dict(ours.names) == dict(reference.names)
    # ultralytics fits a .pt to a rectangle, the static export to a square: boxes differ a little.
    found = ours.detect(frames)
    assert len(found) == len(frames)
    for theirs, mine in zip(reference.detect(frames), found, strict=True):
        strong = theirs.confidence > 0.5
        assert strong.any()
        for box, class_id in zip(theirs.xyxy[strong], theirs.class_id[strong], strict=True):
            same_class = mine.xyxy[mine.class_id == class_id]
            assert len(same_class), f"class {class_id} missing from the {kind} result"
            assert np.abs(same_class - box).max(axis=1).min() < 12


def test_a_missing_model_is_a_clear_error_not_a_download(tmp_path: Path) -> None:
    missing = tmp_path / "yolo11n.pt"
    with pytest.raises(DetectorError, match="never downloaded"):
        UltralyticsBackend(UltralyticsDetector(model=missing))
    with pytest.raises(DetectorError, match="detector-export --format onnx --imgsz 320"):
        load_backend(OnnxDetector(model=tmp_path / "yolo11n.onnx", imgsz=320))
    assert not missing.exists()


def test_an_export_at_another_size_is_refused_not_silently_resized(shared_data: Path) -> None:
    with pytest.raises(
        DetectorError, match=r"exported for input \[640, 640\], detector.imgsz is 320"
    ):
        load_backend(OpenVinoDetector(model=OPENVINO_MODEL, imgsz=320))
    # A static ONNX export too; the default, dynamic one runs at any size.
    onnx_640 = export_model(PT_MODEL, "onnx", 640, EXPORTS, dynamic=False)
    with pytest.raises(DetectorError, match=r"exported for 640x640 input, detector\.imgsz is 320"):
        load_backend(OnnxDetector(model=onnx_640, imgsz=320))


def test_an_export_is_made_once_and_reused(shared_data: Path) -> None:
    first = export_model(PT_MODEL, "onnx", 320, EXPORTS)
    modified = first.stat().st_mtime_ns
    assert export_model(PT_MODEL, "onnx", 320, EXPORTS) == first
    assert first.stat().st_mtime_ns == modified
    assert first.name.endswith("-320.onnx") and first.parent == EXPORTS


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "detector:\n  type: tflite\n  model: m.tflite\n",
            "unknown detector type 'tflite'; expected one of: ultralytics, openvino, onnx, auto",
        ),
        (
            "detector:\n  type: onnx\n  model: m.pt\n",
            "detector.model: Value error, type onnx expects an .onnx file",
        ),
        (
            "detector:\n  type: openvino\n  model: m.pt\n",
            "type openvino expects an exported folder named *_openvino_model",
        ),
        (
            "detector:\n  type: onnx\n  model: m.onnx\n  imgsz: 500\n",
            "detector.imgsz: Input should be 320 or 640",
        ),
    ],
)
def test_the_type_picks_the_backend_and_a_wrong_one_is_named(
    tmp_path: Path, text: str, expected: str
) -> None:
    path = tmp_path / "pantau.yaml"
    path.write_text(text)
    with pytest.raises(SettingsError) as caught:
        load_settings(path, {})
    assert expected in str(caught.value)


def test_the_shipped_config_chooses_among_the_shared_weights_and_their_exports() -> None:
    settings = load_settings(
        REPO / "configs" / "pantau.yaml", {"PANTAU_SHARED_DATA": str(OPENVINO_MODEL.parents[1])}
    )
    assert isinstance(settings.detector, AutoDetector)
    assert settings.detector.model == PT_MODEL
    assert settings.detector.int8_model == OPENVINO_MODEL
    assert settings.detector.exports_dir == REPO / ".pantau" / "models"
    assert settings.detector.tracker.enabled and settings.detector.tracker.buffer_s > 0


class _Frames:
    """A consumer stand-in that hands out prepared frame records once."""

    def __init__(self, records: list[Record]) -> None:
        self.records = records

    def poll(self, max_records: int, timeout_s: float) -> list[Record]:
        out, self.records = self.records[:max_records], self.records[max_records:]
        return out

    def commit(self, records: object) -> bool:
        return True

    def close(self) -> None:
        pass


class _Sent:
    def __init__(self) -> None:
        self.values: list[bytes] = []

    def send(self, topic: str, key: bytes, value: bytes) -> None:
        self.values.append(value)

    def flush(self, timeout: float | None = None) -> None:
        pass

    def close(self, timeout: float | None = None) -> None:
        pass


def _frame_records(captured: list[datetime]) -> list[Record]:
    """Frame records of the shared clip from 9 s on, five a second, with these capture times."""
    records = []
    for i, at in enumerate(captured):
        ok, jpeg = cv2.imencode(".jpg", frame_at(9.0 + i * 0.2))
        assert ok
        frame = Frame(
            id=stable_id("test-frame", at.isoformat(), i),
            ts_capture=at,
            seq=i,
            camera_id="cam-table",
            width=768,
            height=432,
            ts_ingest=at,
            jpeg=jpeg.tobytes(),
        )
        records.append(Record("frames", 0, i, frame.key, encode(frame)))
    return records


def test_detections_messages_carry_one_track_id_per_person(shared_data: Path) -> None:
    # Frames from a fixed day in the past: none may be skipped as stale.
    settings = load_settings(
        REPO / "configs" / "pantau.yaml",
        {"PANTAU_SHARED_DATA": str(shared_data), "PANTAU__DETECT__MAX_FRAME_AGE_S": "0"},
    )
    assert settings.detector is not None
    start = datetime(2026, 1, 5, 3, 0, tzinfo=UTC)
    # Five frames a second for three seconds while a person stands at the table.
    records = _frame_records([start + timedelta(seconds=0.2 * i) for i in range(15)])
    sent = _Sent()
    service = DetectorService(settings, load_backend(settings.detector), _Frames(records), sent)  # type: ignore[arg-type]
    service.run(threading.Event(), max_frames=len(records))

    messages = [decode_as(v, DetectionsMessage) for v in sent.values]
    people = [[b.track_id for b in m.boxes if b.label == "person"] for m in messages]
    assert len(messages) == 15 and all(len(p) == 1 for p in people)
    assert len({p[0] for p in people}) == 1 and people[0][0] is not None


def test_a_detector_behind_skips_stale_frames_instead_of_queueing(shared_data: Path) -> None:
    settings = load_settings(
        REPO / "configs" / "pantau.yaml",
        {"PANTAU_SHARED_DATA": str(shared_data), "PANTAU__DETECT__MAX_FRAME_AGE_S": "3"},
    )
    assert settings.detector is not None
    now = datetime.now(UTC)
    # Ten frames captured a minute ago (a backlog), then five fresh ones.
    records = _frame_records(
        [now + timedelta(seconds=0.2 * i - (60 if i < 10 else 0)) for i in range(15)]
    )
    sent = _Sent()
    frames = _Frames(records)
    service = DetectorService(settings, load_backend(settings.detector), frames, sent)  # type: ignore[arg-type]
    service.run(threading.Event(), max_frames=5)

    messages = [decode_as(v, DetectionsMessage) for v in sent.values]
    assert service.stats.skipped == 10
    assert sorted(m.seq for m in messages) == [10, 11, 12, 13, 14]
