from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from detectors.detections import (
    Detections,
    UnknownClassError,
    class_thresholds,
    keep_classes,
    kept_classes,
)
from pantau.settings import DumpingSettings, UltralyticsDetector


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


# --------------------------------------------------------------------------- kept classes

# COCO ids: person 0, car 2, backpack 24, skateboard 36.
THRESHOLDS = {0: 0.35, 2: 0.4, 24: 0.25}


def found(*rows: tuple[int, float]) -> Detections:
    """One box per (class id, confidence) row; box i is (i, i, i + 10, i + 10), track id 100 + i."""
    return Detections(
        xyxy=np.array([[i, i, i + 10, i + 10] for i in range(len(rows))], dtype=np.float32).reshape(
            -1, 4
        ),
        confidence=np.array([r[1] for r in rows], dtype=np.float32),
        class_id=np.array([r[0] for r in rows], dtype=np.int64),
        tracker_id=np.arange(100, 100 + len(rows), dtype=np.int64),
    )


@pytest.mark.parametrize(
    ("rows", "kept"),
    [
        # A class nobody listed goes, however sure the network is.
        ([(0, 0.9), (36, 0.95)], [0]),
        # At its class's threshold a box stays; just below, it goes.
        ([(0, 0.35), (0, 0.34)], [0]),
        # Each class has its own threshold: a car needs more than a backpack.
        ([(2, 0.38), (24, 0.3), (2, 0.41)], [1, 2]),
        ([(36, 0.5), (15, 0.49)], []),
        ([(0, 0.9), (24, 0.6), (2, 0.7)], [0, 1, 2]),
    ],
)
def test_only_listed_classes_at_their_threshold_are_kept(
    rows: list[tuple[int, float]], kept: list[int]
) -> None:
    before = found(*rows)
    after = keep_classes(before, THRESHOLDS)
    assert after.class_id.tolist() == [rows[i][0] for i in kept]
    # Boxes, confidences and track ids stay together, in their order.
    assert after.xyxy.tolist() == before.xyxy[kept].tolist()
    assert after.confidence.tolist() == before.confidence[kept].tolist()
    assert after.tracker_id is not None and after.tracker_id.tolist() == [100 + i for i in kept]


def test_keeping_classes_of_nothing_or_untracked_boxes() -> None:
    assert len(keep_classes(Detections.empty(), THRESHOLDS)) == 0
    untracked = keep_classes(make(), {26: 0.3})
    assert untracked.class_id.tolist() == [26] and untracked.tracker_id is None
    assert len(keep_classes(make(), {})) == 0


NAMES = {0: "person", 1: "bicycle", 2: "car", 24: "backpack", 36: "skateboard"}


def test_class_names_become_the_models_ids() -> None:
    assert class_thresholds({"person": 0.35, "skateboard": 0.3}, NAMES) == {0: 0.35, 36: 0.3}


@pytest.mark.parametrize(
    ("wanted", "expected"),
    [
        ({"persn": 0.35}, r"'persn' is not a class of the model \(it knows 5: person, bicycle"),
        (
            {"person": 0.35, "trash": 0.3, "Car": 0.4},
            r"'trash', 'Car' are not classes of the model",
        ),
    ],
)
def test_a_name_the_model_does_not_know_is_named(wanted: dict[str, float], expected: str) -> None:
    with pytest.raises(UnknownClassError, match=expected):
        class_thresholds(wanted, NAMES)


def test_a_long_list_of_known_names_is_cut_short() -> None:
    names = {i: f"class{i}" for i in range(80)}
    with pytest.raises(UnknownClassError) as caught:
        class_thresholds({"rubbish": 0.3}, names)
    assert "it knows 80: class0, class1," in str(caught.value)
    assert str(caught.value).endswith(", ...)") and "class79" not in str(caught.value)


def detector_keeping(classes: dict[str, float]) -> UltralyticsDetector:
    return UltralyticsDetector(model=Path("yolo11n.pt"), confidence=0.25, classes=classes)


def test_a_litter_models_trash_bag_class_is_kept_at_the_networks_floor() -> None:
    names = {**NAMES, 80: "trash bag"}
    detector = detector_keeping({"person": 0.35})
    assert kept_classes(detector, DumpingSettings(), names) == {0: 0.35}
    with_bags = DumpingSettings(trash_bag_class=80)
    assert kept_classes(detector, with_bags, names) == {0: 0.35, 80: 0.25}
    # Listed by name as well: its own threshold wins.
    listed = detector_keeping({"person": 0.35, "trash bag": 0.5})
    assert kept_classes(listed, with_bags, names) == {0: 0.35, 80: 0.5}
    bag = found((80, 0.3), (36, 0.9))
    assert keep_classes(bag, kept_classes(detector, with_bags, names)).class_id.tolist() == [80]
