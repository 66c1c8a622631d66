"""The detect stream's picture: resized to the camera's detect width and JPEG-encoded.

One function for the camera ingest, which publishes it, and the offline detector run, which
must see the same pixels the Kafka path sees."""

from __future__ import annotations

import cv2
import numpy as np


def encode_jpeg(image: np.ndarray, max_width: int, quality: int) -> tuple[bytes, int, int]:
    """Resize down to `max_width` (aspect kept) and JPEG-encode; returns (bytes, width, height)."""
    height, width = image.shape[:2]
    if width > max_width:
        new_height = max(1, round(height * max_width / width))
        image = cv2.resize(image, (max_width, new_height), interpolation=cv2.INTER_AREA)
        height, width = new_height, max_width
    ok, buffer = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError(f"JPEG encoding of a {width}x{height} frame failed")
    return buffer.tobytes(), width, height
