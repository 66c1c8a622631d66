"""Class-agnostic static-object model: things that appeared in view and stopped moving.

Two background models run on a small grayscale copy of every frame:

- the short-term model follows the scene within seconds, so anything that stops moving
  becomes part of it;
- the long-term model follows only what is background (slowly), and never learns pixels
  that belong to a candidate object or lie under a detected person or vehicle.

A pixel that differs from the long-term model but not from the short-term one holds
something that appeared and then stood still. Connected regions of such pixels, of a
plausible size, that stay put for a few seconds become candidate objects, whatever YOLO
calls them (or whether it sees them at all). A region that settles next to a candidate
is more of it. A region whose outline is sharper in the long-term model than in the frame
is where something was (a ghost) and is learnt, with a band around it so that no seam is
left where something put back on the spot would be judged. A candidate's pixels are
compared with the long-term model on every frame, which is how its removal is seen.

Global lighting (a cloud, dusk, the camera's exposure) is taken out before comparing: each
frame is divided by its brightness gain relative to the long-term model, a robust median
over the pixels nobody covers, and the models live in that normalised space. When most of
the frame still differs after that (the camera was moved, its picture switched to night
mode), the frame is not trusted, and after a while both models are learnt afresh.

All timers are wall-clock: every update carries its capture time in seconds, and learning
rates are time constants, so the model behaves the same at 2 fps as at 25.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import cv2
import numpy as np
import numpy.typing as npt

from detectors.extent import (
    ExtentConfig,
    ExtentWindow,
    IntBox,
    grow,
    mask_box,
    window_around,
)
from detectors.zones import CameraZones

log = logging.getLogger(__name__)

Box = tuple[float, float, float, float]
Float32 = npt.NDArray[np.float32]
BoolArray = npt.NDArray[np.bool_]
Status = Literal["present", "removed", "absorbed"]


@dataclass(frozen=True)
class StaticObjectConfig:
    """Thresholds of the model; sizes are fractions of the frame, times are seconds."""

    # 320 px wide keeps a bag at 20 m (a dozen pixels in a 640 px frame) while the whole
    # model costs about a millisecond per frame.
    work_width: int = 320
    # Smooths sensor noise and JPEG blocks before differencing.
    blur_sigma: float = 1.0
    # A still object's difference to the short-term model decays as exp(-t / tau): a dark
    # bag on grey paving merges into it within ~3 s, a walker (a second per spot) never.
    short_tau_s: float = 2.5
    # Long-term model on background pixels: follows shadows and uneven light changes.
    long_tau_s: float = 30.0
    # Long-term model on foreground pixels no candidate claims (a shadow that settled, an
    # undetected passer-by): absorbed in minutes, far slower than any dwell time.
    long_foreground_tau_s: float = 300.0
    # The first seconds of a stream only learn the scene.
    warmup_s: float = 3.0
    warmup_tau_s: float = 0.5
    # A pixel differs from a model when |frame - model| > diff_abs / gain + diff_rel * model:
    # the absolute part covers noise (which grows after dividing a dark frame by its gain),
    # the relative part texture and residual uneven lighting.
    diff_abs: float = 12.0
    diff_rel: float = 0.15
    # Size of a candidate relative to the frame's area: from a small bag far away to a
    # sofa nearby; larger regions are vehicles, lighting or a moved camera.
    min_area_frac: float = 0.0004
    max_area_frac: float = 0.08
    # A region must stay still this long (a clean view, shape unchanged) to be a candidate.
    min_still_s: float = 2.0
    still_iou: float = 0.6
    pending_miss_s: float = 1.0
    # A region that settles within this multiple of a candidate's larger side from it is
    # more of that candidate, not a new object: an object that matches the old background
    # in parts (a clear bottle put back where one stood) shows, and settles, piece by piece.
    merge_ratio: float = 0.5
    # Detected people and vehicles are masked with this margin around their box: YOLO boxes
    # are tight, and arms, shadows and a carried bag stick out.
    exclude_margin: float = 0.1
    # Presence of a candidate: fraction of its visible pixels still differing from the
    # long-term model; between the two thresholds the last judgement stands.
    present_above: float = 0.5
    absent_below: float = 0.2
    # Less visible than this (people in front of it) and presence is not judged at all.
    visible_below: float = 0.3
    # Continuously absent this long: the object was removed (cleaned, picked up).
    remove_after_s: float = 2.0
    # More of the frame than this differs after gain correction: no single object does that.
    global_change_frac: float = 0.35
    relearn_after_s: float = 10.0
    # Absorbed into the background after this long, whatever happens: a safety net; the
    # dumping logic normally ends a case (and asks for absorption) sooner.
    max_age_s: float = 4 * 3600.0
    # A region whose outline has weaker edges in the frame than in the long-term model is
    # where something was, not where something is (a ghost): learnt, not reported.
    ghost_edge_ratio: float = 0.8
    # A candidate's box is grown at the detect resolution to the whole object (only its most
    # distinct part may differ enough here, e.g. a black bag's tie at night); None: the box
    # is the candidate's own pixels.
    extent: ExtentConfig | None = field(default_factory=ExtentConfig)

    def __post_init__(self) -> None:
        sizes = 0 < self.min_area_frac < self.max_area_frac < 1
        presence = 0 <= self.absent_below < self.present_above <= 1
        taus = (self.short_tau_s, self.long_tau_s, self.long_foreground_tau_s, self.warmup_tau_s)
        checks = {
            "work_width >= 32": self.work_width >= 32,
            "0 < min_area_frac < max_area_frac < 1": sizes,
            "0 <= absent_below < present_above <= 1": presence,
            "time constants > 0": min(taus) > 0,
            "short_tau_s < long_tau_s": self.short_tau_s < self.long_tau_s,
            "0 < global_change_frac <= 1": 0 < self.global_change_frac <= 1,
            "merge_ratio >= 0": self.merge_ratio >= 0,
        }
        failed = [name for name, ok in checks.items() if not ok]
        if failed:
            raise ValueError(f"static-object config: expected {', '.join(failed)}, got {self}")


@dataclass(frozen=True)
class StaticObject:
    """One candidate object as the dumping logic sees it; boxes in frame pixels.

    `status` is "present" while it is there, hidden behind someone (`visible` False) or
    missing for less than remove_after_s; "removed" (taken away, `removed_at` is when it
    was first missed) and "absorbed" (folded into the background) are reported exactly
    once, after which the object is no longer listed.
    """

    id: int
    box: Box
    first_seen: float
    confirmed_at: float
    last_seen: float
    status: Status = "present"
    visible: bool = True
    removed_at: float | None = None
    area_frac: float = 0.0


@dataclass(frozen=True)
class ModelStats:
    """How the last frame looked to the model (for logs and metrics)."""

    t: float = 0.0
    gain: float = 1.0
    foreground_frac: float = 0.0
    global_change: bool = False
    warming_up: bool = True
    pending: int = 0


@dataclass
class _Pending:
    box: tuple[int, int, int, int]  # work pixels, x, y, w, h
    since: float
    last_seen: float


@dataclass
class _Candidate:
    id: int
    x: int
    y: int
    mask: BoolArray  # over the box (x, y, mask.shape) in work pixels
    first_seen: float
    confirmed_at: float
    last_seen: float
    absent_since: float | None = None
    visible: bool = True
    # The whole object in frame pixels, grown from `mask`; grown again (until settled) when
    # someone stood in the way or the candidate took in more pixels.
    extent: IntBox | None = None
    extent_at: float | None = None
    extent_settled: bool = False
    # The grown pixels in work pixels, over the box at `grown_xy`: the long-term model keeps
    # off them as off `mask`, or a faint object would fade into it within a minute.
    grown: BoolArray | None = None
    grown_xy: tuple[int, int] = (0, 0)

    def window(self) -> tuple[slice, slice]:
        h, w = self.mask.shape
        return slice(self.y, self.y + h), slice(self.x, self.x + w)

    def pixels(self, shape: tuple[int, int]) -> BoolArray:
        """Its own and its grown pixels over the whole work picture."""
        out = np.zeros(shape, dtype=np.bool_)
        rows, cols = self.window()
        out[rows, cols] = self.mask
        if self.grown is not None:
            gx, gy = self.grown_xy
            gh, gw = self.grown.shape
            out[gy : gy + gh, gx : gx + gw] |= self.grown
        return out

    def extend(self, blob: BoolArray, x: int, y: int) -> None:
        """Add a region (its mask over the box at x, y) to the candidate's pixels."""
        h, w = self.mask.shape
        bh, bw = blob.shape
        x0, y0 = min(self.x, x), min(self.y, y)
        x1, y1 = max(self.x + w, x + bw), max(self.y + h, y + bh)
        mask = np.zeros((y1 - y0, x1 - x0), dtype=np.bool_)
        mask[self.y - y0 : self.y - y0 + h, self.x - x0 : self.x - x0 + w] = self.mask
        mask[y - y0 : y - y0 + bh, x - x0 : x - x0 + bw] |= blob
        self.x, self.y, self.mask = x0, y0, mask


def _iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    ax2, ay2, bx2, by2 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    iw = min(ax2, bx2) - max(a[0], b[0])
    ih = min(ay2, by2) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    return inter / float(a[2] * a[3] + b[2] * b[3] - inter)


def _alpha(dt: float, tau: float) -> float:
    """Running-average weight for a step of dt seconds with time constant tau."""
    return 1.0 - math.exp(-max(dt, 0.0) / tau)


def _union(a: IntBox, b: IntBox) -> IntBox:
    return min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])


def _seed_box(bg: _Background, c: _Candidate) -> IntBox:
    """The candidate's own pixels, boxed in frame pixels."""
    sx, sy = bg.scale
    box = mask_box(c.mask)
    assert box is not None
    x1, y1, x2, y2 = box
    fw, fh = bg.frame_size
    return (
        math.floor((c.x + x1) * sx),
        math.floor((c.y + y1) * sy),
        min(fw, math.ceil((c.x + x2) * sx)),
        min(fh, math.ceil((c.y + y2) * sy)),
    )


_OPEN = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))
_CLOSE = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
# Work pixels around a ghost learnt with it: past the ring `_is_ghost` measures (two
# dilations) and the Sobel kernel's reach beyond that.
_GHOST_BAND = 4


@dataclass
class _Background:
    """The models of one camera at work resolution, in gain-normalised grey levels."""

    long: Float32
    short: Float32
    known: BoolArray  # long-term model has seen this pixel uncovered
    fg_since: Float32  # since when a pixel differs from the long-term model (inf: it does not)
    zone_ex: BoolArray  # fixture and ignore zones
    started: float
    frame_size: tuple[int, int]

    @property
    def shape(self) -> tuple[int, int]:
        h, w = self.long.shape
        return h, w

    @property
    def scale(self) -> tuple[float, float]:
        """Frame pixels per work pixel, (x, y)."""
        return self.frame_size[0] / self.long.shape[1], self.frame_size[1] / self.long.shape[0]


class StaticObjectModel:
    """The static-object model of one camera. Feed every frame to `update`, in time order."""

    def __init__(
        self,
        camera_id: str,
        zones: CameraZones | None = None,
        config: StaticObjectConfig | None = None,
    ) -> None:
        self.camera_id = camera_id
        self.zones = zones
        self.config = config or StaticObjectConfig()
        self.stats = ModelStats()
        self._next_id = 1
        self._frame_size: tuple[int, int] | None = None
        self._bg: _Background | None = None
        self._last_t: float | None = None
        self._global_since: float | None = None
        self._pending: list[_Pending] = []
        self._candidates: dict[int, _Candidate] = {}
        self._absorb_requested: set[int] = set()

    # ------------------------------------------------------------------ public

    def reset(self) -> None:
        """Forget everything, including the frame size (e.g. the camera was reconfigured)."""
        self._frame_size = None
        self._forget()

    def update(
        self, image: npt.NDArray[np.uint8], t: float, exclude: npt.ArrayLike | None = None
    ) -> tuple[StaticObject, ...]:
        """One frame at capture time `t` (seconds); `exclude`: (N, 4) boxes in frame pixels
        of people and vehicles seen in it. Returns every candidate, with removed and
        absorbed ones reported this once."""
        gray = self._prepare(image)
        if self._last_t is not None and t < self._last_t:
            log.warning(
                "camera %s: time went back from %.3f to %.3f; relearning the background",
                self.camera_id, self._last_t, t,
            )  # fmt: skip
            self._forget()
        boxes_ex = self._box_mask(exclude, gray.shape)
        bg = self._bg
        if bg is None:
            self._start(gray, t, boxes_ex)
            return ()
        dt = t - (self._last_t if self._last_t is not None else t)
        self._last_t = t
        cfg = self.config

        valid = bg.known & ~boxes_ex & ~bg.zone_ex
        gain = self._gain(bg, gray, valid)
        norm = gray / np.float32(gain)
        diff_long = self._differs(norm, bg.long, gain) & bg.known
        diff_short = self._differs(norm, bg.short, gain)
        claimed = self._claimed(bg, pending=False)
        judged = valid & ~claimed
        fg_frac = int(np.count_nonzero(diff_long & judged)) / max(1, int(np.count_nonzero(judged)))
        warming = t - bg.started < cfg.warmup_s
        global_change = not warming and fg_frac > cfg.global_change_frac

        bg.fg_since = np.where(
            diff_long, np.minimum(bg.fg_since, np.float32(t)), np.float32(np.inf)
        ).astype(np.float32)
        reported: list[StaticObject] = []
        if warming:
            fast = np.float32(_alpha(dt, cfg.warmup_tau_s))
            bg.short += fast * (norm - bg.short)
            self._learn_long(bg, norm, ~boxes_ex, np.full(norm.shape, fast, dtype=np.float32))
        elif global_change:
            reported = self._on_global_change(bg, norm, t, dt, boxes_ex)
        else:
            self._global_since = None
            static = diff_long & ~diff_short & ~boxes_ex & ~bg.zone_ex & ~claimed
            reported = self._judge_candidates(bg, diff_long, boxes_ex, t)
            self._find_new(bg, static, norm, boxes_ex, t)
            self._grow_extents(bg, image, gain, boxes_ex, t)
            reported += self._expire(bg, norm, t)
            bg.short += np.float32(_alpha(dt, cfg.short_tau_s)) * (norm - bg.short)
            rate = np.where(
                diff_long,
                np.float32(_alpha(dt, cfg.long_foreground_tau_s)),
                np.float32(_alpha(dt, cfg.long_tau_s)),
            ).astype(np.float32)
            self._learn_long(bg, norm, ~boxes_ex & ~self._claimed(bg, pending=True), rate)

        self.stats = ModelStats(
            t=t,
            gain=gain,
            foreground_frac=fg_frac,
            global_change=global_change,
            warming_up=warming,
            pending=len(self._pending),
        )
        live = [self._report(bg, c, "present") for c in self._candidates.values()]
        return tuple(live + reported)

    def absorb(self, object_id: int) -> bool:
        """Take a candidate into the long-term background (e.g. its dumping case expired);
        reported as "absorbed" on the next update. False when no such candidate exists."""
        if object_id not in self._candidates:
            return False
        self._absorb_requested.add(object_id)
        return True

    @property
    def work_size(self) -> tuple[int, int] | None:
        """(width, height) the model works at, once the first frame has been seen."""
        return None if self._bg is None else (self._bg.shape[1], self._bg.shape[0])

    # ------------------------------------------------------------------ state

    def _forget(self) -> None:
        self._bg = None
        self._last_t = None
        self._global_since = None
        self._pending = []
        self._candidates = {}
        self._absorb_requested = set()

    def _start(self, gray: Float32, t: float, boxes_ex: BoolArray) -> None:
        h, w = gray.shape
        assert self._frame_size is not None
        self._bg = _Background(
            long=gray.copy(),
            short=gray.copy(),
            # What people and vehicles hide on the first frame is not background yet.
            known=~boxes_ex,
            fg_since=np.full((h, w), np.inf, dtype=np.float32),
            zone_ex=(
                self.zones.exclusion_mask(w, h)
                if self.zones is not None
                else np.zeros((h, w), dtype=np.bool_)
            ),
            started=t,
            frame_size=self._frame_size,
        )
        self._last_t = t
        self._global_since = None
        self.stats = ModelStats(t=t)

    def _prepare(self, image: npt.NDArray[np.uint8]) -> Float32:
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
            got = image.dtype if isinstance(image, np.ndarray) else type(image).__name__
            raise ValueError(f"camera {self.camera_id}: expected a uint8 image, got {got}")
        if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 3)):
            raise ValueError(
                f"camera {self.camera_id}: expected a BGR (H, W, 3) or gray (H, W) image, "
                f"got shape {image.shape}"
            )
        height, width = image.shape[:2]
        if self._frame_size is None:
            self._frame_size = (width, height)
        elif self._frame_size != (width, height):
            expected = self._frame_size
            raise ValueError(
                f"camera {self.camera_id}: expected frames of {expected[0]}x{expected[1]}, "
                f"got {width}x{height} (reset() the model when the camera changes)"
            )
        if image.ndim == 2:
            gray = image
        elif image.shape[2] == 1:
            gray = image[:, :, 0]
        else:
            gray = np.asarray(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), dtype=np.uint8)
        work_w = min(self.config.work_width, width)
        work_h = max(1, round(height * work_w / width))
        if (work_w, work_h) != (width, height):
            gray = np.asarray(
                cv2.resize(gray, (work_w, work_h), interpolation=cv2.INTER_AREA), dtype=np.uint8
            )
        small = np.asarray(gray, dtype=np.float32)
        if self.config.blur_sigma > 0:
            small = np.asarray(
                cv2.GaussianBlur(small, (0, 0), self.config.blur_sigma), dtype=np.float32
            )
        return small

    def _box_mask(self, exclude: npt.ArrayLike | None, shape: tuple[int, ...]) -> BoolArray:
        assert self._frame_size is not None
        fw, fh = self._frame_size
        work_h, work_w = shape[0], shape[1]
        mask = np.zeros((work_h, work_w), dtype=np.bool_)
        if exclude is None:
            return mask
        boxes = np.asarray(exclude, dtype=np.float64)
        if boxes.size == 0:
            return mask
        if boxes.ndim != 2 or boxes.shape[1] != 4:
            raise ValueError(
                f"camera {self.camera_id}: exclude: expected boxes of shape (N, 4), "
                f"got {boxes.shape}"
            )
        sx, sy = fw / work_w, fh / work_h
        m = self.config.exclude_margin
        for x1, y1, x2, y2 in boxes:
            if not (np.isfinite([x1, y1, x2, y2]).all() and x2 > x1 and y2 > y1):
                continue
            mx, my = m * (x2 - x1), m * (y2 - y1)
            c1 = max(0, math.floor((x1 - mx) / sx))
            r1 = max(0, math.floor((y1 - my) / sy))
            c2 = min(work_w, math.ceil((x2 + mx) / sx))
            r2 = min(work_h, math.ceil((y2 + my) / sy))
            mask[r1:r2, c1:c2] = True
        return mask

    # ------------------------------------------------------------------ per-pixel steps

    def _gain(self, bg: _Background, gray: Float32, valid: BoolArray) -> float:
        # Every third pixel in both directions (thousands of them) is plenty for a median;
        # dark pixels are mostly noise and would make the ratio jumpy.
        long = bg.long[::3, ::3]
        sel = valid[::3, ::3] & (long > 16.0)
        if int(sel.sum()) < 50:
            return self.stats.gain
        ratio = np.log((gray[::3, ::3][sel] + 1.0) / (long[sel] + 1.0))
        return float(np.clip(math.exp(float(np.median(ratio))), 0.05, 20.0))

    def _differs(self, norm: Float32, model: Float32, gain: float) -> BoolArray:
        cfg = self.config
        limit = np.float32(cfg.diff_abs / min(gain, 1.0)) + np.float32(cfg.diff_rel) * model
        return np.asarray(np.abs(norm - model) > limit, dtype=np.bool_)

    def _claimed(self, bg: _Background, *, pending: bool) -> BoolArray:
        """Pixels of candidates, and of regions waiting to become one if `pending`."""
        claimed = np.zeros(bg.shape, dtype=np.bool_)
        for c in self._candidates.values():
            rows, cols = c.window()
            claimed[rows, cols] |= c.mask
        for p in self._pending if pending else ():
            x, y, w, h = p.box
            claimed[y : y + h, x : x + w] = True
        for c in self._candidates.values() if pending else ():
            if c.grown is not None:
                claimed |= c.pixels(bg.shape)
        return claimed

    def _learn_long(self, bg: _Background, norm: Float32, where: BoolArray, rate: Float32) -> None:
        # Pixels seen uncovered for the first time are taken as they are.
        step = np.where(where, np.where(bg.known, rate, np.float32(1.0)), np.float32(0.0))
        bg.long += step * (norm - bg.long)
        bg.known |= where

    def _on_global_change(
        self, bg: _Background, norm: Float32, t: float, dt: float, boxes_ex: BoolArray
    ) -> list[StaticObject]:
        """Most of the frame changed at once: hold every judgement; relearn if it lasts."""
        cfg = self.config
        if self._global_since is None:
            self._global_since = t
            log.info(
                "camera %s: most of the picture changed at %.3f; holding judgements",
                self.camera_id, t,
            )  # fmt: skip
        bg.short += np.float32(_alpha(dt, cfg.short_tau_s)) * (norm - bg.short)
        for c in self._candidates.values():
            c.visible = False
        if t - self._global_since < cfg.relearn_after_s:
            return []
        log.warning(
            "camera %s: the picture stayed different for %.0f s (camera moved?); relearning "
            "the background and dropping %d candidates",
            self.camera_id, t - self._global_since, len(self._candidates),
        )  # fmt: skip
        dropped = [self._report(bg, c, "absorbed") for c in self._candidates.values()]
        self._candidates.clear()
        self._pending.clear()
        bg.long[...] = norm
        bg.short[...] = norm
        bg.known = ~boxes_ex
        bg.fg_since[...] = np.inf
        self._global_since = None
        return dropped

    # ------------------------------------------------------------------ candidates

    def _judge_candidates(
        self, bg: _Background, diff_long: BoolArray, boxes_ex: BoolArray, t: float
    ) -> list[StaticObject]:
        cfg = self.config
        gone: list[StaticObject] = []
        for c in list(self._candidates.values()):
            rows, cols = c.window()
            visible = c.mask & ~boxes_ex[rows, cols]
            c.visible = bool(visible.sum() >= cfg.visible_below * c.mask.sum())
            if not c.visible:
                continue
            share = float(diff_long[rows, cols][visible].mean())
            if share >= cfg.present_above:
                c.last_seen, c.absent_since = t, None
            elif share < cfg.absent_below:
                if c.absent_since is None:
                    c.absent_since = t
                if t - c.absent_since >= cfg.remove_after_s:
                    log.debug("camera %s: object %d removed at %.3f", self.camera_id, c.id, t)
                    gone.append(self._report(bg, c, "removed", removed_at=c.absent_since))
                    del self._candidates[c.id]
        return gone

    def _find_new(
        self, bg: _Background, static: BoolArray, norm: Float32, boxes_ex: BoolArray, t: float
    ) -> None:
        cfg = self.config
        if not static.any() and not self._pending:
            return
        opened = cv2.morphologyEx(static.astype(np.uint8), cv2.MORPH_OPEN, _OPEN)
        mask = np.asarray(cv2.morphologyEx(opened, cv2.MORPH_CLOSE, _CLOSE), dtype=np.uint8)
        count, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
        h, w = static.shape
        min_px = cfg.min_area_frac * h * w
        max_px = cfg.max_area_frac * h * w
        near_people = np.asarray(
            cv2.dilate(boxes_ex.astype(np.uint8), _OPEN, iterations=2), dtype=np.bool_
        )
        matched: set[int] = set()
        confirmed: set[int] = set()
        for label in range(1, int(count)):
            x, y, bw, bh, area = (int(v) for v in stats[label])
            if not min_px <= area <= max_px:
                continue
            box = (x, y, bw, bh)
            blob = np.asarray(labels[y : y + bh, x : x + bw] == label, dtype=np.bool_)
            # A region cut by someone's box may be only part of an object: wait.
            cut = bool(near_people[y : y + bh, x : x + bw][blob].any())
            best, best_iou = None, 0.3
            for i, p in enumerate(self._pending):
                overlap = _iou(p.box, box)
                if i not in matched and overlap > best_iou:
                    best, best_iou = i, overlap
            if best is None:
                if not cut:
                    self._pending.append(_Pending(box, t, t))
                    matched.add(len(self._pending) - 1)
                continue
            matched.add(best)
            pending = self._pending[best]
            pending.last_seen = t
            if cut:
                continue
            if best_iou < cfg.still_iou:
                # Still changing shape (being put down, rolling): start the clock again.
                pending.box, pending.since = box, t
            elif t - pending.since >= cfg.min_still_s:
                self._confirm(bg, pending, blob, x, y, norm, t)
                confirmed.add(best)
        # Regions no longer seen go, unless someone stands in front of them.
        kept = []
        for i, p in enumerate(self._pending):
            if i in confirmed:
                continue
            x, y, bw, bh = p.box
            hidden = boxes_ex[y : y + bh, x : x + bw].mean() >= 0.5
            if i in matched or hidden or t - p.last_seen <= cfg.pending_miss_s:
                kept.append(p)
        self._pending = kept

    def _confirm(
        self,
        bg: _Background,
        pending: _Pending,
        blob: BoolArray,
        x: int,
        y: int,
        norm: Float32,
        t: float,
    ) -> None:
        rows, cols = slice(y, y + blob.shape[0]), slice(x, x + blob.shape[1])
        if self._is_ghost(bg, blob, x, y, norm):
            log.debug(
                "camera %s: region at %s is where something was, not a new object; learnt",
                self.camera_id, pending.box,
            )  # fmt: skip
            self._learn_ghost(bg, blob, x, y, norm)
            return
        host = self._neighbour(blob, x, y)
        if host is not None:
            host.extend(blob, x, y)
            host.last_seen = t
            host.extent_at, host.extent_settled = None, False
            log.debug(
                "camera %s: region at %s is more of object %d, now at %s",
                self.camera_id, pending.box, host.id, self._frame_box(bg, host),
            )  # fmt: skip
            return
        since = bg.fg_since[rows, cols][blob]
        since = since[np.isfinite(since)]
        first_seen = float(np.median(since)) if since.size else pending.since
        candidate = _Candidate(
            id=self._next_id,
            x=x,
            y=y,
            mask=blob.copy(),
            first_seen=min(first_seen, t),
            confirmed_at=t,
            last_seen=t,
        )
        self._next_id += 1
        self._candidates[candidate.id] = candidate
        log.debug(
            "camera %s: object %d at %s, appeared at %.3f, confirmed at %.3f",
            self.camera_id, candidate.id, self._frame_box(bg, candidate), first_seen, t,
        )  # fmt: skip

    def _neighbour(self, blob: BoolArray, x: int, y: int) -> _Candidate | None:
        """The candidate a region lies within merge_ratio x that candidate's size of, the
        nearest when several do."""
        bh, bw = blob.shape
        best: tuple[float, int] | None = None
        for c in self._candidates.values():
            h, w = c.mask.shape
            dx = max(0, max(c.x, x) - min(c.x + w, x + bw))
            dy = max(0, max(c.y, y) - min(c.y + h, y + bh))
            gap = math.hypot(dx, dy)
            if gap <= self.config.merge_ratio * max(w, h) and (best is None or gap < best[0]):
                best = (gap, c.id)
        return None if best is None else self._candidates[best[1]]

    def _learn_ghost(self, bg: _Background, blob: BoolArray, x: int, y: int, norm: Float32) -> None:
        """Take the frame into the long-term model over a ghost and a band around it.

        Pasting only the region would leave a seam in the model along its outline, exactly
        where `_is_ghost` looks: an object put back on the spot later differs from the model
        over about the same region, and the seam would make it look like a ghost too (a
        bottle taken away and put back five seconds later was learnt, never reported). The
        band reaches past that ring; other candidates' pixels are left alone."""
        h, w = norm.shape
        y1, x1 = max(0, y - _GHOST_BAND), max(0, x - _GHOST_BAND)
        y2 = min(h, y + blob.shape[0] + _GHOST_BAND)
        x2 = min(w, x + blob.shape[1] + _GHOST_BAND)
        region = np.zeros((y2 - y1, x2 - x1), dtype=np.uint8)
        region[y - y1 : y - y1 + blob.shape[0], x - x1 : x - x1 + blob.shape[1]] = blob
        band = np.asarray(cv2.dilate(region, _OPEN, iterations=_GHOST_BAND), dtype=np.bool_)
        band &= ~self._claimed(bg, pending=False)[y1:y2, x1:x2]
        rows, cols = slice(y1, y2), slice(x1, x2)
        bg.long[rows, cols][band] = norm[rows, cols][band]
        bg.known[rows, cols] |= band

    def _is_ghost(self, bg: _Background, blob: BoolArray, x: int, y: int, norm: Float32) -> bool:
        """Edges along the region's outline: stronger in the frame (an object lies there)
        or in the long-term model (an object lay there and is gone)?"""
        pad = 3
        h, w = norm.shape
        y1, x1 = max(0, y - pad), max(0, x - pad)
        y2, x2 = min(h, y + blob.shape[0] + pad), min(w, x + blob.shape[1] + pad)
        region = np.zeros((y2 - y1, x2 - x1), dtype=np.uint8)
        region[y - y1 : y - y1 + blob.shape[0], x - x1 : x - x1 + blob.shape[1]] = blob
        outer = np.asarray(cv2.dilate(region, _OPEN, iterations=2), dtype=np.bool_)
        inner = np.asarray(cv2.erode(region, _OPEN), dtype=np.bool_)
        ring = outer & ~inner
        if not ring.any():
            return False

        def edges(image: Float32) -> float:
            crop = np.ascontiguousarray(image[y1:y2, x1:x2])
            gx = np.asarray(cv2.Sobel(crop, cv2.CV_32F, 1, 0, ksize=3), dtype=np.float32)
            gy = np.asarray(cv2.Sobel(crop, cv2.CV_32F, 0, 1, ksize=3), dtype=np.float32)
            return float(np.hypot(gx, gy)[ring].mean())

        return edges(norm) < self.config.ghost_edge_ratio * edges(bg.long)

    def _expire(self, bg: _Background, norm: Float32, t: float) -> list[StaticObject]:
        out: list[StaticObject] = []
        for c in list(self._candidates.values()):
            too_old = t - c.confirmed_at >= self.config.max_age_s
            if c.id in self._absorb_requested or too_old:
                pixels = c.pixels(bg.shape)
                bg.long[pixels] = norm[pixels]
                bg.short[pixels] = norm[pixels]
                out.append(self._report(bg, c, "absorbed"))
                del self._candidates[c.id]
                log.debug("camera %s: object %d absorbed at %.3f", self.camera_id, c.id, t)
        self._absorb_requested &= set(self._candidates)
        return out

    def _grow_extents(
        self,
        bg: _Background,
        image: npt.NDArray[np.uint8],
        gain: float,
        boxes_ex: BoolArray,
        t: float,
    ) -> None:
        """Grow candidates that are due to the whole object, in frame pixels."""
        ecfg = self.config.extent
        if ecfg is None:
            return
        for c in self._candidates.values():
            waited = c.extent_at is None or t - c.extent_at >= ecfg.retry_s
            if c.extent_settled or not waited or not c.visible or c.absent_since is not None:
                continue
            grown, crowded = self._grow_extent(bg, c, image, gain, boxes_ex, ecfg)
            if grown is not None:
                box, region, (x, y) = grown
                c.extent = box if c.extent is None else _union(c.extent, box)
                self._keep_grown(bg, c, region, x, y)
                log.debug(
                    "camera %s: object %d grown to %s", self.camera_id, c.id, self._frame_box(bg, c)
                )  # fmt: skip
            # Someone in the window may hide more of it: look again once they are gone.
            c.extent_at, c.extent_settled = t, not crowded

    def _grow_extent(
        self,
        bg: _Background,
        c: _Candidate,
        image: npt.NDArray[np.uint8],
        gain: float,
        boxes_ex: BoolArray,
        ecfg: ExtentConfig,
    ) -> tuple[tuple[IntBox, BoolArray, tuple[int, int]] | None, bool]:
        """((box in frame pixels, grown pixels over the work window, its corner) or None,
        whether people or vehicles are in the window)."""
        cfg = self.config
        sx, sy = bg.scale
        fw, fh = bg.frame_size
        work_h, work_w = bg.shape
        max_px = cfg.max_area_frac * fw * fh
        x1, y1, x2, y2 = window_around(_seed_box(bg, c), (fw, fh), max_px, ecfg)
        # The window on the work grid, so that the background upsamples onto it exactly.
        wx1, wy1 = math.floor(x1 / sx), math.floor(y1 / sy)
        wx2, wy2 = min(work_w, math.ceil(x2 / sx)), min(work_h, math.ceil(y2 / sy))
        x1, y1 = round(wx1 * sx), round(wy1 * sy)
        x2, y2 = min(fw, round(wx2 * sx)), min(fh, round(wy2 * sy))
        size = (x2 - x1, y2 - y1)
        work = (slice(wy1, wy2), slice(wx1, wx2))

        def up(values: npt.NDArray[Any], how: int) -> npt.NDArray[Any]:
            return np.asarray(cv2.resize(values, size, interpolation=how))

        seed = np.zeros((wy2 - wy1, wx2 - wx1), dtype=np.uint8)
        rows, cols = c.window()
        seed[rows.start - wy1 : rows.stop - wy1, cols.start - wx1 : cols.stop - wx1] = c.mask
        others = np.zeros(bg.shape, dtype=np.bool_)
        for other in self._candidates.values():
            if other.id != c.id:
                others |= other.pixels(bg.shape)
        others = others[work]
        people = boxes_ex[work]
        blocked = people | bg.zone_ex[work] | ~bg.known[work] | others
        crop = image[y1:y2, x1:x2]
        if crop.ndim == 3 and crop.shape[2] == 3:
            crop = np.asarray(cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY), dtype=np.uint8)
        elif crop.ndim == 3:
            crop = crop[:, :, 0]
        frame = np.asarray(crop, dtype=np.float32) / np.float32(gain)
        if cfg.blur_sigma > 0:
            # Smoothed as much as the model's frames are, so that texture the background
            # keeps does not differ from it.
            sigma = cfg.blur_sigma * max(sx, sy)
            frame = np.asarray(cv2.GaussianBlur(frame, (0, 0), sigma), dtype=np.float32)
        background = up(bg.long[work], cv2.INTER_LINEAR).astype(np.float32)
        limit = np.float32(cfg.diff_abs / min(gain, 1.0)) + np.float32(cfg.diff_rel) * background
        window = ExtentWindow(
            frame=frame,
            background=background,
            limit=limit,
            seed=up(seed, cv2.INTER_NEAREST).astype(np.bool_),
            blocked=up(blocked.astype(np.uint8), cv2.INTER_NEAREST).astype(np.bool_),
            origin=(x1, y1),
            frame_size=(fw, fh),
        )
        crowded = bool(people.any())
        grown = grow(window, max_px, ecfg)
        if grown is None:
            return None, crowded
        small = cv2.resize(
            grown.region.astype(np.uint8) * 255,
            (wx2 - wx1, wy2 - wy1),
            interpolation=cv2.INTER_AREA,
        )
        # A quarter covered is enough: thin parts of the object count.
        region = np.asarray(small, dtype=np.uint8) >= 64
        return (grown.box, region, (wx1, wy1)), crowded

    def _keep_grown(
        self, bg: _Background, c: _Candidate, region: BoolArray, x: int, y: int
    ) -> None:
        """Add grown pixels (work pixels, over the box at x, y) to what the candidate keeps."""
        merged = c.pixels(bg.shape) if c.grown is not None else np.zeros(bg.shape, np.bool_)
        merged[y : y + region.shape[0], x : x + region.shape[1]] |= region
        rows, cols = c.window()
        merged[rows, cols] &= ~c.mask
        box = mask_box(merged)
        if box is None:
            return
        c.grown = merged[box[1] : box[3], box[0] : box[2]].copy()
        c.grown_xy = (box[0], box[1])

    def _frame_box(self, bg: _Background, c: _Candidate) -> Box:
        box = _seed_box(bg, c)
        if c.extent is not None:
            box = _union(box, c.extent)
        return (float(box[0]), float(box[1]), float(box[2]), float(box[3]))

    def _report(
        self, bg: _Background, c: _Candidate, status: Status, removed_at: float | None = None
    ) -> StaticObject:
        return StaticObject(
            id=c.id,
            box=self._frame_box(bg, c),
            first_seen=c.first_seen,
            confirmed_at=c.confirmed_at,
            last_seen=c.last_seen,
            status=status,
            visible=c.visible,
            removed_at=removed_at,
            area_frac=float(c.mask.sum()) / bg.long.size,
        )

    # ------------------------------------------------------------------ resuming

    def export_state(self) -> tuple[dict[str, Any], dict[str, npt.NDArray[Any]]]:
        """What a restarted detector needs to go on judging this camera's objects: the
        long-term background (half precision is plenty for grey levels), which pixels it
        knows, and the candidates. The short-term model and regions still settling are not
        kept: they are relearnt within seconds."""
        bg = self._bg
        meta: dict[str, Any] = {
            "next_id": self._next_id,
            "frame_size": list(self._frame_size) if self._frame_size is not None else None,
            "last_t": self._last_t,
            "gain": self.stats.gain,
            "started": None if bg is None else bg.started,
            "candidates": [],
        }
        arrays: dict[str, npt.NDArray[Any]] = {}
        if bg is None:
            return meta, arrays
        arrays["long"] = bg.long.astype(np.float16)
        arrays["known"] = np.packbits(bg.known)
        for c in self._candidates.values():
            plain: dict[str, Any] = {}
            for f in dataclasses.fields(_Candidate):
                value = getattr(c, f.name)
                if isinstance(value, np.ndarray):
                    key = f"candidate.{c.id}.{f.name}"
                    arrays[key] = value
                    plain[f.name] = {"array": key}
                else:
                    plain[f.name] = list(value) if isinstance(value, tuple) else value
            meta["candidates"].append(plain)
        return meta, arrays

    def import_state(self, meta: Mapping[str, Any], arrays: Mapping[str, npt.NDArray[Any]]) -> None:
        """Take up a state `export_state` wrote. Raises ValueError when it does not fit
        (another resolution, a damaged snapshot); the model is then left fresh."""
        self.reset()
        size = meta.get("frame_size")
        self._next_id = max(self._next_id, int(meta["next_id"]))
        if size is None or "long" not in arrays:
            return
        width, height = int(size[0]), int(size[1])
        work_w = min(self.config.work_width, width)
        work_h = max(1, round(height * work_w / width))
        long = np.asarray(arrays["long"], dtype=np.float32)
        if long.shape != (work_h, work_w) or not np.isfinite(long).all():
            raise ValueError(
                f"camera {self.camera_id}: expected a {work_w}x{work_h} background in the "
                f"snapshot, got shape {long.shape}"
            )
        known = np.unpackbits(np.asarray(arrays["known"], dtype=np.uint8))[: long.size]
        if known.size != long.size:
            raise ValueError(f"camera {self.camera_id}: the snapshot's pixel mask is cut short")
        candidates: dict[int, _Candidate] = {}
        for plain in meta["candidates"]:
            values: dict[str, Any] = {}
            for f in dataclasses.fields(_Candidate):
                if f.name not in plain:
                    continue
                value = plain[f.name]
                if isinstance(value, dict) and "array" in value:
                    value = np.asarray(arrays[value["array"]])
                elif isinstance(value, list):
                    value = tuple(value)
                values[f.name] = value
            candidate = _Candidate(**values)
            h, w = candidate.mask.shape
            if not (candidate.x >= 0 and candidate.x + w <= work_w and candidate.y >= 0
                    and candidate.y + h <= work_h):  # fmt: skip
                raise ValueError(
                    f"camera {self.camera_id}: object {candidate.id} of the snapshot lies "
                    "outside the picture"
                )
            candidate.mask = candidate.mask.astype(np.bool_)
            candidates[candidate.id] = candidate
        self._frame_size = (width, height)
        self._bg = _Background(
            long=long,
            short=long.copy(),
            known=known.reshape(long.shape).astype(np.bool_),
            fg_since=np.full(long.shape, np.inf, dtype=np.float32),
            zone_ex=(
                self.zones.exclusion_mask(work_w, work_h)
                if self.zones is not None
                else np.zeros(long.shape, dtype=np.bool_)
            ),
            started=float(meta["started"]),
            frame_size=(width, height),
        )
        self._candidates = candidates
        last_t = meta.get("last_t")
        self._last_t = None if last_t is None else float(last_t)
        self.stats = ModelStats(t=self._last_t or 0.0, gain=float(meta.get("gain") or 1.0),
                                warming_up=False)  # fmt: skip
