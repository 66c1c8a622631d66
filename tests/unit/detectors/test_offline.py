"""`pantau detect-file`'s reader: a file whose container reports odd positions still gives
frames in time order (the detector behind it requires capture order)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from detectors import offline


class _Capture:
    """A video whose container reports these positions (ms), one per frame."""

    def __init__(self, positions_ms: list[float], fps: float) -> None:
        self.positions = positions_ms
        self.fps = fps
        self.index = -1

    def isOpened(self) -> bool:
        return True

    def grab(self) -> bool:
        self.index += 1
        return self.index < len(self.positions)

    def retrieve(self) -> tuple[bool, Any]:
        return True, np.full((36, 64, 3), self.index, dtype=np.uint8)

    def get(self, prop: int) -> float:
        if prop == cv2.CAP_PROP_POS_MSEC:
            return self.positions[self.index]
        if prop == cv2.CAP_PROP_FPS:
            return self.fps
        if prop == cv2.CAP_PROP_FRAME_COUNT:
            return float(len(self.positions))
        return 0.0

    def release(self) -> None:
        pass


@pytest.mark.parametrize(
    ("positions_ms", "expected_s"),
    [
        ([38_600.0, 38_700.0, 38_800.0, 0.0], [38.6, 38.7, 38.8, 38.9]),
        ([0.0, 0.0, 0.0], [0.0, 0.1, 0.2]),
        ([1000.0, 1100.0, 900.0, 1300.0], [1.0, 1.1, 1.2, 1.3]),
    ],
)
def test_frames_come_in_time_order_whatever_the_container_says(
    monkeypatch: pytest.MonkeyPatch, positions_ms: list[float], expected_s: list[float]
) -> None:
    monkeypatch.setattr(offline.cv2, "VideoCapture", lambda _p: _Capture(positions_ms, 10.0))
    got = [t for t, _ in offline.sampled_frames(Path("clip.avi"), fps=100.0)]
    assert got == pytest.approx(expected_s)
