"""`pantau detect-file` and `pantau evaluate` as a user runs them, with the real YOLO weights:
what looks a little like dumping but is not fires nothing, and the evaluation of a small
synthetic set (exact ground truth: dumping by day and night, a camera turned and one covered)
is perfect."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from detectors.evaluation import default_synthetic_clips, make_synthetic_set
from detectors.evaluation.synthetic import SceneSpec, SyntheticScene, write_scene
from tests.integration.conftest import Pipeline


@pytest.mark.parametrize(
    "spec",
    [SceneSpec("drop_and_pickup", seed=3, away_s=12.0), SceneSpec("stand_still", seed=5)],
    ids=["picked-up-again", "standing-still"],
)
def test_no_event_without_dumping(pipeline: Pipeline, tmp_path: Path, spec: SceneSpec) -> None:
    scene = SyntheticScene(spec)
    video, _ = write_scene(scene, tmp_path / "scene")
    camera = tmp_path / "camera.yaml"
    camera.write_text(
        yaml.safe_dump({"id": "synthetic", "fps": 5, "zones": scene.truth.camera_zones(30)})
    )
    out = pipeline.run(
        "detect-file", str(video), "--camera-config", str(camera), "--json",
        "--evidence-dir", str(tmp_path / "evidence"), timeout=600,
    )  # fmt: skip
    events = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert events == []
    assert "0 event messages" in out


def test_evaluate_scores_a_synthetic_set(pipeline: Pipeline, tmp_path: Path) -> None:
    wanted = {
        "drop-leave-cloud", "pickup-20s-cloud", "walk-through", "night-drop", "camera-moved",
        "camera-covered",
    }  # fmt: skip
    clips = [c for c in default_synthetic_clips() if c.name in wanted]
    assert {c.name for c in clips} == wanted
    annotations = make_synthetic_set(tmp_path / "set", clips, progress=False)
    out = pipeline.run("evaluate", str(annotations), "--out", str(tmp_path / "report"), timeout=900)
    report = json.loads((tmp_path / "report" / "evaluation.json").read_text())
    total = report["total"]
    # Both bags found (by day under a cloud, and at night), nothing else: not the bag taken
    # back, the bag carried through, nor the camera turned or covered while people walk by.
    assert (total["tp"], total["fp"], total["fn"]) == (2, 0, 0), out
    assert total["precision"] == 1.0 and total["recall"] == 1.0, out
    # The whole bag boxed each time, not a part of it.
    assert len(total["box_iou"]["all"]) == 2 and min(total["box_iou"]["all"]) >= 0.5, out
    # The turned and the covered camera each raise their own health alarm, and no other.
    clips_by_name = {c["clip"]: c for c in report["clips"]}
    for name, condition in (("camera-moved", "moved"), ("camera-covered", "covered")):
        views = clips_by_name[name]["view_alarms"]
        assert [v["condition"] for v in views["matched"]] == [condition], (name, views, out)
        assert views["missed"] == [] and views["unexpected"] == [], (name, views, out)
    assert total["view_alarms"]["unexpected"] == 0, out
    assert total["false_alarms_per_camera_hour"] == 0.0, out
    assert (tmp_path / "report" / "evaluation.png").stat().st_size > 10_000
    assert "TOTAL" in out and "false alarms per camera-hour: 0.0" in out
