"""The synthetic evaluation set: scenes with exact ground truth, and their annotations.

`make_synthetic_set` renders the standard set (`pantau evaluate make-synthetic DIR`): each
clip's video and ground truth, and an annotation file whose events and view changes come from
that truth, ready for `pantau evaluate` (the real detector) or `pantau evaluate run-stand-in`
(the scene's exact person boxes in place of YOLO).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from tqdm import tqdm

from detectors.evaluation.annotations import DEFAULT_TOLERANCE_S, DEFAULT_VIEW_TOLERANCE_S
from detectors.evaluation.synthetic import SceneSpec, SceneTruth, SyntheticScene, write_scene

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SyntheticClip:
    name: str
    spec: SceneSpec
    note: str


def default_synthetic_clips() -> tuple[SyntheticClip, ...]:
    """The standard synthetic set: dumping by day, dusk and night, the things that look a
    little like dumping but are not, and a camera turned or covered while people walk by
    (a health alarm, not dumping). Each at most 90 s of 640x360 at 5 fps."""
    return (
        SyntheticClip("drop-leave-steady", SceneSpec("drop_and_leave", seed=0, drop_x=0.45),
                      "bag put down, owner walks off; steady light"),
        SyntheticClip("drop-leave-cloud", SceneSpec("drop_and_leave", lighting="cloud", seed=1,
                      drop_x=0.35), "bag put down, owner walks off; a cloud darkens the street"),
        SyntheticClip("drop-leave-dusk", SceneSpec("drop_and_leave", lighting="dusk", seed=2,
                      drop_x=0.55, noise_sigma=4.0),
                      "bag put down, owner walks off; dusk falls, more sensor noise"),
        SyntheticClip("pickup-12s", SceneSpec("drop_and_pickup", seed=3, away_s=12.0),
                      "bag put down, owner steps away and takes it back after 12 s"),
        SyntheticClip("pickup-20s-cloud", SceneSpec("drop_and_pickup", lighting="cloud", seed=4,
                      away_s=20.0, drop_x=0.4),
                      "bag put down, owner steps away and takes it back after 20 s; a cloud"),
        SyntheticClip("stand-still", SceneSpec("stand_still", seed=5, stand_s=60.0),
                      "a person stands still for a minute, nothing put down"),
        SyntheticClip("walk-through", SceneSpec("walk_through", seed=6),
                      "a person carries a bag, pauses 5 s, carries it on"),
        SyntheticClip("drop-clean", SceneSpec("drop_and_clean", seed=7, clean_after_s=40.0),
                      "bag left; a cleaner takes it away 40 s after the drop"),
        SyntheticClip("empty-dusk", SceneSpec("empty", lighting="dusk", seed=8, duration_s=40.0,
                      noise_sigma=4.0), "no one; dusk falls"),
        SyntheticClip("empty-cloud", SceneSpec("empty", lighting="cloud", seed=9,
                      duration_s=40.0), "no one; a cloud passes"),
        SyntheticClip("camera-moved", SceneSpec("passers_by", seed=10, duration_s=60.0,
                      move_at_s=25.0), "people walk by; the camera is turned about 4 degrees "
                      "at 25 s and stays so; nothing dumped"),
        SyntheticClip("camera-covered", SceneSpec("passers_by", seed=11, duration_s=50.0,
                      cover_at_s=20.0, cover_s=10.0), "people walk by; the lens is covered "
                      "from 20 s to 30 s, then the same view again; nothing dumped"),
        SyntheticClip("night-drop", SceneSpec("drop_and_leave", lighting="night", seed=12,
                      drop_x=0.45, noise_sigma=3.0), "at night under a street lamp: a dark "
                      "bag put down, owner walks off"),
    )  # fmt: skip


def synthetic_clip_entry(
    clip: SyntheticClip, truth: SceneTruth, video: str, dwell_s: float
) -> dict[str, Any]:
    """The annotation of one synthetic clip, from its exact ground truth."""
    spec = truth.spec
    events = []
    if truth.drop_at is not None and truth.expects_event(dwell_s):
        assert truth.object_box is not None
        events.append(
            {
                "drop_at": round(truth.drop_at - spec.start_at, 3),
                "tolerance_s": DEFAULT_TOLERANCE_S,
                "where": [round(v, 1) for v in truth.object_box],
                "note": f"{clip.note} (left unattended at "
                f"{(truth.owner_left_at or truth.drop_at) - spec.start_at:.1f} s)",
            }
        )
    views = [
        {
            "condition": v.condition,
            "at": round(v.at - spec.start_at, 3),
            "tolerance_s": DEFAULT_VIEW_TOLERANCE_S,
            "note": f"camera {v.condition}"
            + ("" if v.until is None else f" until {v.until - spec.start_at:.1f} s"),
        }
        for v in truth.view_changes
    ]
    return {
        "name": clip.name,
        "group": spec.scenario,
        "video": video,
        "camera": {"id": "synthetic", "zones": truth.camera_zones(dwell_s)},
        "dwell_s": dwell_s,
        "events": events,
        "view_changes": views,
        "note": clip.note,
    }


def make_synthetic_set(
    out_dir: Path,
    clips: Sequence[SyntheticClip] | None = None,
    *,
    dwell_s: float = 30.0,
    progress: bool = True,
) -> Path:
    """Render the clips into `out_dir` (mp4 + ground-truth YAML each) and write
    `annotations.yaml` for them; returns its path."""
    chosen = tuple(clips) if clips is not None else default_synthetic_clips()
    out_dir.mkdir(parents=True, exist_ok=True)
    entries = []
    for clip in tqdm(chosen, desc="render", unit="clip", file=sys.stderr, disable=not progress):
        scene = SyntheticScene(clip.spec)
        video, _ = write_scene(scene, out_dir, clip.name)
        entries.append(synthetic_clip_entry(clip, scene.truth, video.name, dwell_s))
    path = out_dir / "annotations.yaml"
    header = (
        "# Synthetic evaluation set written by `pantau evaluate make-synthetic`.\n"
        "# Events come from each scene's exact ground truth: one where the bag lay unattended\n"
        f"# for at least the dwell time ({dwell_s:g} s).\n"
    )
    body = yaml.safe_dump({"clips": entries}, sort_keys=False, width=100)
    path.write_text(header + body, encoding="utf-8")
    log.info("synthetic evaluation set: %d clips written to %s", len(entries), out_dir)
    return path
