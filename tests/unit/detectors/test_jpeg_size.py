"""The JPEG header reader the detector checks every frame with before decoding it
(`pantau.imaging.jpeg_size`): real JPEGs from OpenCV, cut ones, and bytes that are no JPEG."""

from __future__ import annotations

import struct

import cv2
import numpy as np
import pytest

from pantau.imaging import ImageError, jpeg_size


def encoded(width: int, height: int, *params: int) -> bytes:
    rng = np.random.default_rng(width * 7 + height)
    image = rng.integers(0, 255, size=(height, width, 3), dtype=np.uint8)
    ok, buffer = cv2.imencode(".jpg", image, list(params))
    assert ok
    return buffer.tobytes()


@pytest.mark.parametrize(
    ("width", "height", "params"),
    [
        (640, 360, ()),
        (1280, 720, ()),
        (1920, 1080, ()),
        (4096, 2160, ()),
        (1, 1, ()),
        (33, 17, ()),
        (360, 640, ()),
        (800, 600, (cv2.IMWRITE_JPEG_PROGRESSIVE, 1)),
        (640, 480, (cv2.IMWRITE_JPEG_QUALITY, 30)),
    ],
)
def test_reads_the_size_opencv_wrote(width: int, height: int, params: tuple[int, ...]) -> None:
    assert jpeg_size(encoded(width, height, *params)) == (width, height)


def test_skips_other_segments_and_fill_bytes_before_the_frame_header() -> None:
    data = encoded(320, 240)
    comment = b"\xff\xfe" + struct.pack(">H", 2 + 11) + b"camera 7 \xff\xd8"
    padded = data[:2] + comment + b"\xff\xff\xff" + data[2:]
    assert jpeg_size(padded) == (320, 240)


def test_a_small_file_claiming_a_huge_picture_reads_as_what_it_claims() -> None:
    data = encoded(64, 36)
    sof = data.index(b"\xff\xc0")
    claim = data[: sof + 5] + struct.pack(">HH", 8000, 8000) + data[sof + 9 :]
    assert len(claim) < 5_000
    assert jpeg_size(claim) == (8000, 8000)


@pytest.mark.parametrize("keep", [0, 1, 2, 3, 4, 20, 100, 150])
def test_a_jpeg_cut_before_its_frame_header_is_refused(keep: int) -> None:
    data = encoded(640, 360)
    assert keep < data.index(b"\xff\xc0") + 9
    with pytest.raises(ImageError, match=r"not a JPEG|truncated JPEG"):
        jpeg_size(data[:keep])


def test_a_jpeg_cut_after_its_frame_header_still_says_its_size() -> None:
    # What is missing is image data, which the decoder judges; the size is known.
    data = encoded(640, 360)
    assert jpeg_size(data[: data.index(b"\xff\xc0") + 9]) == (640, 360)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "not a JPEG: expected the start-of-image marker FF D8, got no bytes"),
        (b"\x89PNG\r\n\x1a\n" + bytes(32), "not a JPEG: expected the start-of-image marker FF D8, got 89 50"),
        (b"GIF89a", "not a JPEG: expected the start-of-image marker FF D8, got 47 49"),
        (b'{"kind":"frame"}', "not a JPEG"),
        (np.random.default_rng(1).bytes(4096), "not a JPEG"),
        (b"\xff\xd8\x00\x10", "broken JPEG: expected a segment marker at byte 2, got 0x00"),
        (b"\xff\xd8\xff\xda\x00\x08", "its image data (or its end) comes before a frame header"),
        (b"\xff\xd8\xff\xd9", "its image data (or its end) comes before a frame header"),
        (b"\xff\xd8\xff\xe0\x00\x01", "has length 1"),
        (b"\xff\xd8\xff\xc0\x00\x11\x08\x00\x00\x02\x80\x03", "gives no size (640x0)"),
    ],
    ids=[
        "empty", "png", "gif", "json", "random", "no marker", "data first", "end first",
        "short segment", "height zero",
    ],
)  # fmt: skip
def test_bytes_that_are_no_usable_jpeg_are_refused_with_the_reason(
    data: bytes, reason: str
) -> None:
    with pytest.raises(ImageError) as raised:
        jpeg_size(data)
    assert reason in str(raised.value)
    # A frame's reason: an ImageError is a ValueError, never anything a caller did not expect.
    assert isinstance(raised.value, ValueError)
