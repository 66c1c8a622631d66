"""`pantau demo`, the README's first command, end to end on the real services."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import cv2

from tests.conftest import REPO
from tests.integration.conftest import base_environ


def figure(text: str, label: str) -> int:
    match = re.search(rf"^{re.escape(label)}\s+(\d+)", text, re.MULTILINE)
    assert match, f"no {label!r} line in:\n{text}"
    return int(match.group(1))


def test_demo_runs_the_whole_pipeline_and_summarises_it(tmp_path: Path, shared_data: Path) -> None:
    out = tmp_path / "demo"
    result = subprocess.run(
        [sys.executable, "-m", "pantau.cli", "demo", "--duration", "20", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
        env=base_environ(),
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = result.stdout
    frames = figure(summary, "frames in (published by the camera)")
    # 20 s at 5 frames/s while people move (most of the clip), a frame a second when the
    # motion gate sees a still table.
    assert frames >= 30
    assert figure(summary, "frames detected") == frames
    assert figure(summary, "sensor readings accepted") > 50
    assert figure(summary, "dead letters") >= 1
    assert re.search(r"^\s+person\s+\d+", summary, re.MULTILINE), summary
    assert re.search(r"^\s+sensor_readings\s+[1-9]\d* /", summary, re.MULTILINE), summary
    image = cv2.imread(str(out / "annotated-frame.png"))
    assert image is not None
    assert image.shape[1] == 640
