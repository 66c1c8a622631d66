"""The synthetic evaluation set, annotated from its exact ground truth."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from detectors.evaluation import (
    SyntheticClip,
    TruthView,
    default_synthetic_clips,
    load_annotations,
    make_synthetic_set,
)
from detectors.evaluation.synthetic import SceneSpec
from tests.unit.detectors.evaluation.factories import (
    DWELL_S,
    H,
    W,
)


def test_the_synthetic_set_is_annotated_from_its_ground_truth(small_set: Path) -> None:
    annotations = load_annotations(small_set)
    clips = {c.name: c for c in annotations.clips}
    assert set(clips) == {"leave", "pickup", "walk"}
    for clip in clips.values():
        assert clip.video.is_file() and clip.video.with_suffix(".yaml").is_file()
        assert clip.dwell_s == DWELL_S
    (event,) = clips["leave"].events
    truth_file = yaml.safe_load(
        clips["leave"].video.with_suffix(".yaml").read_text(encoding="utf-8")
    )
    assert event.drop_at == pytest.approx(truth_file["drop_at"], abs=1e-3)
    assert event.where == pytest.approx(truth_file["object_box"], abs=0.1)
    assert clips["pickup"].events == () and clips["walk"].events == ()
    assert clips["leave"].set_name == "drop_and_leave"
    assert {z.id for z in clips["leave"].zones} == {"pavement", "pole", "bin"}


def test_the_standard_synthetic_set_has_the_camera_and_night_scenes() -> None:
    clips = {c.name: c for c in default_synthetic_clips()}
    assert {"camera-moved", "camera-covered", "night-drop"} <= set(clips)
    for clip in clips.values():
        spec = clip.spec
        assert (spec.width, spec.height, spec.fps) == (640, 360, 5.0)
    moved, covered, night = (
        clips[n].spec for n in ("camera-moved", "camera-covered", "night-drop")
    )
    assert moved.move_at_s is not None and covered.cover_at_s is not None
    assert night.lighting == "night" and night.scenario == "drop_and_leave"


def test_synthetic_annotations_expect_the_view_changes(tmp_path: Path) -> None:
    covered = SyntheticClip(
        "covered",
        SceneSpec("passers_by", width=W, height=H, duration_s=12.0, cover_at_s=4.0, cover_s=5.0),
        "lens covered",
    )
    annotations = load_annotations(make_synthetic_set(tmp_path, [covered], progress=False))
    (clip,) = annotations.clips
    assert clip.events == ()
    assert clip.view_changes == (TruthView("covered", 4.0, 10.0, "camera covered until 9.0 s"),)
