"""The package's names, and what rendering one scene loads (`pantau demo` renders its scene
in a process of its own)."""

from __future__ import annotations

import subprocess
import sys

import pytest

import detectors.evaluation as evaluation


def test_every_name_the_package_offers_is_there() -> None:
    missing = [name for name in evaluation.__all__ if getattr(evaluation, name, None) is None]
    assert missing == []
    with pytest.raises(AttributeError, match="has no attribute 'no_such_name'"):
        _ = evaluation.no_such_name  # type: ignore[attr-defined]


def test_rendering_a_scene_loads_neither_the_runners_nor_the_detector() -> None:
    loaded = subprocess.run(
        [
            sys.executable, "-W", "error", "-c",
            "import sys, detectors.evaluation.synthetic; "
            "print(sorted(m for m in sys.modules if m.startswith('detectors.')))",
        ],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert loaded.stdout.split("'")[1::2] == [
        "detectors.detections",
        "detectors.evaluation",
        "detectors.evaluation.synthetic",
    ]
    # As a program: run once, not imported by its package first and run again.
    shown = subprocess.run(
        [sys.executable, "-W", "error", "-m", "detectors.evaluation.synthetic", "--help"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert "render one synthetic street scene" in shown.stdout and shown.stderr == ""
