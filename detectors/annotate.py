"""Boxes drawn on a frame, for snapshots people look at."""

from __future__ import annotations

import colorsys
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from pantau.messages import Box


def _colour(class_id: int | None) -> tuple[int, int, int]:
    if class_id is None:  # a class-agnostic object: always the same warning red
        return (40, 40, 230)
    hue = (class_id * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 1.0)
    return int(b * 255), int(g * 255), int(r * 255)


def draw_boxes(image: np.ndarray, boxes: Sequence[Box], caption: str | None = None) -> np.ndarray:
    """A copy of `image` with each box, its label and confidence."""
    canvas = image.copy()
    thickness = max(1, round(min(canvas.shape[:2]) / 300))
    scale = max(0.4, min(canvas.shape[:2]) / 900)
    for box in boxes:
        colour = _colour(box.class_id)
        p1 = (round(box.x1), round(box.y1))
        p2 = (round(box.x2), round(box.y2))
        cv2.rectangle(canvas, p1, p2, colour, thickness, cv2.LINE_AA)
        text = f"{box.label} {box.confidence:.2f}"
        if box.track_id is not None:
            text = f"#{box.track_id} {text}"
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        top = max(0, p1[1] - th - base - 2)
        cv2.rectangle(canvas, (p1[0], top), (p1[0] + tw + 4, top + th + base + 2), colour, -1)
        cv2.putText(
            canvas,
            text,
            (p1[0] + 2, top + th + 1),
            cv2.FONT_HERSHEY_SIMPLEX,
            scale,
            (0, 0, 0),
            1,
            cv2.LINE_AA,
        )
    if caption:
        cv2.putText(
            canvas,
            caption,
            (8, canvas.shape[0] - 10),
            cv2.FONT_HERSHEY_SIMPLEX,
            scale,
            (255, 255, 255),
            1,
            cv2.LINE_AA,
        )
    return canvas


def write_png(path: Path, image: np.ndarray) -> None:
    """Write atomically, so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, buffer = cv2.imencode(".png", image)
    if not ok:
        raise OSError(f"PNG encoding failed for {path}")
    partial = path.with_suffix(".png.part")
    partial.write_bytes(buffer.tobytes())
    partial.replace(path)
