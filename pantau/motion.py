"""Motion gate next to the camera: which sampled frames are worth a detector's time.

A detector costs tens of milliseconds a frame; most CCTV frames show an unchanged street. The
gate compares each sampled frame, shrunk to a small grayscale picture, with a running-average
background and publishes it only when enough of the picture changed (motion), for `hold_s`
after the last motion (hold), or when nothing was published for `static_interval_s` (a
periodic static check, so that an object that arrived and then stopped is still seen).

Every timer runs on the frames' capture times in seconds (a file's position, or the live
stream's clock), never on frame counts or the wall clock of this process, so a file replayed
faster than real time is gated exactly like the live camera.

No I/O: frames in, decisions out. It lives in the spine because two stages run it: the camera
ingest on live frames, and `pantau detect-file` on a file's frames, so that the offline run
and the evaluation see what the detector would have been sent.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import cv2
import numpy as np
import numpy.typing as npt

from pantau.settings import MotionSettings

Reason = Literal["motion", "hold", "presence", "static_check", "skip", "disabled"]

# Presence hint: given a frame time, is a person or vehicle believed to be in view? The camera
# does not see the detector's tracks, so nothing supplies one yet; see MotionGate.
PresenceHint = Callable[[float], bool]

# The gate works on the frame halved until it is between 96 and 191 px wide (160x90 for a
# 640x360 detect stream, 96x54 for the 768x432 demo clip): enough to see a person at the far
# side of a street camera, and small enough that the whole test stays well under 0.5 ms.
MIN_WORK_WIDTH = 96
# A light blur after the area downscale: it spreads single-pixel sensor and compression noise
# below the threshold while a person-sized change survives.
_BLUR = (5, 5)
# +1 keeps the gain finite on a black frame (lens covered, night without IR).
_DARK = 1.0
# Frame times come from millisecond positions or a float clock: 0.2 * 10 may land a hair
# below 2.0, which must not postpone a static check by a whole frame.
_EPS = 1e-6

Gray = npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class GateDecision:
    publish: bool
    reason: Reason
    changed: float
    """Fraction of the small frame that differed from the background (0..1)."""


class MotionGate:
    """One camera's gate. Feed it every sampled frame in capture order with `decide`.

    "A tracked person or vehicle is present" cannot be known here: detections happen downstream
    and never come back to the camera. Two things stand in for it. The comparison is with a
    background that learns over `background_s`, so someone who walked in and stopped still
    differs from it (and counts as motion) until they fade into it, roughly 2 x background_s
    for a strong contrast; after that `hold_s` keeps publishing a while longer, and the
    periodic static check shows the detector anyone who stays. A caller that does learn about
    presence (e.g. from the detector's tracks) can pass `presence`; frames are then published,
    reason "presence", while it answers True.
    """

    def __init__(self, settings: MotionSettings, presence: PresenceHint | None = None) -> None:
        self.settings = settings
        self._presence = presence
        self._background: Gray | None = None
        self._last_t: float | None = None
        self._last_motion: float | None = None
        self._last_published: float | None = None

    def reset(self) -> None:
        """Forget the scene: the next frame is published as a static check."""
        self._background = None
        self._last_t = None
        self._last_motion = None
        self._last_published = None

    def decide(self, image: npt.NDArray[np.uint8], t: float) -> GateDecision:
        """Decide for a BGR (or grayscale) frame captured at `t` seconds."""
        if not self.settings.enabled:
            return GateDecision(publish=True, reason="disabled", changed=0.0)
        if self._last_t is not None and t < self._last_t:
            # Time went backwards: a file looped or a stream restarted its clock.
            self.reset()
        gray = small_gray(image)
        changed = self._changed_fraction(gray, t)
        self._last_t = t

        reason: Reason
        if changed >= self.settings.min_area:
            self._last_motion = t
            reason = "motion"
        elif self._last_motion is not None and t - self._last_motion <= self.settings.hold_s + _EPS:
            reason = "hold"
        elif self._presence is not None and self._presence(t):
            reason = "presence"
        elif (
            self._last_published is None
            or t - self._last_published >= self.settings.static_interval_s - _EPS
        ):
            reason = "static_check"
        else:
            return GateDecision(publish=False, reason="skip", changed=changed)
        self._last_published = t
        return GateDecision(publish=True, reason=reason, changed=changed)

    def _changed_fraction(self, gray: Gray, t: float) -> float:
        background = self._background
        if background is None or background.shape != gray.shape or self._last_t is None:
            self._background = gray
            return 0.0
        # Normalise brightness: auto-exposure, clouds and dusk scale the whole picture; that
        # is not motion. The background is scaled to the frame's mean brightness first.
        gain = (float(gray.mean()) + _DARK) / (float(background.mean()) + _DARK)
        diff = cv2.absdiff(gray, background * np.float32(gain))
        changed = int(np.count_nonzero(diff > self.settings.threshold)) / diff.size
        # Learn the scene with a time constant in seconds of capture time, not per frame, so a
        # 2 fps and a 10 fps camera forget a departed car equally fast; a long gap (reconnect)
        # replaces the background almost entirely.
        alpha = 1.0 - math.exp(-(t - self._last_t) / self.settings.background_s)
        cv2.accumulateWeighted(gray, background, alpha)
        return changed


def small_gray(image: npt.NDArray[np.uint8]) -> Gray:
    """The frame halved down to 96..191 px wide, grayscale, lightly blurred, as float32."""
    height, width = image.shape[:2]
    if width <= 0 or height <= 0:
        raise ValueError(f"expected a non-empty image, got shape {image.shape}")
    # Only exact halvings with INTER_AREA: each averages 2x2 pixels, so every source pixel
    # counts (which averages sensor noise away), and OpenCV has a fast path for them that a
    # single resize by an arbitrary factor lacks (0.1 ms instead of 0.3-0.5 ms for 640x360).
    # Grey after the first halving: a quarter of the pixels to convert.
    small: npt.NDArray[np.integer[Any] | np.floating[Any]] = image
    while small.shape[1] // 2 >= MIN_WORK_WIDTH and small.shape[0] >= 2:
        half = (small.shape[1] // 2, small.shape[0] // 2)
        small = cv2.resize(small, half, interpolation=cv2.INTER_AREA)
        if small.ndim == 3:
            small = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)
    if small.ndim == 3:
        small = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)
    blurred = cv2.GaussianBlur(small, _BLUR, 0)
    return np.asarray(blurred, dtype=np.float32)
