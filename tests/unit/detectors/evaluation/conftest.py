"""The small synthetic set, rendered once per test module that asks for it."""

from __future__ import annotations

from pathlib import Path

import pytest

from detectors.evaluation import make_synthetic_set
from tests.unit.detectors.evaluation.factories import DWELL_S, SMALL_SET


@pytest.fixture(scope="module")
def small_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_synthetic_set(
        tmp_path_factory.mktemp("synthetic"), SMALL_SET, dwell_s=DWELL_S, progress=False
    )
