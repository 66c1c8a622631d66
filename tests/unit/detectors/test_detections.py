from __future__ import annotations

import numpy as np
import pytest

from detectors.detections import Detections


def make(n: int = 2, **overrides: object) -> Detections:
    fields: dict[str, object] = {
        "xyxy": np.array([[10, 20, 110, 220], [-5, 0, 700, 400]], dtype=np.float32)[:n],
        "confidence": np.array([0.9, 0.4], dtype=np.float32)[:n],
        "class_id": np.array([0, 26], dtype=np.int64)[:n],
    }
    fields.update(overrides)
    return Detections(**fields)  # type: ignore[arg-type]


def test_shapes_are_validated_with_expected_and_got() -> None:
    with pytest.raises(ValueError, match=r"xyxy: expected shape \(N, 4\), got \(2, 3\)"):
        make(xyxy=np.zeros((2, 3), dtype=np.float32))
    with pytest.raises(ValueError, match=r"confidence: expected shape \(2,\), got \(3,\)"):
        make(confidence=np.zeros(3, dtype=np.float32))


def test_boxes_are_labelled_and_clipped_to_the_frame() -> None:
    boxes = make().to_boxes({0: "person", 26: "handbag"}, width=640, height=360)
    assert [b.label for b in boxes] == ["person", "handbag"]
    assert (boxes[1].x1, boxes[1].x2, boxes[1].y2) == (0.0, 640.0, 360.0)
    assert boxes[0].track_id is None


def test_unknown_class_keeps_its_number_and_track_ids_travel() -> None:
    found = make(1, class_id=np.array([99]), tracker_id=np.array([7]))
    (box,) = found.to_boxes({}, width=640, height=360)
    assert box.label == "99" and box.track_id == 7


def test_empty() -> None:
    assert len(Detections.empty()) == 0
    assert Detections.empty().to_boxes({}, 10, 10) == ()


def test_from_rows_builds_tracked_detections_and_an_empty_set() -> None:
    found = Detections.from_rows([((1, 2, 3, 4), 0, 7, 0.9), ((5, 6, 7, 8), 24, None, 0.4)])
    assert found.xyxy.shape == (2, 4) and found.class_id.tolist() == [0, 24]
    assert found.tracker_id is not None and found.tracker_id.tolist() == [7, -1]
    assert len(Detections.from_rows([])) == 0
