"""The real shared YOLO weights, through ultralytics, in both shipped formats."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from detectors.backends import DetectorError, UltralyticsBackend
from pantau.settings import UltralyticsDetector
from tests.conftest import OPENVINO_MODEL, PT_MODEL, SAMPLE_CLIP


def frame_at(seconds: float) -> np.ndarray:
    capture = cv2.VideoCapture(str(SAMPLE_CLIP))
    capture.set(cv2.CAP_PROP_POS_MSEC, seconds * 1000)
    ok, image = capture.read()
    capture.release()
    assert ok
    return np.asarray(image)


@pytest.mark.parametrize("model", [PT_MODEL, OPENVINO_MODEL], ids=["pytorch", "openvino-int8"])
def test_finds_the_person_at_the_table_and_nobody_in_the_empty_room(
    shared_data: Path, model: Path
) -> None:
    backend = UltralyticsBackend(UltralyticsDetector(model=model, imgsz=640, confidence=0.35))
    with_person, empty_room = backend.detect([frame_at(12.0), frame_at(1.0)])
    people = [i for i, c in enumerate(with_person.class_id) if backend.names[int(c)] == "person"]
    assert len(people) == 1
    x1, y1, x2, y2 = with_person.xyxy[people[0]]
    # Standing at the table, roughly in the middle of the 768-pixel-wide view.
    assert 250 < (x1 + x2) / 2 < 550
    assert y2 - y1 > 200
    assert "person" not in {backend.names[int(c)] for c in empty_room.class_id}


def test_a_missing_model_is_a_clear_error_not_a_download(tmp_path: Path) -> None:
    missing = tmp_path / "yolo11n.pt"
    with pytest.raises(DetectorError, match="never downloaded"):
        UltralyticsBackend(UltralyticsDetector(model=missing))
    assert not missing.exists()
