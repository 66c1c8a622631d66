"""The whole of a static object, grown from the part the background model noticed.

The static-object model looks at a small copy of the frame with thresholds that keep noise
and lighting out, so on a dark night, or for an object close to the colour of the ground,
only its most distinct part differs enough there: the tie of a black bag, a label on a
bottle. The box an event shows (the alert still's rectangle, the owner and object crops)
must cover the whole object, so the candidate is grown here at the detect resolution.

Growing is hysteresis: the candidate's own pixels are the strong part, and any pixel
connected to them whose difference to the long-term background stands clear of the noise
around it is more of the object. The weak threshold is a multiple of that noise, measured
in the window itself (a robust spread of the frame-minus-background differences), tried
from the loosest level to the strictest until the region is bounded: it must not reach the
edge of the window, nor grow past a few times the seed's size or the largest object the
model accepts. Pixels of people, vehicles, fixtures and other candidates are never grown
into. When no level gives a bounded region the seed stands alone.

Only a window around the candidate is looked at, and only when a candidate is confirmed or
grows, so the cost is a fraction of a millisecond per object, not per frame.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

Float32 = npt.NDArray[np.float32]
BoolArray = npt.NDArray[np.bool_]
IntBox = tuple[int, int, int, int]  # x1, y1, x2, y2 in pixels, ends exclusive

_BRIDGE = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))


@dataclass(frozen=True)
class ExtentConfig:
    """How far a candidate may be grown; sizes are multiples of the seed's larger side."""

    # The real case behind these: a 16x18 px tie of a 100x90 px bag, the bag reaching about
    # five tie sizes below and three beside it.
    reach: float = 6.0
    min_reach_px: int = 16
    max_scale: float = 8.0
    # Weak thresholds in noise spreads (robust sigma of frame minus background), loosest
    # first; at 4 sigma about one free pixel in 15 000 passes by chance.
    levels: tuple[float, ...] = (4.0, 6.0, 9.0)
    # Never looser than this fraction of the model's own threshold: a noise-free picture
    # has no spread to measure, and residual texture is not an object.
    floor: float = 0.2
    # Where the object's outline is put: this fraction of its median difference.
    trim: float = 0.4
    # Too few free pixels around the seed to measure the noise: keep the seed.
    min_free_px: int = 64
    # A candidate grown while someone stood near it is grown again this often until nobody
    # is in its window (what they covered may be more of it).
    retry_s: float = 2.0

    def __post_init__(self) -> None:
        checks = {
            "reach > 0": self.reach > 0,
            "min_reach_px >= 1": self.min_reach_px >= 1,
            "max_scale >= 1": self.max_scale >= 1,
            "levels > 0, loosest first": bool(self.levels)
            and min(self.levels) > 0
            and list(self.levels) == sorted(self.levels),
            "0 <= floor <= 1": 0 <= self.floor <= 1,
            "0 <= trim < 1": 0 <= self.trim < 1,
            "retry_s > 0": self.retry_s > 0,
        }
        failed = [name for name, ok in checks.items() if not ok]
        if failed:
            raise ValueError(f"object extent config: expected {', '.join(failed)}, got {self}")


@dataclass(frozen=True)
class ExtentWindow:
    """The part of one frame that a candidate may grow into; arrays share one shape.

    `frame` and `background` are gain-normalised grey levels at the detect resolution (the
    background upsampled from the model's work resolution, both smoothed alike); `limit` is
    the model's own per-pixel difference threshold; `seed` the candidate's pixels; `blocked`
    what must never be grown into. `origin` is the window's top-left corner in the frame.
    """

    frame: Float32
    background: Float32
    limit: Float32
    seed: BoolArray
    blocked: BoolArray
    origin: tuple[int, int]
    frame_size: tuple[int, int]  # width, height

    def __post_init__(self) -> None:
        shape = self.frame.shape
        others = (self.background, self.limit, self.seed, self.blocked)
        if len(shape) != 2 or any(a.shape != shape for a in others):
            got = [a.shape for a in (self.frame, *others)]
            raise ValueError(f"object extent: expected five arrays of one (H, W) shape, got {got}")


@dataclass(frozen=True)
class Grown:
    """The object found: its box in frame pixels and its pixels over the window."""

    box: IntBox
    region: BoolArray


def mask_box(mask: BoolArray) -> IntBox | None:
    """Bounding box of a mask's pixels, None when it has none."""
    rows, cols = np.any(mask, axis=1), np.any(mask, axis=0)
    if not rows.any():
        return None
    y1, y2 = int(np.argmax(rows)), len(rows) - int(np.argmax(rows[::-1]))
    x1, x2 = int(np.argmax(cols)), len(cols) - int(np.argmax(cols[::-1]))
    return x1, y1, x2, y2


def window_around(
    seed: IntBox, frame_size: tuple[int, int], max_px: float, config: ExtentConfig
) -> IntBox:
    """The frame pixels a seed may grow into: `reach` seed sizes on every side, no more
    than the side of the largest object (`max_px` pixels), within the frame."""
    x1, y1, x2, y2 = seed
    side = max(x2 - x1, y2 - y1)
    reach = max(config.min_reach_px, min(config.reach * side, math.sqrt(max_px)))
    pad = math.ceil(reach)
    width, height = frame_size
    return max(0, x1 - pad), max(0, y1 - pad), min(width, x2 + pad), min(height, y2 + pad)


def grow(window: ExtentWindow, max_px: float, config: ExtentConfig) -> Grown | None:
    """The seed and everything connected to it that differs from the background clearly;
    None when the seed is empty or no bounded region is found."""
    seed_box = mask_box(window.seed)
    if seed_box is None:
        return None
    free = ~window.blocked & ~window.seed
    if int(np.count_nonzero(free)) < config.min_free_px:
        return None
    diff = window.frame - window.background
    # The median takes out what lighting the global gain left over in this corner.
    spread = diff[free]
    centre = float(np.median(spread))
    sigma = 1.4826 * float(np.median(np.abs(spread - centre)))
    dev = np.abs(diff - np.float32(centre))
    floor = np.float32(config.floor) * window.limit
    side = max(seed_box[2] - seed_box[0], seed_box[3] - seed_box[1])
    largest = config.max_scale * side
    h, w = window.seed.shape
    width, height = window.frame_size
    ox, oy = window.origin
    # Touching a window side that is not the frame's own edge means the region ran on.
    open_sides = (ox > 0, oy > 0, ox + w < width, oy + h < height)
    seed_u8 = window.seed.astype(np.uint8)
    for level in config.levels:
        weak = (dev > np.maximum(np.float32(level * sigma), floor)) & ~window.blocked
        weak_u8 = np.asarray(
            cv2.morphologyEx(weak.astype(np.uint8), cv2.MORPH_CLOSE, _BRIDGE), dtype=np.uint8
        )
        # Closing may bridge into blocked pixels; they stay out.
        weak_u8 &= (~window.blocked).astype(np.uint8)
        weak_u8 |= seed_u8
        _, labels = cv2.connectedComponents(weak_u8, connectivity=8)
        touched = np.unique(labels[window.seed])
        touched = touched[touched > 0]
        if touched.size == 0:
            continue
        region = np.isin(labels, touched)
        # The smoothing spreads a contrasty object's outline by a few pixels of weak
        # difference; its edge is where the difference falls to a part of the object's own.
        core = dev >= np.float32(config.trim * float(np.median(dev[region])))
        found = (region & core) | window.seed
        box = mask_box(found)
        assert box is not None
        x1, y1, x2, y2 = box
        runs_on = (
            (open_sides[0] and x1 == 0)
            or (open_sides[1] and y1 == 0)
            or (open_sides[2] and x2 == w)
            or (open_sides[3] and y2 == h)
        )
        too_big = max(x2 - x1, y2 - y1) > largest or int(np.count_nonzero(region)) > max_px
        if not runs_on and not too_big:
            return Grown((x1 + ox, y1 + oy, x2 + ox, y2 + oy), found)
    return None
