"""Region-based detection on the real shared weights and the real sample clip: with the 320
network on crops at the frame's own resolution it finds the people that the 640 network
finds on whole frames, and looks at fewer network pixels than whole frames at 320."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from detectors.backends import load_backend
from detectors.detections import Detections, kept_classes
from detectors.region_detector import Frame, RegionDetector
from detectors.regions import RegionPlan
from pantau.settings import RegionSettings, load_settings
from tests.conftest import REPO, SAMPLE_CLIP

PERSON = 0


def clip_frames(seconds: float) -> list[tuple[float, np.ndarray]]:
    """The sample clip (768x432, 10 fps) at 5 fps, 640 wide, as the camera ingest sends it."""
    capture = cv2.VideoCapture(str(SAMPLE_CLIP))
    frames: list[tuple[float, np.ndarray]] = []
    index = 0
    while index < seconds * 10:
        ok, image = capture.read()
        if not ok:
            break
        if index % 2 == 0:
            small = cv2.resize(image, (640, 360), interpolation=cv2.INTER_AREA)
            frames.append((index / 10, np.asarray(small)))
        index += 1
    capture.release()
    return frames


def people(found: Detections, least: float) -> list[np.ndarray]:
    return [
        box
        for box, conf, cls in zip(found.xyxy, found.confidence, found.class_id, strict=True)
        if int(cls) == PERSON and float(conf) >= least
    ]


def iou(a: np.ndarray, b: np.ndarray) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    inter = float(w * h)
    return inter / float((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def test_regions_at_320_find_the_people_640_finds_for_less_than_whole_frames_at_320(
    shared_data: Path,
) -> None:
    settings = load_settings(REPO / "configs" / "pantau.yaml", dict(os.environ))
    detector = settings.detector
    assert detector is not None
    whole = load_backend(detector.model_copy(update={"imgsz": 640}))
    small = load_backend(detector.model_copy(update={"imgsz": 320}))
    least = kept_classes(detector, settings.dumping, small.names)[PERSON]
    regions = RegionDetector(
        small,
        RegionSettings.model_validate({"enabled": True}),
        320,
        iou=detector.iou,
        classes=kept_classes(detector, settings.dumping, small.names),
    )
    frames = clip_frames(30.0)
    expected = found = 0
    crops_only_found = 0
    for t, image in frames:
        # The people 640 is sure of (>= 0.5) must be among those regions report.
        truth = people(whole.detect([image])[0], 0.5)
        before = regions.stats.full
        seen = people(regions.detect([Frame("table", t, image)])[0], least)
        expected += len(truth)
        hits = sum(1 for box in truth if any(iou(box, other) >= 0.5 for other in seen))
        found += hits
        if regions.stats.full == before:
            crops_only_found += hits
    assert expected >= 40, "the clip's first 30 s have people at the table"
    assert found >= 0.95 * expected, f"{found} of {expected} people found with regions"
    # Some were found in crops alone (the people at the table are mostly larger than a
    # crop, and then the frame scaled to 320 is looked at too).
    assert crops_only_found > 0, regions.stats.reasons
    # The network looked at fewer pixels than whole frames at 320 (320x180 each).
    whole_320 = RegionPlan(True, (), "").pixels(640, 360, 320)
    assert regions.stats.pixels < len(frames) * whole_320, regions.stats.summary()
