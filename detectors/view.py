"""Camera-view monitor: notices when a camera is moved, bumped, covered or put out of focus.

A camera turned a few degrees shows the same street somewhere else in the picture; to the
scene models every shifted kerb, pole and tile joint is something new, so one bumped camera
would become a wave of dumping alarms. This monitor watches the view as a whole and tells the
scene models when to trust a frame, when to hold, and when to start over.

It keeps a reference of the scene (a slow running average of a small grey copy, learnt only
while the view is trusted and never under people or vehicles) and its outline: the pixels
where the reference has strong edges. Per frame, outside the excluded boxes:

- changed share: of the reference's strong edges, the share with no edge in the frame nearby.
  Lighting (a cloud, dusk, the camera's exposure) changes grey levels, not where the edges
  are; a camera turned a few degrees moves nearly every edge. Edges that a pan slides along
  themselves are caught by aligning the frame to the reference (phase correlation, then an
  ECC refinement with rotation): an edge the alignment moves counts as changed;
- brightness spread: the grey standard deviation; a lens covered by a hand, a bag or paint
  shows an almost uniform picture;
- sharpness ratio: the picture's detail (mean absolute Laplacian per grey level of mean
  brightness, so it does not change with the light) relative to a slow baseline of the
  camera's usual detail; a camera knocked out of focus or smeared loses most of it.

Conditions that last are reported as `ViewChange` start and end pairs: "moved" (the changed
share stayed high: the scene models start over and relearn quietly for a while), "covered"
and "blurred" (the view is untrusted while they last; when the picture comes back and still
matches the reference, the scene models carry on as before, the objects lying there are still
judged; if it does not match, the camera was also moved). A shorter change, such as a bus
right in front of the lens or a flash, only holds the frames while it lasts.

What the scene models do with each frame follows from `ViewStatus`:

- trusted: judge and learn as usual;
- quiet (not trusted): learn the scene, confirm no new object (warm-up and relearning);
- neither: skip the frame (held, covered, blurred, or too little of the frame visible).

All timers are wall-clock, taken from the frame times the caller passes, so the monitor
behaves the same at 2 fps as at 25. Pure: numpy and OpenCV, no I/O.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import math
from dataclasses import dataclass
from typing import Any, Literal

import cv2
import numpy as np
import numpy.typing as npt

from pantau.settings import ViewSettings

log = logging.getLogger(__name__)

Condition = Literal["moved", "covered", "blurred"]
Phase = Literal["start", "end"]
Float32 = npt.NDArray[np.float32]
BoolArray = npt.NDArray[np.bool_]

_STATE_VERSION = 1
# A grey level below which a pixel counts as black when the gain is measured: dividing by the
# brightness of an almost black frame would turn its noise into edges.
_MIN_LEVEL = 4.0


@dataclass(frozen=True)
class ViewConfig:
    """Thresholds of the monitor; sizes are work pixels or fractions, times are seconds."""

    # A 160 px wide grey copy keeps every kerb, pole and building outline a camera sees and
    # costs well under a millisecond per frame; tile joints and leaves mostly average out,
    # which is what a view check wants.
    work_width: int = 160
    # Smooths sensor noise and JPEG blocks before edges are taken.
    blur_sigma: float = 0.8
    # The reference follows the scene slowly: a bag or a parked car becomes part of the view
    # in minutes, a person standing by for seconds barely marks it.
    reference_tau_s: float = 60.0
    # While relearning (after a move, at start-up) the reference follows within a second.
    relearn_tau_s: float = 1.0
    # The camera's usual detail follows even more slowly: hours of dusk or rain must not
    # become "usual" while a lens smeared for minutes still stands out.
    detail_tau_s: float = 600.0
    # No single frame writes more than this share into the reference, however long the gap
    # before it (a camera that sends one frame a minute).
    max_learn_alpha: float = 0.25
    # A reference pixel is an edge when its gradient (Sobel, grey levels per work pixel)
    # exceeds this: the outline of a kerb or a wall, not paving grain or noise.
    edge_threshold: float = 40.0
    # A frame pixel is an edge when its gradient exceeds this share of the threshold (scaled by
    # the frame's brightness relative to the reference): an edge seen at dusk is weaker.
    frame_edge_share: float = 0.4
    # "Nearby": within this many work pixels (about 4 px of a 640 px frame), which absorbs
    # sensor noise and a camera swaying in the wind, not a camera turned by a few degrees.
    edge_reach_px: int = 1
    # An edge shifted along itself (a kerb when the camera pans along the street) still finds
    # itself nearby; so when this share of the outline is missing, the frame is also aligned
    # to the reference (translation, then rotation) and an edge the alignment moves by more
    # than shift_tolerance_px counts as changed. The alignment is believed only when it
    # explains at least half of the missing outline.
    register_above: float = 0.05
    shift_tolerance_px: float = 1.5
    # With fewer reference edge pixels than this share of the judged area (fog, a blank wall,
    # a black night) the changed share is not measured (0).
    min_edge_frac: float = 0.01
    # Changed share above which the view has moved: a person close to the lens, or objects
    # taken off a table, leave up to ~40 % of the outline missing; a camera turned by 3 degrees
    # or moved by 30 px moves ~80 % or more.
    moved_frac: float = 0.6
    # ... for this long: a bus passing right in front only holds the frames.
    moved_after_s: float = 3.0
    # Covered or blurred for this long: a tamper alarm; a hand waved past the lens is not.
    tamper_after_s: float = 2.0
    # ... and the picture must be back this long before the tamper ends.
    back_after_s: float = 1.0
    # Grey spread (standard deviation, 0..255 levels) below which the picture is covered: a
    # street at night still has lamps and kerbs (an empty car park of dark asphalt: ~10), a lens
    # under a bag or spray paint has not.
    uniform_spread: float = 6.0
    # Detail below this share of the camera's usual detail: the picture is blurred. Real clips
    # stay above ~0.55 (a car driving through, a hand in front); a picture blurred with a
    # Gaussian of sigma 6 px (640 px wide) falls to 0.2-0.3.
    blur_ratio: float = 0.4
    # After a move the scene models relearn quietly this long.
    relearn_s: float = 30.0
    # The first seconds of a stream only learn the view.
    warmup_s: float = 5.0
    # Excluded boxes (people, vehicles) get this margin around them, as a share of their
    # size: detector boxes are tight, and arms and shadows stick out.
    exclude_margin: float = 0.1
    # Less of the frame than this outside the excluded boxes: nothing is judged, the frame
    # is held.
    min_visible_frac: float = 0.3

    def __post_init__(self) -> None:
        taus = (self.reference_tau_s, self.relearn_tau_s, self.detail_tau_s)
        times = (self.moved_after_s, self.tamper_after_s, self.back_after_s, self.warmup_s)
        checks = {
            "work_width >= 32": self.work_width >= 32,
            "blur_sigma >= 0": self.blur_sigma >= 0,
            "time constants > 0": min(taus) > 0,
            "relearn_tau_s < reference_tau_s": self.relearn_tau_s < self.reference_tau_s,
            "0 < max_learn_alpha <= 1": 0 < self.max_learn_alpha <= 1,
            "edge_threshold > 0": self.edge_threshold > 0,
            "0 < frame_edge_share <= 1": 0 < self.frame_edge_share <= 1,
            "0 <= edge_reach_px <= 8": 0 <= self.edge_reach_px <= 8,
            "0 < register_above <= 1": 0 < self.register_above <= 1,
            "shift_tolerance_px > 0": self.shift_tolerance_px > 0,
            "0 <= min_edge_frac < 1": 0 <= self.min_edge_frac < 1,
            "0 < moved_frac < 1": 0 < self.moved_frac < 1,
            "durations >= 0": min(times) >= 0,
            "relearn_s > 0": self.relearn_s > 0,
            "0 <= uniform_spread < 128": 0 <= self.uniform_spread < 128,
            "0 <= blur_ratio < 1": 0 <= self.blur_ratio < 1,
            "exclude_margin >= 0": self.exclude_margin >= 0,
            "0 <= min_visible_frac <= 1": 0 <= self.min_visible_frac <= 1,
        }
        failed = [name for name, ok in checks.items() if not ok]
        if failed:
            raise ValueError(f"view config: expected {', '.join(failed)}, got {self}")


def view_config(settings: ViewSettings) -> ViewConfig:
    """The monitor's thresholds from the deployer's settings (the rest keep their defaults)."""
    return ViewConfig(
        relearn_s=settings.relearn_s,
        moved_after_s=settings.moved_after_s,
        tamper_after_s=settings.tamper_after_s,
        moved_frac=settings.moved_frac,
        uniform_spread=settings.uniform_spread,
        blur_ratio=settings.blur_ratio,
    )


@dataclass(frozen=True)
class ViewChange:
    """A view condition that started or ended with a frame; `at` is that frame's time."""

    camera_id: str
    at: float
    condition: Condition
    phase: Phase
    changed_frac: float
    brightness_spread: float
    sharpness_ratio: float
    # How long the scene models relearn quietly (a moved start; 0 otherwise).
    relearn_s: float = 0.0


@dataclass(frozen=True)
class ViewStatus:
    """How the scene models should take one frame (see the module's description)."""

    trusted: bool
    relearn: bool
    quiet: bool
    changes: tuple[ViewChange, ...] = ()
    changed_frac: float = 0.0
    brightness_spread: float = 0.0
    sharpness_ratio: float = 1.0


@dataclass(frozen=True)
class _Measures:
    changed_frac: float
    spread: float
    detail: float
    visible_frac: float


def _alpha(dt: float, tau: float, cap: float) -> float:
    """Running-average weight for a step of dt seconds with time constant tau."""
    return min(cap, 1.0 - math.exp(-max(dt, 0.0) / tau))


def _gradient(grey: Float32) -> Float32:
    gx = cv2.Sobel(grey, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(grey, cv2.CV_32F, 0, 1, ksize=3)
    # Sobel's 3x3 kernel weighs a one-level step by 4; divided back, the magnitude is in grey
    # levels per work pixel.
    return np.asarray(cv2.magnitude(gx, gy), dtype=np.float32) / np.float32(4.0)


def _png(image: npt.NDArray[np.uint8]) -> bytes:
    ok, data = cv2.imencode(".png", image)
    if not ok:  # pragma: no cover - OpenCV always encodes a 2-D uint8 array
        raise ValueError("view state: cannot encode the reference as PNG")
    return bytes(data.tobytes())


def _unpng(value: Any, shape: tuple[int, int], what: str) -> npt.NDArray[np.uint8]:
    data = base64.b64decode(value) if isinstance(value, str) else bytes(value)
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_GRAYSCALE)
    if image is None or image.shape != shape:
        got = None if image is None else image.shape
        raise ValueError(f"view state: {what}: expected a {shape} PNG image, got {got}")
    return np.asarray(image, dtype=np.uint8)


class ViewMonitor:
    """The view monitor of one camera. Feed every frame to `update`, in time order."""

    def __init__(self, camera_id: str, config: ViewConfig | None = None) -> None:
        self.camera_id = camera_id
        self.config = config or ViewConfig()
        self._frame_size: tuple[int, int] | None = None
        self._reference: Float32 | None = None
        self._known: BoolArray | None = None
        self._edges: BoolArray | None = None
        self._detail: float | None = None
        self._started = 0.0
        self._last_t: float | None = None
        self._moved_since: float | None = None
        self._covered_since: float | None = None
        self._blurred_since: float | None = None
        self._back_since: float | None = None
        self._tamper: Literal["covered", "blurred"] | None = None
        self._relearn_until: float | None = None
        self._window: Float32 | None = None

    # ------------------------------------------------------------------ public

    def reset(self) -> None:
        """Forget everything, the reference included (e.g. the resolution changed)."""
        self._forget()

    def update(
        self, image: npt.NDArray[np.uint8], t: float, exclude: npt.ArrayLike | None = None
    ) -> ViewStatus:
        """One frame (uint8 BGR or grey) at capture time `t` in seconds; `exclude`: (N, 4)
        boxes (x1, y1, x2, y2) in frame pixels of people and vehicles seen in it."""
        raw = self._prepare(image)
        grey = self._smooth(raw)
        size = (int(image.shape[1]), int(image.shape[0]))
        if self._frame_size is not None and size != self._frame_size:
            log.warning(
                "camera %s: frame size changed from %s to %s; relearning the view",
                self.camera_id, self._frame_size, size,
            )  # fmt: skip
            self._forget()
        if self._last_t is not None and t < self._last_t:
            log.warning(
                "camera %s: time went back from %.3f to %.3f; relearning the view",
                self.camera_id, self._last_t, t,
            )  # fmt: skip
            self._forget()
        visible = self._visible(exclude, size, grey.shape)
        if self._reference is None or self._known is None:
            self._start(grey, t, size, visible)
            spread = float(raw[visible].std()) if visible.any() else 0.0
            return ViewStatus(trusted=False, relearn=False, quiet=True, brightness_spread=spread)
        dt = t - (self._last_t if self._last_t is not None else t)
        self._last_t = t
        m = self._measure(raw, grey, visible)
        ratio = self._ratio(m)
        changes: list[ViewChange] = []

        def change(condition: Condition, phase: Phase, relearn_s: float = 0.0) -> None:
            changes.append(
                ViewChange(
                    self.camera_id, t, condition, phase, m.changed_frac, m.spread, ratio, relearn_s
                )
            )

        cfg = self.config
        relearn = False
        trusted = False
        quiet = False
        judged = m.visible_frac >= cfg.min_visible_frac
        if not judged:
            # Too little to see: hold; a condition must last on frames that were judged.
            self._moved_since = self._covered_since = self._blurred_since = None
            self._back_since = None
            quiet = self._warming(t) or self._relearn_until is not None
        elif self._warming(t):
            quiet = True
        elif self._tamper is not None:
            if self._covered(m) or self._blurred(m, ratio):
                self._back_since = None
            else:
                self._back_since = t if self._back_since is None else self._back_since
                if t - self._back_since >= cfg.back_after_s:
                    change(self._tamper, "end")
                    self._tamper = None
                    self._back_since = None
                    if m.changed_frac > cfg.moved_frac:
                        change("moved", "start", cfg.relearn_s)
                        relearn = quiet = True
                        self._start_relearn(grey, t, visible)
                    else:
                        trusted = True
        else:
            tamper = self._pending_tamper(m, ratio, t)
            if tamper is not None:
                if self._relearn_until is not None:
                    # Covered while relearning: the move is over, the tamper takes over.
                    change("moved", "end")
                    self._relearn_until = None
                change(tamper, "start")
                self._tamper = tamper
                self._moved_since = self._covered_since = self._blurred_since = None
            elif self._relearn_until is not None:
                if t >= self._relearn_until:
                    change("moved", "end")
                    self._relearn_until = None
                    trusted = self._clear(m, ratio)
                else:
                    # A covered or blurred frame (not yet an alarm) is not learnt either.
                    quiet = self._clear(m, ratio)
            else:
                moving = m.changed_frac > cfg.moved_frac and self._clear(m, ratio)
                if not moving:
                    self._moved_since = None
                else:
                    self._moved_since = t if self._moved_since is None else self._moved_since
                    if t - self._moved_since >= cfg.moved_after_s:
                        change("moved", "start", cfg.relearn_s)
                        relearn = quiet = True
                        self._moved_since = None
                        self._start_relearn(grey, t, visible)
                trusted = not relearn and self._clear(m, ratio) and not moving

        for c in changes:
            log.info(
                "camera %s: view %s %s at %.3f (changed %.2f, spread %.1f, sharpness %.2f)",
                self.camera_id, c.condition, c.phase, c.at, c.changed_frac,
                c.brightness_spread, c.sharpness_ratio,
            )  # fmt: skip
        if judged and not relearn:
            if quiet:
                self._learn(grey, m, visible, dt, cfg.relearn_tau_s, cfg.relearn_tau_s)
            elif trusted:
                self._learn(grey, m, visible, dt, cfg.reference_tau_s, cfg.detail_tau_s)
        return ViewStatus(
            trusted=trusted,
            relearn=relearn,
            quiet=quiet,
            changes=tuple(changes),
            changed_frac=m.changed_frac,
            brightness_spread=m.spread,
            sharpness_ratio=ratio,
        )

    def to_state(self) -> dict[str, Any]:
        """What `from_state` needs to carry on after a restart: plain values, the reference
        and its learnt-pixel mask as PNG bytes (a few kB)."""
        state: dict[str, Any] = {"version": _STATE_VERSION, "camera_id": self.camera_id}
        if self._reference is None or self._known is None or self._frame_size is None:
            return state
        state.update(
            frame_size=list(self._frame_size),
            reference_png=_png(np.clip(np.rint(self._reference), 0, 255).astype(np.uint8)),
            known_png=_png(self._known.astype(np.uint8) * np.uint8(255)),
            detail=self._detail,
            started=self._started,
            last_t=self._last_t,
            tamper=self._tamper,
            relearn_until=self._relearn_until,
        )
        return state

    @classmethod
    def from_state(cls, state: dict[str, Any], config: ViewConfig | None = None) -> ViewMonitor:
        """A monitor that resumes where `to_state` left off. PNG fields may also come as
        base64 text (a JSON carrier). A pending condition starts over; an alarm that was on
        stays on, so its end is still reported."""
        try:
            if state.get("version") != _STATE_VERSION:
                raise ValueError(f"expected version {_STATE_VERSION}, got {state.get('version')!r}")
            monitor = cls(str(state["camera_id"]), config)
            if "reference_png" not in state:
                return monitor
            fw, fh = (int(v) for v in state["frame_size"])
            shape = monitor._work_shape((fw, fh))
            reference = _unpng(state["reference_png"], shape, "reference_png")
            known = _unpng(state["known_png"], shape, "known_png") > 0
            tamper = state.get("tamper")
            if tamper not in (None, "covered", "blurred"):
                raise ValueError(f"tamper: expected covered, blurred or null, got {tamper!r}")
            relearn_until = state.get("relearn_until")
        except (KeyError, TypeError) as exc:
            raise ValueError(f"view state: missing or malformed field: {exc}") from exc
        except ValueError as exc:
            raise ValueError(f"view state: {exc}") from exc
        monitor._frame_size = (fw, fh)
        monitor._reference = reference.astype(np.float32)
        monitor._known = known
        monitor._edges = monitor._edge_mask(monitor._reference)
        monitor._detail = None if state.get("detail") is None else float(state["detail"])
        monitor._started = float(state["started"])
        monitor._last_t = None if state.get("last_t") is None else float(state["last_t"])
        monitor._tamper = tamper
        monitor._relearn_until = None if relearn_until is None else float(relearn_until)
        return monitor

    # ------------------------------------------------------------------ steps

    def _forget(self) -> None:
        self._frame_size = None
        self._reference = None
        self._known = None
        self._edges = None
        self._detail = None
        self._started = 0.0
        self._last_t = None
        self._moved_since = None
        self._covered_since = None
        self._blurred_since = None
        self._back_since = None
        self._tamper = None
        self._relearn_until = None
        self._window = None

    def _work_shape(self, size: tuple[int, int]) -> tuple[int, int]:
        w, h = size
        ww = min(self.config.work_width, w)
        return max(1, round(h * ww / w)), ww

    def _prepare(self, image: npt.NDArray[np.uint8]) -> Float32:
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
            got = type(image).__name__ if not isinstance(image, np.ndarray) else image.dtype
            raise ValueError(f"camera {self.camera_id}: expected a uint8 image, got {got}")
        if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (1, 3))):
            raise ValueError(
                f"camera {self.camera_id}: expected an (H, W) or (H, W, 3) image, "
                f"got shape {image.shape}"
            )
        if image.shape[0] < 8 or image.shape[1] < 8:
            raise ValueError(
                f"camera {self.camera_id}: expected an image of at least 8x8 pixels, "
                f"got shape {image.shape}"
            )
        if image.ndim == 2:
            grey = image
        elif image.shape[2] == 1:
            grey = image[..., 0]
        else:
            grey = np.asarray(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), dtype=np.uint8)
        h, w = self._work_shape((int(image.shape[1]), int(image.shape[0])))
        small = cv2.resize(np.ascontiguousarray(grey), (w, h), interpolation=cv2.INTER_AREA)
        return np.asarray(small, dtype=np.float32)

    def _smooth(self, raw: Float32) -> Float32:
        if self.config.blur_sigma <= 0:
            return raw.copy()
        return np.asarray(cv2.GaussianBlur(raw, (0, 0), self.config.blur_sigma), dtype=np.float32)

    def _visible(
        self, exclude: npt.ArrayLike | None, size: tuple[int, int], shape: tuple[int, ...]
    ) -> BoolArray:
        visible = np.ones(shape[:2], dtype=np.bool_)
        if exclude is None:
            return visible
        try:
            boxes = np.asarray(exclude, dtype=np.float64).reshape(-1, 4)
        except (TypeError, ValueError):
            log.warning(
                "camera %s: excluded boxes ignored: expected (N, 4) numbers, got %r",
                self.camera_id, exclude,
            )  # fmt: skip
            return visible
        sx, sy = shape[1] / size[0], shape[0] / size[1]
        m = self.config.exclude_margin
        for x1, y1, x2, y2 in boxes:
            if not np.isfinite([x1, y1, x2, y2]).all() or x2 <= x1 or y2 <= y1:
                continue
            mx, my = m * (x2 - x1), m * (y2 - y1)
            c1 = max(0, math.floor((x1 - mx) * sx))
            r1 = max(0, math.floor((y1 - my) * sy))
            c2 = min(shape[1], math.ceil((x2 + mx) * sx))
            r2 = min(shape[0], math.ceil((y2 + my) * sy))
            if c2 > c1 and r2 > r1:
                visible[r1:r2, c1:c2] = False
        return visible

    def _edge_mask(self, reference: Float32) -> BoolArray:
        return np.asarray(_gradient(reference) > self.config.edge_threshold, dtype=np.bool_)

    def _start(self, grey: Float32, t: float, size: tuple[int, int], visible: BoolArray) -> None:
        self._frame_size = size
        self._reference = grey.copy()
        self._known = visible.copy()
        self._edges = self._edge_mask(grey)
        self._started = t
        self._last_t = t

    def _start_relearn(self, grey: Float32, t: float, visible: BoolArray) -> None:
        """The view moved: the reference becomes this frame and is relearnt quickly."""
        self._reference = grey.copy()
        self._known = visible.copy()
        self._edges = self._edge_mask(grey)
        self._detail = None
        self._relearn_until = t + self.config.relearn_s

    def _warming(self, t: float) -> bool:
        return t - self._started < self.config.warmup_s

    def _measure(self, raw: Float32, grey: Float32, visible: BoolArray) -> _Measures:
        assert self._reference is not None
        assert self._known is not None
        assert self._edges is not None
        cfg = self.config
        n_visible = int(np.count_nonzero(visible))
        visible_frac = n_visible / visible.size
        if n_visible < 16:
            return _Measures(0.0, 0.0, 0.0, visible_frac)
        spread = float(raw[visible].std())
        laplacian = np.abs(cv2.Laplacian(raw, cv2.CV_32F))
        # Per level of brightness rather than of spread: a red car filling half the frame raises
        # the spread far more than the detail, the light scales both alike.
        detail = float(laplacian[visible].mean()) / max(float(raw[visible].mean()), _MIN_LEVEL)
        judged = visible & self._known
        ref_edges = self._edges & judged
        n_edges = int(np.count_nonzero(ref_edges))
        if n_edges < max(1.0, cfg.min_edge_frac * int(np.count_nonzero(judged))):
            return _Measures(0.0, spread, detail, visible_frac)
        ref_level = float(np.median(self._reference[judged]))
        level = float(np.median(grey[judged]))
        gain = max(level, _MIN_LEVEL) / max(ref_level, _MIN_LEVEL)
        frame_edges = (_gradient(grey) > cfg.edge_threshold * cfg.frame_edge_share * gain).astype(
            np.uint8
        )
        if cfg.edge_reach_px > 0:
            k = 2 * cfg.edge_reach_px + 1
            frame_edges = np.asarray(
                cv2.dilate(frame_edges, np.ones((k, k), dtype=np.uint8)), dtype=np.uint8
            )
        missing = int(np.count_nonzero(ref_edges & (frame_edges == 0))) / n_edges
        changed = missing
        if missing >= cfg.register_above:
            aligned = self._aligned_change(grey, judged, ref_edges, frame_edges, missing)
            if aligned is not None:
                changed = max(missing, aligned)
        return _Measures(changed, spread, detail, visible_frac)

    def _aligned_change(
        self,
        grey: Float32,
        judged: BoolArray,
        ref_edges: BoolArray,
        frame_edges: npt.NDArray[np.uint8],
        missing: float,
    ) -> float | None:
        """Share of the outline that is missing or moved once the frame is aligned to the
        reference, or None when no alignment explains at least half of the missing share."""
        assert self._reference is not None
        h, w = grey.shape
        # Pixels nobody may judge (people, never seen) take the reference's values, so they
        # pull the alignment towards "nothing moved".
        frame = np.where(judged, grey, self._reference).astype(np.float32)
        mask = judged.astype(np.uint8)
        rows, cols = np.nonzero(ref_edges)
        points = np.stack([cols, rows, np.ones_like(cols)]).astype(np.float32)
        # ECC from "no move" finds small turns and rolls; from the phase correlation's
        # translation it finds pans too long for ECC to reach on its own.
        best: tuple[float, float] | None = None
        for start in ("identity", "translation"):
            if start == "identity":
                warp = np.eye(2, 3, dtype=np.float32)
            else:
                if self._window is None or self._window.shape != (h, w):
                    self._window = np.asarray(
                        cv2.createHanningWindow((w, h), cv2.CV_32F), dtype=np.float32
                    )
                # Copies: OpenCV may apply the window and normalise its inputs in place.
                (dx, dy), _ = cv2.phaseCorrelate(self._reference.copy(), frame.copy(), self._window)
                warp = np.array([[1.0, 0.0, dx], [0.0, 1.0, dy]], dtype=np.float32)
            found = self._fit(frame, mask, warp, points, frame_edges)
            if found is not None and (best is None or found[0] < best[0]):
                best = found
            if best is not None and best[0] <= 0.5 * missing:
                return best[1]
        return None

    def _fit(
        self,
        frame: Float32,
        mask: npt.NDArray[np.uint8],
        warp: Float32,
        points: Float32,
        frame_edges: npt.NDArray[np.uint8],
    ) -> tuple[float, float] | None:
        """Refine `warp` (ECC, rotation and translation) and judge it: (share of the outline
        still missing after it, share missing or moved by more than the tolerance)."""
        assert self._reference is not None
        h, w = frame.shape
        criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 50, 1e-4)
        # No convergence (a featureless or changed view): the start is judged as it is.
        with contextlib.suppress(cv2.error):
            _, refined = cv2.findTransformECC(
                self._reference.copy(), frame.copy(), warp.copy(), cv2.MOTION_EUCLIDEAN,
                criteria, mask, 5,
            )  # fmt: skip
            warp = np.asarray(refined, dtype=np.float32)
        if not np.isfinite(warp).all():
            return None
        cols, rows = points[0], points[1]
        moved_to = warp @ points
        shift = np.hypot(moved_to[0] - cols, moved_to[1] - rows)
        tx, ty = np.rint(moved_to[0]).astype(np.int64), np.rint(moved_to[1]).astype(np.int64)
        inside = (tx >= 0) & (tx < w) & (ty >= 0) & (ty < h)
        found = np.zeros(cols.shape, dtype=np.bool_)
        found[inside] = frame_edges[ty[inside], tx[inside]] > 0
        still_missing = float(np.count_nonzero(inside & ~found)) / max(1, int(inside.sum()))
        changed = ~inside | ~found | (shift > self.config.shift_tolerance_px)
        return still_missing, float(np.count_nonzero(changed)) / max(1, cols.size)

    def _ratio(self, m: _Measures) -> float:
        if self._detail is None or self._detail <= 0:
            return 1.0
        return m.detail / self._detail

    def _covered(self, m: _Measures) -> bool:
        return m.spread < self.config.uniform_spread

    def _blurred(self, m: _Measures, ratio: float) -> bool:
        return not self._covered(m) and ratio < self.config.blur_ratio

    def _clear(self, m: _Measures, ratio: float) -> bool:
        return not self._covered(m) and not self._blurred(m, ratio)

    def _pending_tamper(
        self, m: _Measures, ratio: float, t: float
    ) -> Literal["covered", "blurred"] | None:
        cfg = self.config
        covered, blurred = self._covered(m), self._blurred(m, ratio)
        self._covered_since = (self._covered_since or t) if covered else None
        self._blurred_since = (self._blurred_since or t) if blurred else None
        if self._covered_since is not None and t - self._covered_since >= cfg.tamper_after_s:
            return "covered"
        if self._blurred_since is not None and t - self._blurred_since >= cfg.tamper_after_s:
            return "blurred"
        return None

    def _learn(
        self,
        grey: Float32,
        m: _Measures,
        visible: BoolArray,
        dt: float,
        tau: float,
        detail_tau: float,
    ) -> None:
        assert self._reference is not None
        assert self._known is not None
        cfg = self.config
        a = np.float32(_alpha(dt, tau, cfg.max_learn_alpha))
        fresh = visible & ~self._known
        # A pixel seen for the first time (someone stood on it since the start) is taken as
        # it is; the others follow the running average.
        self._reference[fresh] = grey[fresh]
        self._reference[visible] += a * (grey[visible] - self._reference[visible])
        self._known |= visible
        self._edges = self._edge_mask(self._reference)
        if m.spread >= cfg.uniform_spread:
            if self._detail is None:
                self._detail = m.detail
            else:
                self._detail += _alpha(dt, detail_tau, cfg.max_learn_alpha) * (
                    m.detail - self._detail
                )
