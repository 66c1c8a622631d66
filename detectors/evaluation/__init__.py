"""Evaluation harness of the dumping detector: annotated clips in, event-level scores out.

Apart from the runtime: the detector's own modules never import it; it imports them.

- `annotations`: the annotation file (clips, their zones, the dumping and the camera view
  changes a person saw) and its loading.
- `scoring`: matching what a run raised to the annotations; precision, recall, F1,
  notification delay, box IoU, view alarms, false alarms per camera-hour; `evaluate`.
- `report`: the table, JSON and plot.
- `runners`: a detector run over one clip: the real offline pipeline, or the scene's exact
  person boxes in place of YOLO on synthetic clips.
- `synthetic`, `synthetic_set`: synthetic street scenes with exact ground truth, and the
  annotated standard set made of them.
- `commands`: `pantau evaluate`.

The names below load their modules on first use, so that rendering one synthetic scene
(`python -m detectors.evaluation.synthetic`, as `pantau demo` does) or importing the scene
generator does not load the runners and, through them, the detector.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from detectors.evaluation.annotations import (
        DEFAULT_SHARED_DATA,
        DEFAULT_TOLERANCE_S,
        DEFAULT_VIEW_TOLERANCE_S,
        SHARED_DATA_VAR,
        AnnotationError,
        Annotations,
        ClipSpec,
        TruthEvent,
        TruthView,
        annotations_from_mapping,
        load_annotations,
        resolve_video,
    )
    from detectors.evaluation.report import format_table, write_json, write_plot, write_report
    from detectors.evaluation.runners import clip_runner, truth_box_runner, video_frames
    from detectors.evaluation.scoring import (
        ClipResult,
        DetectedEvent,
        EvaluationError,
        Match,
        Report,
        Runner,
        RunResult,
        Scores,
        ViewAlarm,
        detected_from_records,
        evaluate,
        match_events,
        match_views,
        score_clip,
        view_alarms_from,
    )
    from detectors.evaluation.synthetic_set import (
        SyntheticClip,
        default_synthetic_clips,
        make_synthetic_set,
    )

__all__ = [
    "DEFAULT_SHARED_DATA",
    "DEFAULT_TOLERANCE_S",
    "DEFAULT_VIEW_TOLERANCE_S",
    "SHARED_DATA_VAR",
    "AnnotationError",
    "Annotations",
    "ClipResult",
    "ClipSpec",
    "DetectedEvent",
    "EvaluationError",
    "Match",
    "Report",
    "RunResult",
    "Runner",
    "Scores",
    "SyntheticClip",
    "TruthEvent",
    "TruthView",
    "ViewAlarm",
    "annotations_from_mapping",
    "clip_runner",
    "default_synthetic_clips",
    "detected_from_records",
    "evaluate",
    "format_table",
    "load_annotations",
    "make_synthetic_set",
    "match_events",
    "match_views",
    "resolve_video",
    "score_clip",
    "truth_box_runner",
    "video_frames",
    "view_alarms_from",
    "write_json",
    "write_plot",
    "write_report",
]

_MODULES = ("annotations", "scoring", "report", "runners", "synthetic_set")

if not TYPE_CHECKING:

    def __getattr__(name: str) -> object:
        if name not in __all__:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        for module_name in _MODULES:
            module = importlib.import_module(f"{__name__}.{module_name}")
            globals().update({n: getattr(module, n) for n in __all__ if hasattr(module, n)})
        return globals()[name]
