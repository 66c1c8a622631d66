"""Detections of one image as parallel numpy arrays, validated on construction."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from pantau.messages import Box
from pantau.settings import DetectorSettings, DumpingSettings

# How many of the model's names an error about an unknown class lists.
_NAMES_SHOWN = 12


@dataclass(frozen=True)
class Detections:
    xyxy: npt.NDArray[np.float32]
    confidence: npt.NDArray[np.float32]
    class_id: npt.NDArray[np.int64]
    tracker_id: npt.NDArray[np.int64] | None = None

    def __post_init__(self) -> None:
        n = len(self.xyxy)
        if self.xyxy.ndim != 2 or self.xyxy.shape[1] != 4:
            raise ValueError(f"xyxy: expected shape (N, 4), got {self.xyxy.shape}")
        for name in ("confidence", "class_id", "tracker_id"):
            array = getattr(self, name)
            if array is not None and array.shape != (n,):
                raise ValueError(f"{name}: expected shape ({n},), got {array.shape}")

    def __len__(self) -> int:
        return len(self.xyxy)

    @classmethod
    def empty(cls) -> Detections:
        return cls(
            xyxy=np.zeros((0, 4), dtype=np.float32),
            confidence=np.zeros(0, dtype=np.float32),
            class_id=np.zeros(0, dtype=np.int64),
        )

    @classmethod
    def from_rows(
        cls, rows: Sequence[tuple[Sequence[float], int, int | None, float]]
    ) -> Detections:
        """Tracked detections from (box xyxy, class id, track id or None, confidence) rows."""
        return cls(
            xyxy=np.array([r[0] for r in rows], dtype=np.float32).reshape(-1, 4),
            confidence=np.array([r[3] for r in rows], dtype=np.float32),
            class_id=np.array([r[1] for r in rows], dtype=np.int64),
            tracker_id=np.array([-1 if r[2] is None else r[2] for r in rows], dtype=np.int64),
        )

    @classmethod
    def from_ultralytics(cls, result: Any) -> Detections:
        """From one `ultralytics.engine.results.Results` (boxes on the CPU or not)."""
        boxes = result.boxes
        if boxes is None or len(boxes) == 0:
            return cls.empty()
        ids = boxes.id
        return cls(
            xyxy=np.asarray(boxes.xyxy.cpu().numpy(), dtype=np.float32).reshape(-1, 4),
            confidence=np.asarray(boxes.conf.cpu().numpy(), dtype=np.float32),
            class_id=np.asarray(boxes.cls.cpu().numpy(), dtype=np.int64),
            tracker_id=None if ids is None else np.asarray(ids.cpu().numpy(), dtype=np.int64),
        )

    def track_id(self, i: int) -> int | None:
        """The track id of box `i`; None when untracked (no tracker, or -1 from it)."""
        if self.tracker_id is None or self.tracker_id[i] < 0:
            return None
        return int(self.tracker_id[i])

    def to_boxes(self, names: Mapping[int, str], width: int, height: int) -> tuple[Box, ...]:
        """Message boxes, clipped to the image."""
        clipped = self.xyxy.copy()
        clipped[:, [0, 2]] = clipped[:, [0, 2]].clip(0, width)
        clipped[:, [1, 3]] = clipped[:, [1, 3]].clip(0, height)
        return tuple(
            Box(
                class_id=int(self.class_id[i]),
                label=names.get(int(self.class_id[i]), str(int(self.class_id[i]))),
                confidence=round(float(self.confidence[i]), 4),
                x1=round(float(clipped[i, 0]), 1),
                y1=round(float(clipped[i, 1]), 1),
                x2=round(float(clipped[i, 2]), 1),
                y2=round(float(clipped[i, 3]), 1),
                track_id=self.track_id(i),
            )
            for i in range(len(self))
        )


def nms(
    boxes: npt.NDArray[np.float32], scores: npt.NDArray[np.float32], iou_threshold: float
) -> npt.NDArray[np.int64]:
    """Greedy non-maximum suppression: indexes of the kept boxes, best first."""
    order = np.argsort(-scores, kind="stable")
    areas = (boxes[:, 2] - boxes[:, 0]).clip(0) * (boxes[:, 3] - boxes[:, 1]).clip(0)
    keep: list[int] = []
    while order.size:
        best, rest = int(order[0]), order[1:]
        keep.append(best)
        x1 = np.maximum(boxes[best, 0], boxes[rest, 0])
        y1 = np.maximum(boxes[best, 1], boxes[rest, 1])
        x2 = np.minimum(boxes[best, 2], boxes[rest, 2])
        y2 = np.minimum(boxes[best, 3], boxes[rest, 3])
        inter = (x2 - x1).clip(0) * (y2 - y1).clip(0)
        iou = inter / np.maximum(areas[best] + areas[rest] - inter, 1e-9)
        order = rest[iou <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)


class UnknownClassError(ValueError):
    """A configured class name the loaded model does not know."""


def class_thresholds(wanted: Mapping[str, float], names: Mapping[int, str]) -> dict[int, float]:
    """Class id -> least confidence for the classes named in `wanted`, in the model's
    `names` (id -> name). Raises UnknownClassError naming every name the model lacks."""
    ids = {name: class_id for class_id, name in names.items()}
    unknown = [name for name in wanted if name not in ids]
    if unknown:
        known = list(names.values())
        shown = ", ".join(known[:_NAMES_SHOWN]) + (", ..." if len(known) > _NAMES_SHOWN else "")
        raise UnknownClassError(
            f"detector.classes: {', '.join(repr(n) for n in unknown)} "
            f"{'is not a class' if len(unknown) == 1 else 'are not classes'} of the model "
            f"(it knows {len(known)}: {shown})"
        )
    return {ids[name]: least for name, least in wanted.items()}


def kept_classes(
    detector: DetectorSettings, dumping: DumpingSettings, names: Mapping[int, str]
) -> dict[int, float]:
    """The classes a deployment keeps: `detector.classes`, and a litter model's trash-bag
    class (at the network's own floor, unless `detector.classes` names it too)."""
    kept = class_thresholds(detector.classes, names)
    if dumping.trash_bag_class is not None:
        kept.setdefault(dumping.trash_bag_class, detector.confidence)
    return kept


def keep_classes(detections: Detections, thresholds: Mapping[int, float]) -> Detections:
    """The boxes of the classes in `thresholds` (class id -> least confidence) at or above
    their class's threshold, in their order; every other box is dropped."""
    if not len(detections):
        return detections
    least = np.array(
        [thresholds.get(int(c), np.inf) for c in detections.class_id], dtype=np.float32
    )
    keep = detections.confidence >= least
    if keep.all():
        return detections
    return Detections(
        xyxy=detections.xyxy[keep],
        confidence=detections.confidence[keep],
        class_id=detections.class_id[keep],
        tracker_id=None if detections.tracker_id is None else detections.tracker_id[keep],
    )
