"""The detect stream's picture.

`encode_jpeg` resizes to the camera's detect width and encodes: one function for the camera
ingest, which publishes it, and the offline detector run, which must see the same pixels the
Kafka path sees. `jpeg_size` reads a received JPEG's size from its header, so the detector
can refuse an absurd picture before decoding it."""

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


class ImageError(ValueError):
    """The bytes are not a picture that can be used; the text says why."""


# Start-of-frame markers, the segments that carry the picture's size: baseline, extended,
# progressive and lossless, Huffman or arithmetic coded. (C4, C8 and CC share the range but
# are tables, not frames.)
_SOF_MARKERS = frozenset(
    {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
)
# Markers without a length field: TEM, the restart markers and start of image.
_STANDALONE = frozenset({0x01, 0xD8, *range(0xD0, 0xD8)})


def jpeg_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a JPEG's frame header, without decoding it.

    Only the segment headers before the image data are read, so a small file that claims a
    huge picture costs nothing; decoding it would allocate the whole picture first. Raises
    ImageError when the bytes are not a JPEG or end before the frame header.
    """
    if data[:2] != b"\xff\xd8":
        got = data[:2].hex(" ").upper() or "no bytes"
        raise ImageError(f"not a JPEG: expected the start-of-image marker FF D8, got {got}")
    pos, end = 2, len(data)
    while True:
        if pos >= end:
            raise ImageError(f"truncated JPEG: {end} bytes end before its frame header")
        if data[pos] != 0xFF:
            raise ImageError(
                f"broken JPEG: expected a segment marker at byte {pos}, got 0x{data[pos]:02X}"
            )
        # Any number of FF fill bytes may precede a marker.
        while pos < end and data[pos] == 0xFF:
            pos += 1
        if pos >= end:
            raise ImageError(f"truncated JPEG: {end} bytes end before its frame header")
        marker = data[pos]
        pos += 1
        if marker in _STANDALONE:
            continue
        if marker in (0xD9, 0xDA):
            raise ImageError("broken JPEG: its image data (or its end) comes before a frame header")
        if marker == 0x00:
            raise ImageError(f"broken JPEG: expected a segment marker at byte {pos - 2}, got FF 00")
        if pos + 2 > end:
            raise ImageError(f"truncated JPEG: {end} bytes end inside a segment header")
        length = int.from_bytes(data[pos : pos + 2], "big")
        if length < 2:
            raise ImageError(
                f"broken JPEG: segment FF {marker:02X} at byte {pos - 2} has length {length}"
            )
        if marker in _SOF_MARKERS:
            if length < 7 or pos + 7 > end:
                raise ImageError(f"truncated JPEG: {end} bytes end inside its frame header")
            height = int.from_bytes(data[pos + 3 : pos + 5], "big")
            width = int.from_bytes(data[pos + 5 : pos + 7], "big")
            if width == 0 or height == 0:
                # Height 0 defers it to a DNL marker after the data: legal, but no decoder here
                # reads it, and the size must be known before decoding.
                raise ImageError(f"JPEG frame header gives no size ({width}x{height})")
            return width, height
        pos += length
