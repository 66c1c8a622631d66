"""The stand-in runner: the pure dumping pipeline on synthetic clips, with exact person
boxes in place of YOLO."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from detectors.evaluation import (
    ClipSpec,
    EvaluationError,
    evaluate,
    load_annotations,
    truth_box_runner,
    video_frames,
    write_report,
)
from tests.unit.detectors.evaluation.factories import (
    DWELL_S,
    H,
    W,
)


def test_the_pure_pipeline_finds_exactly_the_annotated_dumping(
    small_set: Path, tmp_path: Path
) -> None:
    report = evaluate(load_annotations(small_set), truth_box_runner(), progress=False)
    t = report.total
    assert (t.tp, t.fp, t.fn) == (1, 0, 0)
    assert t.precision == 1.0 and t.recall == 1.0 and t.f1 == 1.0
    # Told once the bag lay unattended for the dwell time, within a couple of seconds.
    assert t.delay_max is not None and DWELL_S <= t.delay_max <= DWELL_S + 3.0
    # The whole bag boxed, not a part of it.
    assert t.iou_mean is not None and t.iou_mean >= 0.5
    assert t.false_alarms_per_hour == 0.0 and t.negative_s > 0
    paths = write_report(report, tmp_path)
    assert "TOTAL" in paths["table"].read_text(encoding="utf-8")


def test_the_stand_in_runner_needs_the_ground_truth_beside_the_video(tmp_path: Path) -> None:
    video = tmp_path / "real.mp4"
    video.write_bytes(b"")
    with pytest.raises(
        EvaluationError, match=r"clip 'real': expected the synthetic ground truth at .*real\.yaml"
    ):
        truth_box_runner()(ClipSpec("real", video))


def test_video_frames_are_sampled_by_time(small_set: Path) -> None:
    video = small_set.parent / "walk.mp4"
    every = list(video_frames(video))
    half = list(video_frames(video, fps=2.5))
    assert [t for _, t, _ in every[:4]] == pytest.approx([0.0, 0.2, 0.4, 0.6])
    assert [i for i, _, _ in half[:4]] == [0, 2, 4, 6]
    assert every[0][2].shape == (H, W, 3) and every[0][2].dtype == np.uint8
