"""Small builders shared by the evaluation harness's tests: annotation entries, detected
and annotated events, dumping records, a fake run, and the small synthetic set."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from detectors.dumping import DumpingRecord, Phase
from detectors.evaluation import (
    Annotations,
    ClipSpec,
    DetectedEvent,
    RunResult,
    SyntheticClip,
    TruthEvent,
    TruthView,
    load_annotations,
)
from detectors.evaluation.synthetic import SceneSpec
from tests.conftest import REPO

INTEL = REPO / "configs" / "evaluation" / "intel.yaml"


STREET = REPO / "configs" / "evaluation" / "street.yaml"


def clip_entry(**overrides: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": "street-1",
        "video": "clip.mp4",
        "camera": {
            "zones": [
                {"id": "kerb", "kind": "watch", "polygon": [[0, 0.5], [1, 0.5], [1, 1], [0, 1]]},
                {"id": "bin", "kind": "fixture", "polygon": [[0.8, 0.6], [0.9, 0.6], [0.9, 0.9]]},
            ]
        },
        "events": [{"drop_at": 12.5, "where": [10, 20, 60, 80], "note": "bag by the kerb"}],
    }
    entry.update(overrides)
    return entry


def load(
    tmp_path: Path,
    clips: Sequence[dict[str, Any]],
    environ: dict[str, str] | None = None,
    *,
    touch: Sequence[str] = ("clip.mp4",),
    check_videos: bool = True,
) -> Annotations:
    for name in touch:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    path = tmp_path / "annotations.yaml"
    path.write_text(yaml.safe_dump({"clips": list(clips)}), encoding="utf-8")
    return load_annotations(path, environ, check_videos=check_videos)


def det(appeared_at: float, box: tuple[float, float, float, float] | None = None) -> DetectedEvent:
    return DetectedEvent(appeared_at=appeared_at, alerted_at=appeared_at + 30.0, box=box)


def truth(
    drop_at: float, tolerance_s: float = 5.0, where: tuple[float, float, float, float] | None = None
) -> TruthEvent:
    return TruthEvent(drop_at=drop_at, tolerance_s=tolerance_s, where=where)


def record(phase: Phase, appeared_at: float, alerted_at: float, event: int = 1) -> DumpingRecord:
    return DumpingRecord(
        event_id=uuid.UUID(int=event),
        phase=phase,
        version=0 if phase == "new" else 1,
        state="alerted",
        camera_id="cam",
        zone_id="kerb",
        candidate_id=event,
        at=alerted_at,
        appeared_at=appeared_at,
        owner_left_at=None,
        alerted_at=alerted_at,
        ended_at=None,
        box=(1.0, 2.0, 3.0, 4.0),
        class_id=None,
        class_confidence=0.0,
        owner_track_id=None,
        owner_class_id=None,
        owner_box=None,
        owner_seen_at=None,
        confidence=0.7,
        before_at=appeared_at - 3.0,
    )


def view(condition: str, at: float, tolerance_s: float = 10.0) -> TruthView:
    return TruthView(condition, at, tolerance_s)


def fake_annotations(tmp_path: Path) -> Annotations:
    def spec(name: str, group: str, *drops: float) -> ClipSpec:
        return ClipSpec(name, tmp_path / f"{name}.mp4", tuple(truth(d) for d in drops), group=group)

    return Annotations(
        None,
        (
            spec("leave-a", "leave", 10.0),
            spec("leave-b", "leave", 20.0, 60.0),
            spec("quiet", "negative"),
            spec("busy", "negative"),
        ),
    )


FAKE_RUNS: dict[str, list[DetectedEvent]] = {
    "leave-a": [DetectedEvent(10.5, 41.0)],
    "leave-b": [DetectedEvent(19.0, 52.0), DetectedEvent(90.0, 121.0)],
    "quiet": [],
    "busy": [DetectedEvent(5.0, 35.0)],
}


# Half an hour of video each: the two negatives make one camera-hour.
FAKE_DURATION_S = 1800.0


def fake_run(clip: ClipSpec) -> RunResult:
    return RunResult(FAKE_RUNS[clip.name], duration_s=FAKE_DURATION_S)


W, H = 320, 180


DWELL_S = 10.0


SMALL_SET = (
    SyntheticClip(
        "leave", SceneSpec("drop_and_leave", width=W, height=H, duration_s=22.0), "bag left"
    ),
    SyntheticClip(
        "pickup",
        SceneSpec("drop_and_pickup", width=W, height=H, away_s=6.0, lighting="cloud", seed=1),
        "bag taken back after 6 s",
    ),
    SyntheticClip(
        "walk", SceneSpec("walk_through", width=W, height=H, seed=2), "bag carried through"
    ),
)
