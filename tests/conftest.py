"""Fixtures shared by every test: where the repository and the shared data are."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("PANTAU_SHARED_DATA") or REPO.parent / "shared" / "data")
SAMPLE_CLIP = SHARED_DATA / "video" / "intel-sample-videos" / "one-by-one-person-detection.mp4"
PT_MODEL = SHARED_DATA / "models" / "yolo11n-coco-dequantized.pt"
OPENVINO_MODEL = SHARED_DATA / "models" / "yolo11n_int8_openvino_model"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SAMPLE_CLIP.exists():
        pytest.fail(
            f"shared data not found at {SHARED_DATA} (set PANTAU_SHARED_DATA)", pytrace=False
        )
    return SHARED_DATA
