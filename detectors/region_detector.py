"""Region-based detection around a backend: per camera, what moved since its previous frame
and the objects found lately become the crops the network looks at (`detectors.regions`
plans them); the crops of a whole batch of frames, across cameras, go to the network in one
call, and the whole frames that need a full look in another."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np
import numpy.typing as npt

from detectors.backends import Backend
from detectors.detections import Detections
from detectors.regions import (
    Box,
    RegionConfig,
    RegionPlan,
    box_iou,
    merge_detections,
    plan_regions,
)
from pantau.settings import RegionSettings

log = logging.getLogger(__name__)

Image = npt.NDArray[np.uint8]

# Motion is compared on a grey picture this many times smaller on each side: a person is
# still tens of pixels there, and the comparison costs a fraction of a millisecond.
_MOTION_SCALE = 4
# An object found is looked for again around where it was for this long after it was last
# seen, moving or not (a person standing still, a bag put down).
_HOLD_S = 2.0
# Beyond this many objects held per camera the oldest go: a frame full of objects is
# looked at whole anyway.
_MAX_HELD = 64


@dataclass
class RegionStats:
    frames: int = 0
    full: int = 0
    crops: int = 0
    pixels: int = 0
    reasons: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        if not self.frames:
            return "no frames"
        return (
            f"{self.crops / self.frames:.2f} crops and {self.full / self.frames:.2f} whole "
            f"frames a frame, {self.pixels / self.frames / 1000:.0f}k network pixels a frame"
        )


@dataclass
class _CameraRegions:
    grey: Image | None = None
    last_full: float | None = None
    last_t: float | None = None
    # (box, class id, last seen): what was found lately.
    held: list[tuple[Box, int, float]] = field(default_factory=list)


@dataclass(frozen=True)
class Frame:
    """One frame to detect: its camera, its time on that camera's clock, its picture."""

    camera_id: str
    t: float
    image: Image


class RegionDetector:
    """Detects frames of many cameras through `backend` looking at regions. `classes` are
    the class ids worth following between frames (None: all)."""

    def __init__(
        self,
        backend: Backend,
        settings: RegionSettings,
        imgsz: int,
        *,
        iou: float = 0.5,
        classes: Mapping[int, float] | None = None,
    ) -> None:
        self._backend = backend
        self._settings = settings
        self._config = RegionConfig(
            size=imgsz, max_cover=settings.max_cover, margin_px=settings.margin_px
        )
        self._iou = iou
        self._classes = classes
        self._cameras: dict[str, _CameraRegions] = {}
        self._forget = False
        self.stats = RegionStats()

    @property
    def name(self) -> str:
        return self._backend.name

    @property
    def names(self) -> Mapping[int, str]:
        return self._backend.names

    def forget(self) -> None:
        """Cameras moved to another process: their next frame here is looked at whole.
        Safe while a batch is being detected on another thread: taken at the next."""
        self._forget = True

    def detect(self, frames: Sequence[Frame]) -> list[Detections]:
        if self._forget:
            self._forget = False
            self._cameras.clear()
        plans = [self._plan(frame) for frame in frames]
        whole = [frame.image for frame, plan in zip(frames, plans, strict=True) if plan.full]
        crops = [
            frame.image[y1:y2, x1:x2]
            for frame, plan in zip(frames, plans, strict=True)
            for x1, y1, x2, y2 in plan.crops
        ]
        found_whole = iter(self._backend.detect(whole) if whole else [])
        found_crops = iter(self._backend.detect(crops, scaleup=False) if crops else [])
        results: list[Detections] = []
        for frame, plan in zip(frames, plans, strict=True):
            height, width = frame.image.shape[:2]
            full = next(found_whole) if plan.full else None
            parts = [(rect, next(found_crops)) for rect in plan.crops]
            if full is not None and not parts:
                merged = full
            else:
                merged = merge_detections(full, parts, width, height, iou=self._iou)
            self._remember(frame, plan, merged)
            results.append(merged)
            self._count(plan, width, height)
        return results

    # ------------------------------------------------------------------ one frame

    def _plan(self, frame: Frame) -> RegionPlan:
        state = self._cameras.setdefault(frame.camera_id, _CameraRegions())
        height, width = frame.image.shape[:2]
        grey = _small_grey(frame.image)
        previous, state.grey = state.grey, grey
        if previous is None or previous.shape != grey.shape:
            # A new camera, or a new resolution: what was found before is elsewhere now.
            reason: str | None = "first frame of the camera"
            state.held = []
        elif state.last_t is not None and frame.t < state.last_t:
            reason = "the camera's clock went back"
        elif state.last_full is None or frame.t - state.last_full >= self._settings.full_every_s:
            reason = "periodic whole-frame check"
        else:
            reason = None
        state.last_t = frame.t
        if reason is not None:
            state.last_full = frame.t
            return plan_regions(width, height, (), self._config, full_reason=reason)
        boxes = self._moved(previous, grey) if previous is not None else []
        boxes += [box for box, _, seen in state.held if frame.t - seen <= _HOLD_S]
        plan = plan_regions(width, height, boxes, self._config)
        if plan.full:
            state.last_full = frame.t
        return plan

    def _moved(self, previous: Image, grey: Image) -> list[Box]:
        changed = cv2.absdiff(previous, grey)
        _, mask = cv2.threshold(changed, self._settings.motion_threshold, 255, cv2.THRESH_BINARY)
        mask = cv2.dilate(mask, np.ones((3, 3), np.uint8), iterations=2)
        count, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
        least = self._settings.min_motion_px / (_MOTION_SCALE * _MOTION_SCALE)
        boxes: list[Box] = []
        for x, y, w, h, area in stats[1:count]:
            if area >= least:
                s = _MOTION_SCALE
                boxes.append((float(x * s), float(y * s), float((x + w) * s), float((y + h) * s)))
        return boxes

    def _remember(self, frame: Frame, plan: RegionPlan, found: Detections) -> None:
        state = self._cameras[frame.camera_id]
        held = [
            (box, cls, seen)
            for box, cls, seen in state.held
            if frame.t - _HOLD_S <= seen <= frame.t
        ]
        for box, cls in zip(found.xyxy, found.class_id, strict=True):
            if self._classes is None or int(cls) in self._classes:
                b = (float(box[0]), float(box[1]), float(box[2]), float(box[3]))
                held.append((b, int(cls), frame.t))
        # The newest sighting of an object replaces its older ones where they overlap much.
        held.sort(key=lambda entry: -entry[2])
        kept: list[tuple[Box, int, float]] = []
        for entry in held:
            if not any(cls == entry[1] and box_iou(entry[0], b) > 0.5 for b, cls, _ in kept):
                kept.append(entry)
        state.held = kept[:_MAX_HELD]

    def _count(self, plan: RegionPlan, width: int, height: int) -> None:
        stats = self.stats
        stats.frames += 1
        stats.full += int(plan.full)
        stats.crops += len(plan.crops)
        stats.pixels += plan.pixels(width, height, self._config.size)
        stats.reasons[plan.reason] = stats.reasons.get(plan.reason, 0) + 1


def _small_grey(image: Image) -> Image:
    height, width = image.shape[:2]
    small = cv2.resize(
        image,
        (max(1, width // _MOTION_SCALE), max(1, height // _MOTION_SCALE)),
        interpolation=cv2.INTER_AREA,
    )
    grey = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY) if small.ndim == 3 else small
    return np.asarray(cv2.GaussianBlur(grey, (3, 3), 0), dtype=np.uint8)
