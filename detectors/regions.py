"""Region-based detection, the pure part: which parts of a frame the network looks at, and
how the answers of those parts become one set of boxes for the frame.

A frame is looked at in crops at its own resolution around what moved and around the
objects already found, each crop at most the network's input side. The whole frame is looked
at scaled down to the network's input only

- when the caller asks for it (a camera's first frame, the periodic check), and then also in
  tiles at its own resolution, so that small things that appeared without moving are found
  with full detail;
- when the crops would cover most of the frame, or one region is larger than a crop: then
  beside the crops.

Crops are rounded out to the network's stride so that a dynamic-shape network runs them
without padding.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from detectors.detections import Detections, nms

# x1, y1, x2, y2 in whole pixels of the frame, x2 and y2 excluded.
Rect = tuple[int, int, int, int]
# x1, y1, x2, y2 in pixels of the frame.
Box = tuple[float, float, float, float]

# Two regions closer than this are looked at in one crop when that costs at most this much
# more area than two: each network call has its own fixed cost.
_MERGE_AREA_SLACK = 1.3
# A box cut by a crop's inner edge (the object goes on outside the crop) is a part of an
# object; when most of it lies inside a box of the same class found elsewhere it is dropped.
_PART_INSIDE = 0.6
_EDGE_PX = 2.0


@dataclass(frozen=True)
class RegionPlan:
    """What the network looks at in one frame: the whole frame (scaled), crops, or both."""

    full: bool
    crops: tuple[Rect, ...]
    reason: str

    def pixels(self, width: int, height: int, size: int) -> int:
        """Network input pixels this plan costs (the whole frame counts as scaled to
        `size` on its longer side)."""
        crops = sum((x2 - x1) * (y2 - y1) for x1, y1, x2, y2 in self.crops)
        if not self.full:
            return crops
        gain = min(size / width, size / height, 1.0)
        return crops + round(width * gain) * round(height * gain)


@dataclass(frozen=True)
class RegionConfig:
    size: int
    max_cover: float
    margin_px: int
    align: int = 32
    min_side: int = 64

    def __post_init__(self) -> None:
        if self.size < self.min_side or self.size % self.align:
            raise ValueError(
                f"crop size {self.size}: expected a multiple of {self.align}, "
                f"at least {self.min_side}"
            )
        if not 0 < self.max_cover <= 1:
            raise ValueError(f"max_cover {self.max_cover}: expected 0 < max_cover <= 1")
        if self.margin_px < 0:
            raise ValueError(f"margin_px {self.margin_px}: expected >= 0")


def expand(box: Box, margin: int, width: int, height: int) -> Rect:
    """A box (pixels, floats) grown by `margin` on each side and clipped to the frame."""
    x1, y1, x2, y2 = box
    return (
        max(0, int(np.floor(x1)) - margin),
        max(0, int(np.floor(y1)) - margin),
        min(width, int(np.ceil(x2)) + margin),
        min(height, int(np.ceil(y2)) + margin),
    )


def _area(rect: Rect) -> int:
    return max(0, rect[2] - rect[0]) * max(0, rect[3] - rect[1])


def _union(a: Rect, b: Rect) -> Rect:
    return (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))


def _overlap(a: Rect, b: Rect) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def box_iou(a: Box, b: Box) -> float:
    """Intersection over union of two boxes (0 when they do not overlap)."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def merge_rects(rects: Sequence[Rect], size: int) -> list[Rect]:
    """Overlapping rectangles become their union; two that do not overlap are joined when
    the union fits a crop and costs little more area than the two apart. Repeated until
    nothing changes; the result is sorted."""
    merged = [r for r in rects if _area(r) > 0]
    changed = True
    while changed:
        changed = False
        for i in range(len(merged)):
            for j in range(i + 1, len(merged)):
                a, b = merged[i], merged[j]
                union = _union(a, b)
                fits = union[2] - union[0] <= size and union[3] - union[1] <= size
                cheap = _area(union) <= _MERGE_AREA_SLACK * (_area(a) + _area(b))
                if _overlap(a, b) or (fits and cheap):
                    merged[i] = union
                    del merged[j]
                    changed = True
                    break
            if changed:
                break
    return sorted(merged)


def _aligned_span(lo: int, hi: int, limit: int, config: RegionConfig) -> tuple[int, int]:
    """[lo, hi) grown, about its centre, to a multiple of the stride (at least the smallest
    side, at most the crop size or the frame), then moved inside [0, limit)."""
    want = max(hi - lo, config.min_side)
    want = -(-want // config.align) * config.align
    want = min(want, config.size, limit)
    start = lo - (want - (hi - lo)) // 2
    start = min(max(start, 0), limit - want)
    return start, start + want


def aligned(rect: Rect, width: int, height: int, config: RegionConfig) -> Rect:
    x1, x2 = _aligned_span(rect[0], rect[2], width, config)
    y1, y2 = _aligned_span(rect[1], rect[3], height, config)
    return (x1, y1, x2, y2)


def tiles(width: int, height: int, config: RegionConfig) -> tuple[Rect, ...]:
    """The fewest crops, each at most the crop size (rounded to the stride), that cover the
    frame at its own resolution, evenly spread (neighbours overlap by what the rounding
    leaves)."""

    def spans(limit: int) -> list[tuple[int, int]]:
        count = -(-limit // config.size)  # ceil
        per = -(-limit // count)
        side = min(config.size, limit, -(-per // config.align) * config.align)
        if count == 1:
            return [(0, side)]
        step = (limit - side) / (count - 1)
        return [(round(i * step), round(i * step) + side) for i in range(count)]

    return tuple((x1, y1, x2, y2) for y1, y2 in spans(height) for x1, x2 in spans(width))


def plan_regions(
    width: int,
    height: int,
    boxes: Sequence[Box],
    config: RegionConfig,
    *,
    full_reason: str | None = None,
) -> RegionPlan:
    """The plan for one frame of `width` x `height` given the boxes worth a look (what
    moved, what was found before); `full_reason` asks for the whole frame."""
    if full_reason is not None:
        return _whole(width, height, config, full_reason)
    rects = merge_rects([expand(b, config.margin_px, width, height) for b in boxes], config.size)
    if not rects:
        return RegionPlan(False, (), "nothing moved")
    large = [r for r in rects if r[2] - r[0] > config.size or r[3] - r[1] > config.size]
    crops = tuple(
        aligned(r, width, height, config)
        for r in rects
        if r[2] - r[0] <= config.size and r[3] - r[1] <= config.size
    )
    covered = sum(_area(c) for c in crops) + sum(_area(r) for r in large)
    if covered > config.max_cover * width * height:
        return RegionPlan(True, crops, "regions cover most of the frame")
    if large:
        return RegionPlan(True, crops, "an object larger than a crop")
    return RegionPlan(False, crops, "regions")


def _whole(width: int, height: int, config: RegionConfig, reason: str) -> RegionPlan:
    """The whole frame: scaled to the network's input, for what is larger than a crop, and
    in tiles at its own resolution, for what is small (a frame that fits one crop is just
    that crop)."""
    covering = tiles(width, height, config)
    if len(covering) == 1:
        return RegionPlan(False, covering, reason)
    return RegionPlan(True, covering, reason)


def _cut_by_inner_edge(box: npt.NDArray[np.float32], crop: Rect, width: int, height: int) -> bool:
    x1, y1, x2, y2 = (float(v) for v in box)
    cx1, cy1, cx2, cy2 = crop
    return (
        (cx1 > 0 and x1 - cx1 <= _EDGE_PX)
        or (cy1 > 0 and y1 - cy1 <= _EDGE_PX)
        or (cx2 < width and cx2 - x2 <= _EDGE_PX)
        or (cy2 < height and cy2 - y2 <= _EDGE_PX)
    )


def merge_detections(
    full: Detections | None,
    crops: Sequence[tuple[Rect, Detections]],
    width: int,
    height: int,
    *,
    iou: float,
) -> Detections:
    """One frame's boxes from the whole-frame answer and the crops' answers (each in its
    crop's pixels): moved into the frame's pixels, duplicates of one object (seen in two
    crops, or in a crop and the whole frame) reduced to the most confident, and parts of an
    object cut by a crop's edge dropped where the whole object was found."""
    xyxy: list[npt.NDArray[np.float32]] = []
    conf: list[npt.NDArray[np.float32]] = []
    classes: list[npt.NDArray[np.int64]] = []
    cut: list[npt.NDArray[np.bool_]] = []
    if full is not None and len(full):
        xyxy.append(full.xyxy.astype(np.float32))
        conf.append(full.confidence.astype(np.float32))
        classes.append(full.class_id.astype(np.int64))
        cut.append(np.zeros(len(full), dtype=np.bool_))
    for rect, found in crops:
        if not len(found):
            continue
        shifted = found.xyxy.astype(np.float32) + np.array(
            [rect[0], rect[1], rect[0], rect[1]], dtype=np.float32
        )
        xyxy.append(shifted)
        conf.append(found.confidence.astype(np.float32))
        classes.append(found.class_id.astype(np.int64))
        cut.append(
            np.array([_cut_by_inner_edge(b, rect, width, height) for b in shifted], np.bool_)
        )
    if not xyxy:
        return Detections.empty()
    boxes, scores = np.concatenate(xyxy), np.concatenate(conf)
    ids, parts = np.concatenate(classes), np.concatenate(cut)
    # Class-aware: each class shifted far from the others.
    offset = ids[:, None].astype(np.float32) * (4.0 * max(width, height, 1024))
    # Parts go first, before the most confident box of an object is chosen: a part may be
    # surer than the whole it belongs to.
    whole = np.flatnonzero(~(parts & _inside_larger_of_its_class(boxes, ids)))
    kept = whole[nms(boxes[whole] + offset[whole], scores[whole], iou)]
    return Detections(xyxy=boxes[kept], confidence=scores[kept], class_id=ids[kept])


def _inside_larger_of_its_class(
    boxes: npt.NDArray[np.float32], ids: npt.NDArray[np.int64]
) -> npt.NDArray[np.bool_]:
    """For each box: whether a larger box of its class holds at least _PART_INSIDE of it."""
    area = np.maximum((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]), 1e-9)
    w = np.minimum(boxes[:, None, 2], boxes[None, :, 2]) - np.maximum(
        boxes[:, None, 0], boxes[None, :, 0]
    )
    h = np.minimum(boxes[:, None, 3], boxes[None, :, 3]) - np.maximum(
        boxes[:, None, 1], boxes[None, :, 1]
    )
    inside = (w > 0) & (h > 0) & (w * h / area[:, None] >= _PART_INSIDE)
    holder = inside & (ids[:, None] == ids[None, :]) & (area[None, :] > area[:, None])
    return np.asarray(holder.any(axis=1), dtype=np.bool_)
