"""Evaluation harness of the dumping detector: annotated clips in, event-level scores out.

An annotation file lists clips. Each clip names its video, the camera's zones (the same
shape as a camera's `zones` in the settings) and the dumping events a person saw in it:
when the object was put down (`drop_at`, seconds into the clip), how far off a detection may
be (`tolerance_s`) and optionally where it lies (a pixel box). A clip with `events: []` is a
negative: whatever the detector reports there is a false alarm. A clip may also expect the
camera's own health alarms (`view_changes`: the camera was turned, covered or blurred at
`at`), whether or not anything is dumped in it.

    clips:
      - name: bottles
        group: intel
        video: ${PANTAU_SHARED_DATA}/video/intel-sample-videos/bottle-detection.mp4
        camera:
          zones:
            - {id: table, kind: watch, polygon: [[0, 0.6], [1, 0.6], [1, 1], [0, 1]]}
        dwell_s: 8
        events:
          - {drop_at: 23.0, tolerance_s: 3, where: [288, 108, 355, 314], note: "..."}
        view_changes:
          - {condition: moved, at: 25.0, tolerance_s: 10}

The detector itself is injected: `evaluate(annotations, run)` calls `run(clip)` once per clip
and expects a `RunResult`: the events it raised (`DetectedEvent`s) and the view alarms the
camera raised (`ViewAlarm`s), with times in seconds into the clip. A detected event matches an
annotated one when its appearance time is within the tolerance of the drop (and its box
touches `where`, when given); pairs are taken one-to-one, closest in time first; a view alarm
matches an expected view change of the same condition within its tolerance. Scores: TP / FP /
FN, precision, recall, F1, the notification delay (alert time minus drop time) and the box IoU
of the true positives, view alarms found / missed / unexpected, and false alarms per camera-hour
over the clips without dumping; per clip, per group and in total.

`truth_box_runner` runs one camera's real pipeline after YOLO (`detectors.camera.
CameraPipeline`: tracking, static-object model, dumping state machine, view checks) on clips
written by `detectors.synthetic.write_scene`, with the scene's exact person boxes standing in
for YOLO; `make_synthetic_set` writes such a set with its annotations. Entry point:
`python -m detectors.evaluate make-synthetic OUT_DIR`.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import re
import statistics
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Protocol

import cv2
import numpy as np
import numpy.typing as npt
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from tqdm import tqdm

from detectors.camera import CameraPipeline
from detectors.dumping import DumpingRecord
from detectors.events import EventClock
from detectors.synthetic import SceneSpec, SceneTruth, SyntheticScene, read_truth, write_scene
from detectors.zones import DEFAULT_DWELL_S, CameraZones, Zone
from pantau.imaging import encode_jpeg
from pantau.motion import MotionGate
from pantau.settings import (
    CameraSettings,
    DumpingSettings,
    MotionSettings,
    SourceId,
    TrackerSettings,
    ZoneSettings,
)

log = logging.getLogger(__name__)

Box = tuple[float, float, float, float]
Image = npt.NDArray[np.uint8]

SHARED_DATA_VAR = "PANTAU_SHARED_DATA"
REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
# An annotator marks the moment an object touches the ground to within a second or two; a
# detector dates an object from when its pixels first changed, which is about as close.
DEFAULT_TOLERANCE_S = 5.0
# Where a detected box must meet an annotated one: any overlap at all. Annotators draw loose
# boxes and detectors cut objects differently; the time window does the real work.
WHERE_MIN_IOU = 0.0
# A camera calls itself moved or covered only once the change has lasted a few seconds (a
# person passing close to the lens is not a cover), so its alarm comes that much later.
DEFAULT_VIEW_TOLERANCE_S = 10.0
SECONDS_PER_HOUR = 3600.0

ViewConditionName = Literal["moved", "covered", "blurred"]

REPORT_TABLE = "evaluation.txt"
REPORT_JSON = "evaluation.json"
REPORT_PLOT = "evaluation.png"


class AnnotationError(ValueError):
    """The annotation file is unusable; the message names the file and the clip."""


class EvaluationError(RuntimeError):
    """A clip could not be evaluated; the message names the clip."""


# --------------------------------------------------------------------------- file schema


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EventAnnotation(_Strict):
    """One object put down and left for at least the dwell time."""

    drop_at: float = Field(ge=0, description="seconds into the clip the object was put down")
    tolerance_s: float = Field(
        DEFAULT_TOLERANCE_S, gt=0, description="a detection's appearance may be this far off"
    )
    where: tuple[float, float, float, float] | None = Field(
        None, description="optional [x1, y1, x2, y2] in video pixels around the object"
    )
    note: str = Field("", description="what a person sees happen")

    @field_validator("where")
    @classmethod
    def verify_box(
        cls, where: tuple[float, float, float, float] | None
    ) -> tuple[float, float, float, float] | None:
        if where is not None and not (where[2] > where[0] >= 0 and where[3] > where[1] >= 0):
            raise ValueError("a box [x1, y1, x2, y2] in pixels with x2 > x1 and y2 > y1")
        return where


class ViewChangeAnnotation(_Strict):
    """The camera's picture stopped showing its view: a health alarm is expected."""

    condition: ViewConditionName = Field(
        description="moved (turned, bumped), covered (lens covered) or blurred"
    )
    at: float = Field(ge=0, description="seconds into the clip the change happened")
    tolerance_s: float = Field(
        DEFAULT_VIEW_TOLERANCE_S, gt=0, description="the alarm may come this far off"
    )
    note: str = Field("", description="what a person sees happen")


class CameraAnnotation(_Strict):
    id: SourceId | None = Field(None, description="camera id; the clip's name when left out")
    zones: tuple[ZoneSettings, ...] = Field(
        (), description="as in the settings; none: the whole frame is watched"
    )


class ClipAnnotation(_Strict):
    name: SourceId = Field(description="unique within the file")
    group: str = Field("", description="clips scored together (e.g. a scenario); default: name")
    video: str = Field(description="path relative to this file, ${VAR} and ${VAR:-default} allowed")
    camera: CameraAnnotation = Field(default_factory=CameraAnnotation)
    dwell_s: float | None = Field(None, gt=0, description="overrides every watch zone's dwell")
    events: tuple[EventAnnotation, ...] = Field(description="[] for a clip without dumping")
    view_changes: tuple[ViewChangeAnnotation, ...] = Field(
        (), description="the camera health alarms expected (turned, covered, blurred)"
    )
    note: str = ""


class AnnotationFile(_Strict):
    clips: tuple[ClipAnnotation, ...] = Field(min_length=1)


# --------------------------------------------------------------------------- loaded form


@dataclass(frozen=True)
class TruthEvent:
    drop_at: float
    tolerance_s: float = DEFAULT_TOLERANCE_S
    where: Box | None = None
    note: str = ""


@dataclass(frozen=True)
class TruthView:
    condition: str
    at: float
    tolerance_s: float = DEFAULT_VIEW_TOLERANCE_S
    note: str = ""


@dataclass(frozen=True)
class ClipSpec:
    """One annotated clip, resolved: what a runner needs to run the detector on it."""

    name: str
    video: Path
    events: tuple[TruthEvent, ...] = ()
    view_changes: tuple[TruthView, ...] = ()
    camera_id: str = ""
    zones: tuple[ZoneSettings, ...] = ()
    dwell_s: float | None = None
    group: str = ""
    note: str = ""

    @property
    def camera(self) -> str:
        return self.camera_id or self.name

    @property
    def set_name(self) -> str:
        return self.group or self.name

    def camera_zones(self) -> CameraZones:
        """The clip's zones for the detector, with the clip's dwell override applied."""
        zones = self.zones
        if self.dwell_s is not None:
            zones = tuple(
                z.model_copy(update={"dwell_s": self.dwell_s}) if z.kind == "watch" else z
                for z in zones
            )
        return CameraZones(
            camera_id=self.camera,
            zones=tuple(Zone.from_settings(z) for z in zones),
            default_dwell_s=self.dwell_s if self.dwell_s is not None else DEFAULT_DWELL_S,
        )


@dataclass(frozen=True)
class Annotations:
    path: Path | None
    clips: tuple[ClipSpec, ...]

    def __post_init__(self) -> None:
        names = [c.name for c in self.clips]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise AnnotationError(
                f"annotations {self.path}: expected unique clip names, got {twice} more than once"
            )


_VAR = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\}")


def resolve_video(
    video: str, base_dir: Path, environ: Mapping[str, str], *, clip: str = "?"
) -> Path:
    """`${VAR}` / `${VAR:-default}` from `environ` (PANTAU_SHARED_DATA falls back to the
    shared data folder beside the repository), then relative to the annotation file."""

    def substitute(match: re.Match[str]) -> str:
        name, default = match.group("name"), match.group("default")
        value = environ.get(name) or default
        if value is None and name == SHARED_DATA_VAR:
            value = str(DEFAULT_SHARED_DATA)
        if value is None:
            raise AnnotationError(
                f"clip {clip!r}: video {video!r} refers to ${{{name}}}: expected it in the "
                f"environment or a default (${{{name}:-...}}), got neither"
            )
        return value

    path = Path(_VAR.sub(substitute, video)).expanduser()
    return path if path.is_absolute() else Path(os.path.normpath(base_dir / path))


def _loc_text(loc: Sequence[str | int]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _short(value: Any, limit: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# pydantic words its messages "Input should be greater than 0"; ours read "expected ...".
_SHOULD = re.compile(r"^(?:Input|String|Tuple|List|Value|Dictionary) should (?:be |have )?")


def _format_errors(path: Path | None, raw: Any, exc: ValidationError) -> str:
    clips = raw.get("clips") if isinstance(raw, dict) else None
    errors = exc.errors()
    deeper = any(len(e["loc"]) > 1 for e in errors)
    lines = []
    for err in errors:
        loc = tuple(err["loc"])
        if loc == ("clips",) and err["type"] == "too_short" and deeper:
            # A tuple whose every item failed also reports itself as too short: noise.
            continue
        where = f"annotations {path}"
        if len(loc) >= 2 and loc[0] == "clips" and isinstance(loc[1], int):
            index = loc[1]
            item = clips[index] if isinstance(clips, list) and index < len(clips) else None
            name = item.get("name") if isinstance(item, dict) else None
            where += f": clip {name!r} (clips[{index}])" if name else f": clips[{index}]"
            loc = loc[2:]
        what = _loc_text(loc) or "(the clip itself)"
        message = _SHOULD.sub("", err["msg"].removeprefix("Value error, "))
        got = _short(err.get("input"))
        if err["type"] == "missing":
            lines.append(f"{where}: {what}: expected a value, got none")
        elif err["type"] == "extra_forbidden":
            lines.append(f"{where}: {what}: expected no such key, got {got}")
        elif ", got " in message:
            # A validator of ours or of the settings that already says what it got.
            lines.append(f"{where}: {what}: {message}")
        else:
            lines.append(f"{where}: {what}: expected {message}, got {got}")
    return "\n".join(lines)


def annotations_from_mapping(
    data: Any,
    base_dir: Path,
    environ: Mapping[str, str] | None = None,
    *,
    path: Path | None = None,
    check_videos: bool = True,
) -> Annotations:
    """Validate parsed YAML; see `load_annotations`."""
    try:
        parsed = AnnotationFile.model_validate(data)
    except ValidationError as exc:
        raise AnnotationError(_format_errors(path, data, exc)) from exc
    env = environ if environ is not None else {}
    clips = []
    for clip in parsed.clips:
        video = resolve_video(clip.video, base_dir, env, clip=clip.name)
        if check_videos and not video.is_file():
            raise AnnotationError(
                f"annotations {path}: clip {clip.name!r}: expected a video file at {video} "
                f"(from {clip.video!r}), got nothing there"
                + (f"; set {SHARED_DATA_VAR}" if SHARED_DATA_VAR in clip.video else "")
            )
        clips.append(
            ClipSpec(
                name=clip.name,
                video=video,
                events=tuple(
                    TruthEvent(e.drop_at, e.tolerance_s, e.where, e.note) for e in clip.events
                ),
                view_changes=tuple(
                    TruthView(v.condition, v.at, v.tolerance_s, v.note) for v in clip.view_changes
                ),
                camera_id=clip.camera.id or clip.name,
                zones=clip.camera.zones,
                dwell_s=clip.dwell_s,
                group=clip.group,
                note=clip.note,
            )
        )
        try:
            clips[-1].camera_zones()
        except ValueError as exc:
            raise AnnotationError(f"annotations {path}: clip {clip.name!r}: {exc}") from exc
    return Annotations(path, tuple(clips))


def load_annotations(
    path: Path, environ: Mapping[str, str] | None = None, *, check_videos: bool = True
) -> Annotations:
    """Read and validate an annotation file. `environ` resolves `${VAR}` in video paths
    (pass `os.environ` at the entry point); videos must exist unless `check_videos` is off."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise AnnotationError(f"annotations {path}: cannot read it: {exc}") from exc
    except yaml.YAMLError as exc:
        raise AnnotationError(f"annotations {path}: expected YAML, got: {exc}") from exc
    if not isinstance(data, dict):
        raise AnnotationError(
            f"annotations {path}: expected a mapping with `clips`, got {type(data).__name__}"
        )
    return annotations_from_mapping(
        data, path.parent, environ, path=path, check_videos=check_videos
    )


# --------------------------------------------------------------------------- matching


@dataclass(frozen=True)
class DetectedEvent:
    """An event the detector raised; times are seconds into the clip, box in video pixels."""

    appeared_at: float
    alerted_at: float
    box: Box | None = None
    event_id: str | None = None
    confidence: float | None = None
    zone_id: str | None = None

    def scaled(self, sx: float, sy: float | None = None) -> DetectedEvent:
        """The same event with its box in other pixels (e.g. from the detect width back to
        the video's own, where annotated boxes live)."""
        if self.box is None:
            return self
        fy = sx if sy is None else sy
        x1, y1, x2, y2 = self.box
        return replace(self, box=(x1 * sx, y1 * fy, x2 * sx, y2 * fy))


@dataclass(frozen=True)
class ViewAlarm:
    """A camera health alarm the run raised: its picture became unusable (`condition`
    moved, covered or blurred) at `at` seconds into the clip."""

    at: float
    condition: str


@dataclass(frozen=True)
class RunResult:
    """What one run over a clip raised. `duration_s`: seconds of video watched, when the
    runner knows it (otherwise the harness reads it from the file)."""

    events: Sequence[DetectedEvent]
    view_alarms: Sequence[ViewAlarm] = ()
    duration_s: float | None = None


Runner = Callable[[ClipSpec], RunResult]


class ViewChangeLike(Protocol):
    """What the camera pipeline says about its picture (`detectors.view.ViewChange`)."""

    @property
    def at(self) -> float: ...
    @property
    def condition(self) -> str: ...
    @property
    def phase(self) -> str: ...


def view_alarms_from(changes: Iterable[ViewChangeLike], clip_start: float = 0.0) -> list[ViewAlarm]:
    """The alarms among a camera's view changes (those that `start`), on the clip's clock."""
    return [ViewAlarm(c.at - clip_start, c.condition) for c in changes if c.phase == "start"]


def detected_from_records(
    records: Iterable[DumpingRecord], clip_start: float = 0.0
) -> list[DetectedEvent]:
    """The events a dumping detector raised (its `new` records), on the clip's clock:
    `clip_start` is the capture time of the clip's first frame."""
    events = []
    seen: set[str] = set()
    for r in records:
        if r.phase != "new" or str(r.event_id) in seen:
            continue
        seen.add(str(r.event_id))
        events.append(
            DetectedEvent(
                appeared_at=r.appeared_at - clip_start,
                alerted_at=r.alerted_at - clip_start,
                box=r.box,
                event_id=str(r.event_id),
                confidence=r.confidence,
                zone_id=r.zone_id,
            )
        )
    return events


@dataclass(frozen=True)
class Match:
    truth: int
    detected: int
    offset_s: float  # appeared_at - drop_at
    delay_s: float  # alerted_at - drop_at: how long after the drop someone was told
    iou: float | None = None  # of the detected box with `where`, when both exist


def _iou(a: Box, b: Box) -> float:
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def same_place(where: Box | None, box: Box | None) -> bool:
    """A detected box agrees with an annotated one when they overlap or its centre lies
    inside; no annotated box (or no detected one) leaves the decision to time alone."""
    if where is None or box is None:
        return True
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    inside = where[0] <= cx <= where[2] and where[1] <= cy <= where[3]
    return inside or _iou(where, box) > WHERE_MIN_IOU


def match_events(
    truth: Sequence[TruthEvent], detected: Sequence[DetectedEvent]
) -> tuple[list[Match], list[int], list[int]]:
    """One-to-one, closest in time first: (matches, unmatched truth, unmatched detected),
    indices into the inputs."""
    pairs = []
    for i, t in enumerate(truth):
        for j, d in enumerate(detected):
            offset = d.appeared_at - t.drop_at
            # The tolerance is written in tenths of seconds; float subtraction is not.
            if abs(offset) <= t.tolerance_s + 1e-9 and same_place(t.where, d.box):
                pairs.append((abs(offset), i, j))
    pairs.sort()
    used_t: set[int] = set()
    used_d: set[int] = set()
    matches = []
    for _, i, j in pairs:
        if i in used_t or j in used_d:
            continue
        used_t.add(i)
        used_d.add(j)
        d, where = detected[j], truth[i].where
        drop = truth[i].drop_at
        iou = None if where is None or d.box is None else _iou(where, d.box)
        matches.append(Match(i, j, d.appeared_at - drop, d.alerted_at - drop, iou))
    matches.sort(key=lambda m: m.truth)
    missed = [i for i in range(len(truth)) if i not in used_t]
    false = [j for j in range(len(detected)) if j not in used_d]
    return matches, missed, false


def match_views(
    expected: Sequence[TruthView], alarms: Sequence[ViewAlarm]
) -> tuple[list[tuple[int, int]], list[int], list[int]]:
    """One-to-one, same condition, closest in time first: ((expected, alarm) pairs, missed
    expected, unexpected alarms), indices into the inputs."""
    pairs = []
    for i, v in enumerate(expected):
        for j, a in enumerate(alarms):
            offset = abs(a.at - v.at)
            if a.condition == v.condition and offset <= v.tolerance_s + 1e-9:
                pairs.append((offset, i, j))
    pairs.sort()
    used_e: set[int] = set()
    used_a: set[int] = set()
    matched = []
    for _, i, j in pairs:
        if i in used_e or j in used_a:
            continue
        used_e.add(i)
        used_a.add(j)
        matched.append((i, j))
    matched.sort()
    missed = [i for i in range(len(expected)) if i not in used_e]
    unexpected = [j for j in range(len(alarms)) if j not in used_a]
    return matched, missed, unexpected


# --------------------------------------------------------------------------- scores


@dataclass(frozen=True)
class Scores:
    """Event counts and the figures derived from them; None where a ratio has no
    denominator (no detections: no precision; nothing to find: no recall; no box to compare:
    no IoU; no clip without dumping: no false alarms per hour)."""

    tp: int
    fp: int
    fn: int
    precision: float | None
    recall: float | None
    f1: float | None
    delay_mean: float | None
    delay_p50: float | None
    delay_max: float | None
    delays: tuple[float, ...] = ()
    clips: int = 1
    ious: tuple[float, ...] = ()
    """Box IoU of every true positive whose annotation has a box."""
    iou_mean: float | None = None
    views_found: int = 0
    views_missed: int = 0
    views_unexpected: int = 0
    negative_s: float = 0.0
    """Seconds of video of the clips without dumping."""
    negative_fp: int = 0
    """False alarms raised in those clips."""

    @classmethod
    def of(
        cls,
        tp: int,
        fp: int,
        fn: int,
        delays: Sequence[float] = (),
        clips: int = 1,
        *,
        ious: Sequence[float] = (),
        views: tuple[int, int, int] = (0, 0, 0),
        negative_s: float = 0.0,
        negative_fp: int = 0,
    ) -> Scores:
        """`views`: view alarms (found, missed, unexpected)."""
        if min(tp, fp, fn, *views, negative_fp) < 0 or len(delays) != tp or len(ious) > tp:
            raise ValueError(
                f"scores: expected counts >= 0 and one delay per true positive, got tp={tp} "
                f"fp={fp} fn={fn} and {len(delays)} delays"
                + (f", {len(ious)} IoUs" if len(ious) > tp else "")
                + (f", views {views}" if min(views) < 0 else "")
            )
        if negative_s < 0 or negative_fp > fp:
            raise ValueError(
                f"scores: expected negative_s >= 0 and negative_fp <= fp, got {negative_s} s and "
                f"{negative_fp} of {fp} false alarms"
            )
        precision = tp / (tp + fp) if tp + fp else None
        recall = tp / (tp + fn) if tp + fn else None
        # 2TP / (2TP + FP + FN) is the harmonic mean of the two where both exist, and 0 for a
        # negative clip with false alarms (precision 0, recall undefined).
        f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else None
        ds = tuple(float(d) for d in delays)
        overlaps = tuple(float(v) for v in ious)
        return cls(
            tp=tp,
            fp=fp,
            fn=fn,
            precision=precision,
            recall=recall,
            f1=f1,
            delay_mean=statistics.fmean(ds) if ds else None,
            delay_p50=statistics.median(ds) if ds else None,
            delay_max=max(ds) if ds else None,
            delays=ds,
            clips=clips,
            ious=overlaps,
            iou_mean=statistics.fmean(overlaps) if overlaps else None,
            views_found=views[0],
            views_missed=views[1],
            views_unexpected=views[2],
            negative_s=float(negative_s),
            negative_fp=negative_fp,
        )

    @classmethod
    def combine(cls, parts: Sequence[Scores]) -> Scores:
        return cls.of(
            sum(p.tp for p in parts),
            sum(p.fp for p in parts),
            sum(p.fn for p in parts),
            [d for p in parts for d in p.delays],
            clips=sum(p.clips for p in parts),
            ious=[v for p in parts for v in p.ious],
            views=(
                sum(p.views_found for p in parts),
                sum(p.views_missed for p in parts),
                sum(p.views_unexpected for p in parts),
            ),
            negative_s=sum(p.negative_s for p in parts),
            negative_fp=sum(p.negative_fp for p in parts),
        )

    @property
    def views_expected(self) -> int:
        return self.views_found + self.views_missed

    @property
    def false_alarms_per_hour(self) -> float | None:
        """Dumping alarms per camera-hour of video without dumping."""
        if self.negative_s <= 0:
            return None
        return self.negative_fp * SECONDS_PER_HOUR / self.negative_s

    def to_dict(self) -> dict[str, Any]:
        return {
            "clips": self.clips,
            "tp": self.tp,
            "fp": self.fp,
            "fn": self.fn,
            "precision": self.precision,
            "recall": self.recall,
            "f1": self.f1,
            "delay_s": {
                "mean": self.delay_mean,
                "p50": self.delay_p50,
                "max": self.delay_max,
                "all": list(self.delays),
            },
            "box_iou": {"mean": self.iou_mean, "all": list(self.ious)},
            "view_alarms": {
                "expected": self.views_expected,
                "found": self.views_found,
                "missed": self.views_missed,
                "unexpected": self.views_unexpected,
            },
            "negative_hours": self.negative_s / SECONDS_PER_HOUR,
            "negative_false_alarms": self.negative_fp,
            "false_alarms_per_camera_hour": self.false_alarms_per_hour,
        }


@dataclass(frozen=True)
class ClipResult:
    clip: ClipSpec
    detected: tuple[DetectedEvent, ...]
    matches: tuple[Match, ...]
    missed: tuple[int, ...]
    false: tuple[int, ...]
    scores: Scores
    view_alarms: tuple[ViewAlarm, ...] = ()
    view_matches: tuple[tuple[int, int], ...] = ()
    """(expected view change, view alarm) index pairs."""
    views_missed: tuple[int, ...] = ()
    views_unexpected: tuple[int, ...] = ()
    duration_s: float | None = None

    @property
    def negative(self) -> bool:
        """A clip without dumping (it may still expect a view alarm)."""
        return not self.clip.events

    def to_dict(self) -> dict[str, Any]:
        truth, found = self.clip.events, self.detected
        views, alarms = self.clip.view_changes, self.view_alarms
        return {
            "clip": self.clip.name,
            "group": self.clip.set_name,
            "video": str(self.clip.video),
            "duration_s": self.duration_s,
            "negative": self.negative,
            "scores": self.scores.to_dict(),
            "matched": [
                {
                    "drop_at": truth[m.truth].drop_at,
                    "appeared_at": found[m.detected].appeared_at,
                    "alerted_at": found[m.detected].alerted_at,
                    "offset_s": m.offset_s,
                    "delay_s": m.delay_s,
                    "box_iou": m.iou,
                    "box": found[m.detected].box,
                    "where": truth[m.truth].where,
                    "event_id": found[m.detected].event_id,
                    "note": truth[m.truth].note,
                }
                for m in self.matches
            ],
            "missed": [{"drop_at": truth[i].drop_at, "note": truth[i].note} for i in self.missed],
            "false_alarms": [
                {
                    "appeared_at": found[j].appeared_at,
                    "alerted_at": found[j].alerted_at,
                    "box": found[j].box,
                    "event_id": found[j].event_id,
                }
                for j in self.false
            ],
            "view_alarms": {
                "matched": [
                    {
                        "condition": views[i].condition,
                        "expected_at": views[i].at,
                        "alarm_at": alarms[j].at,
                        "offset_s": alarms[j].at - views[i].at,
                    }
                    for i, j in self.view_matches
                ],
                "missed": [
                    {"condition": views[i].condition, "expected_at": views[i].at}
                    for i in self.views_missed
                ],
                "unexpected": [
                    {"condition": alarms[j].condition, "alarm_at": alarms[j].at}
                    for j in self.views_unexpected
                ],
            },
        }


@dataclass(frozen=True)
class Report:
    clips: tuple[ClipResult, ...]
    groups: dict[str, Scores] = field(default_factory=dict)
    total: Scores = field(default_factory=lambda: Scores.of(0, 0, 0, clips=0))

    @classmethod
    def of(cls, results: Sequence[ClipResult]) -> Report:
        by_group: dict[str, list[Scores]] = {}
        for r in results:
            by_group.setdefault(r.clip.set_name, []).append(r.scores)
        return cls(
            clips=tuple(results),
            groups={g: Scores.combine(s) for g, s in by_group.items()},
            total=Scores.combine([r.scores for r in results]),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "total": self.total.to_dict(),
            "groups": {g: s.to_dict() for g, s in self.groups.items()},
            "clips": [r.to_dict() for r in self.clips],
        }


def score_clip(clip: ClipSpec, run: RunResult, duration_s: float | None = None) -> ClipResult:
    """Score one run; `duration_s` (the run's own, else this) counts the clip's video time
    towards the false alarms per camera-hour when it has no dumping."""
    detected, alarms = tuple(run.events), tuple(run.view_alarms)
    matches, missed, false = match_events(clip.events, detected)
    view_matches, views_missed, views_unexpected = match_views(clip.view_changes, alarms)
    duration = run.duration_s if run.duration_s is not None else duration_s
    negative = not clip.events
    return ClipResult(
        clip=clip,
        detected=detected,
        matches=tuple(matches),
        missed=tuple(missed),
        false=tuple(false),
        scores=Scores.of(
            len(matches),
            len(false),
            len(missed),
            [m.delay_s for m in matches],
            ious=[m.iou for m in matches if m.iou is not None],
            views=(len(view_matches), len(views_missed), len(views_unexpected)),
            negative_s=(duration or 0.0) if negative else 0.0,
            negative_fp=len(false) if negative else 0,
        ),
        view_alarms=alarms,
        view_matches=tuple(view_matches),
        views_missed=tuple(views_missed),
        views_unexpected=tuple(views_unexpected),
        duration_s=duration,
    )


def video_duration(path: Path) -> float | None:
    """Seconds of video in the file (frames / frame rate), None when OpenCV cannot tell."""
    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            return None
        frames = float(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        fps = float(capture.get(cv2.CAP_PROP_FPS))
        return frames / fps if frames > 0 and fps > 0 else None
    finally:
        capture.release()


def evaluate(annotations: Annotations, run: Runner, *, progress: bool = True) -> Report:
    """Run the detector on every clip (a tqdm bar on stderr) and score what it raised."""
    results = []
    bar = tqdm(annotations.clips, desc="evaluate", unit="clip", file=sys.stderr,
               disable=not progress)  # fmt: skip
    for clip in bar:
        bar.set_postfix_str(clip.name)
        try:
            result = run(clip)
        except EvaluationError:
            raise
        except Exception as exc:
            raise EvaluationError(
                f"clip {clip.name!r} ({clip.video}): the run failed: {exc}"
            ) from exc
        if not isinstance(result, RunResult):
            raise EvaluationError(
                f"clip {clip.name!r}: expected the run to return a RunResult, "
                f"got {type(result).__name__}"
            )
        wrong = [type(d).__name__ for d in result.events if not isinstance(d, DetectedEvent)]
        wrong += [type(a).__name__ for a in result.view_alarms if not isinstance(a, ViewAlarm)]
        if wrong:
            raise EvaluationError(
                f"clip {clip.name!r}: expected the run to return DetectedEvent and ViewAlarm "
                f"items, got {wrong[0]}"
            )
        duration = result.duration_s
        if duration is None and not clip.events:
            duration = video_duration(clip.video)
            if duration is None:
                log.warning(
                    "clip %s: the length of %s is unknown; it does not count towards the "
                    "false alarms per camera-hour",
                    clip.name, clip.video,
                )  # fmt: skip
        scored = score_clip(clip, result, duration)
        s = scored.scores
        log.info(
            "clip %s: %d annotated, %d detected: TP %d, FP %d, FN %d; view alarms %d of %d, "
            "%d unexpected",
            clip.name, len(clip.events), len(scored.detected), s.tp, s.fp, s.fn,
            s.views_found, s.views_expected, s.views_unexpected,
        )  # fmt: skip
        results.append(scored)
    return Report.of(results)


# --------------------------------------------------------------------------- output


def _num(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def format_table(report: Report) -> str:
    """Plain text, columns aligned: every clip, then every group, then the total; under it
    the false alarms per camera-hour of the clips without dumping.

    `IoU`: mean box IoU of the events found; `views`: view alarms found of those expected;
    `extra`: view alarms nobody expected."""
    head = ("clip", "group", "truth", "found", "TP", "FP", "FN", "P", "R", "F1",
            "delay mean", "p50", "max", "IoU", "views", "extra")  # fmt: skip

    def row(name: str, group: str, truth: str, found: str, s: Scores) -> tuple[str, ...]:
        return (name, group, truth, found, str(s.tp), str(s.fp), str(s.fn), _num(s.precision),
                _num(s.recall), _num(s.f1), _num(s.delay_mean, 1), _num(s.delay_p50, 1),
                _num(s.delay_max, 1), _num(s.iou_mean),
                f"{s.views_found}/{s.views_expected}", str(s.views_unexpected))  # fmt: skip

    rows = [
        row(r.clip.name, r.clip.set_name, str(len(r.clip.events)), str(len(r.detected)), r.scores)
        for r in report.clips
    ]
    groups = [
        row(f"[{g}]", f"{s.clips} clips", str(s.tp + s.fn), str(s.tp + s.fp), s)
        for g, s in report.groups.items()
    ]
    t = report.total
    total = [row("TOTAL", f"{t.clips} clips", str(t.tp + t.fn), str(t.tp + t.fp), t)]
    widths = [max(len(r[i]) for r in [head, *rows, *groups, *total]) for i in range(len(head))]

    def line(cells: Sequence[str]) -> str:
        # Names left, numbers right, like any table people read down.
        parts = [
            c.ljust(w) if i < 2 else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(parts).rstrip()

    rule = "-" * len(line(["-" * w for w in widths]))
    out = [line(head), rule, *map(line, rows), rule, *map(line, groups), rule, *map(line, total)]
    return "\n".join(out) + "\n\n" + false_alarm_line(t) + "\n"


def false_alarm_line(s: Scores) -> str:
    negatives = s.negative_s / SECONDS_PER_HOUR
    if s.false_alarms_per_hour is None:
        return "false alarms per camera-hour: - (no clip without dumping, or none of known length)"
    return (
        f"false alarms per camera-hour: {s.false_alarms_per_hour:.1f} "
        f"({s.negative_fp} in {negatives:.2f} h of clips without dumping)"
    )


def write_json(report: Report, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report.to_dict(), indent=2) + "\n", encoding="utf-8")
    return path


def write_plot(report: Report, path: Path) -> Path:
    """PNG: precision / recall / F1 / box IoU per group and in total (false alarms per
    camera-hour in the title), the notification delays, and the view alarms."""
    # Imported here: only the report needs matplotlib, and Agg draws without a display.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names = [*report.groups, "total"]
    scores = [*report.groups.values(), report.total]
    fig = Figure(figsize=(max(10.0, 1.6 * len(names) + 9.0), 4.5), layout="constrained")
    FigureCanvasAgg(fig)
    bars, spread, views = fig.subplots(1, 3, width_ratios=[max(2, len(names)), 2, 2])
    x = np.arange(len(names), dtype=np.float64)
    width = 0.2
    for k, (label, values) in enumerate(
        (
            ("precision", [s.precision for s in scores]),
            ("recall", [s.recall for s in scores]),
            ("F1", [s.f1 for s in scores]),
            ("box IoU", [s.iou_mean for s in scores]),
        )
    ):
        pos = x + (k - 1.5) * width
        heights = [math.nan if v is None else v for v in values]
        bars.bar(pos, heights, width, label=label)
        for p, v in zip(pos, values, strict=True):
            if v is not None:
                bars.text(p, v + 0.02, f"{v:.2f}", ha="center", va="bottom", fontsize=7,
                          rotation=90)  # fmt: skip
    for xi, s in zip(x, scores, strict=True):
        # A set without dumping has no recall, and no precision when it stays quiet; an empty
        # slot must not read as a zero score, so say what the set scored instead.
        if s.tp + s.fn == 0:
            bars.text(xi, 0.05, f"no events\n{s.fp} false\nalarm{'s' if s.fp != 1 else ''}",
                      ha="center", va="bottom", fontsize=7)  # fmt: skip
    bars.set_xticks(x, [f"{n}\n({s.clips} clips)" for n, s in zip(names, scores, strict=True)],
                    fontsize=8)  # fmt: skip
    bars.set_ylim(0, 1.25)
    bars.set_ylabel("score")
    per_hour = report.total.false_alarms_per_hour
    bars.set_title(
        "event-level scores per clip set\nfalse alarms per camera-hour without dumping: "
        + ("-" if per_hour is None else f"{per_hour:.1f}"),
        fontsize=10,
    )
    bars.legend(loc="upper right", fontsize=8, ncols=4)

    delays = [list(s.delays) for s in report.groups.values()]
    filled = [(n, d) for n, d in zip(report.groups, delays, strict=True) if d]
    if filled:
        rng = np.random.default_rng(0)
        for i, (_, d) in enumerate(filled):
            jitter = rng.uniform(-0.12, 0.12, len(d))
            spread.scatter(np.full(len(d), i, dtype=np.float64) + jitter, d, s=18, alpha=0.8)
        spread.boxplot([d for _, d in filled], positions=range(len(filled)), widths=0.5)
        spread.set_xticks(range(len(filled)), [n for n, _ in filled], fontsize=8, rotation=30)
        if report.total.delay_p50 is not None:
            spread.axhline(report.total.delay_p50, ls="--", lw=1, color="grey",
                           label=f"median {report.total.delay_p50:.1f} s")  # fmt: skip
            spread.legend(fontsize=8)
    else:
        spread.text(0.5, 0.5, "no true positives", ha="center", va="center",
                    transform=spread.transAxes)  # fmt: skip
        spread.set_xticks([])
    spread.set_ylabel("alert - drop (s)")
    spread.set_title("notification delay of true positives")

    # View alarms per clip set: found and missed stack up to those expected; unexpected beside.
    found = np.array([s.views_found for s in scores], dtype=np.float64)
    missed = np.array([s.views_missed for s in scores], dtype=np.float64)
    extra = np.array([s.views_unexpected for s in scores], dtype=np.float64)
    views.bar(x - 0.2, found, 0.4, label="found", color="tab:green")
    views.bar(x - 0.2, missed, 0.4, bottom=found, label="missed", color="tab:red")
    views.bar(x + 0.2, extra, 0.4, label="unexpected", color="tab:orange")
    for xi, f, m, e in zip(x, found, missed, extra, strict=True):
        views.text(xi - 0.2, f + m + 0.05, f"{f:.0f}/{f + m:.0f}", ha="center", va="bottom",
                   fontsize=7)  # fmt: skip
        if e:
            views.text(xi + 0.2, e + 0.05, f"{e:.0f}", ha="center", va="bottom", fontsize=7)
    views.set_xticks(x, names, fontsize=8, rotation=30)
    views.set_ylim(0, max(1.0, float(max((found + missed).max(), extra.max()))) * 1.3)
    views.set_ylabel("camera view alarms")
    views.set_title("camera moved / covered alarms")
    views.legend(fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path


def write_report(report: Report, out_dir: Path) -> dict[str, Path]:
    """Table, JSON and plot into `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    table = out_dir / REPORT_TABLE
    table.write_text(format_table(report), encoding="utf-8")
    return {
        "table": table,
        "json": write_json(report, out_dir / REPORT_JSON),
        "plot": write_plot(report, out_dir / REPORT_PLOT),
    }


# --------------------------------------------------------------------------- video


def video_frames(path: Path, fps: float | None = None) -> Iterator[tuple[int, float, Image]]:
    """(index, seconds into the clip, BGR frame); with `fps`, frames are dropped down to
    about that rate, on the clip's own timestamps (the camera samples by time, too)."""
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise OSError(f"video {path}: expected a file OpenCV can read, got one it cannot open")
    try:
        native = float(capture.get(cv2.CAP_PROP_FPS)) or 0.0
        if native <= 0:
            raise OSError(f"video {path}: expected a frame rate in the file, got {native}")
        next_t = 0.0
        index = 0
        while True:
            ok, image = capture.read()
            if not ok:
                return
            t = index / native
            if fps is None or t + 0.5 / native >= next_t:
                yield index, t, np.asarray(image, dtype=np.uint8)
                if fps is not None:
                    next_t += 1.0 / fps
            index += 1
    finally:
        capture.release()


# --------------------------------------------------------------------------- stand-in run


# The truth holds people (and, with `object_class`, the bag); the event messages need names.
_TRUTH_NAMES = {0: "person", 24: "backpack", 26: "handbag", 28: "suitcase"}


def truth_box_runner(
    *,
    dumping: DumpingSettings | None = None,
    tracker: TrackerSettings | None = None,
    motion: MotionSettings | None = None,
    object_class: int | None = None,
) -> Runner:
    """A runner for synthetic clips: one camera's pipeline as `pantau detect-file` runs it
    (motion gate, the frame as the camera publishes it, then `CameraPipeline`: tracking,
    static-object model, dumping state machine, view checks), with the scene's exact person
    boxes (read from the ground truth `write_scene` put beside the video) in place of YOLO.
    Defaults: the settings' defaults."""
    dumping_settings = dumping or DumpingSettings()
    tracker_settings = tracker or TrackerSettings()
    motion_settings = motion or MotionSettings()

    def run(clip: ClipSpec) -> RunResult:
        truth_path = clip.video.with_suffix(".yaml")
        if not truth_path.is_file():
            raise EvaluationError(
                f"clip {clip.name!r}: expected the synthetic ground truth at {truth_path}, got "
                f"no such file (the stand-in runner only runs clips written by write_scene)"
            )
        truth = read_truth(truth_path)
        spec = truth.spec
        camera = CameraSettings.model_validate(
            {
                "id": clip.camera,
                "url": str(clip.video),
                "fps": spec.fps,
                "max_width": max(160, spec.width),
                "zones": [z.model_dump() for z in clip.zones],
            }
        )
        pipeline = CameraPipeline(
            camera,
            tracker=tracker_settings,
            dumping=dumping_settings,
            names=_TRUTH_NAMES,
            clock=EventClock(datetime(2000, 1, 1, tzinfo=UTC)),
            dwell_s=clip.dwell_s,
            evidence=False,
        )
        # Until the pipeline checks its view, it raises no view alarms.
        take_views: Callable[[], Iterable[ViewChangeLike]] | None = getattr(
            pipeline, "take_view_changes", None
        )
        gate = MotionGate(camera.motion_gate(motion_settings))
        records: list[DumpingRecord] = []
        changes: list[ViewChangeLike] = []
        frames = 0
        for index, _, raw in video_frames(clip.video):
            if index >= len(truth.frames):
                raise EvaluationError(
                    f"clip {clip.name!r}: expected {len(truth.frames)} frames as in "
                    f"{truth_path.name}, got more in the video"
                )
            frames += 1
            frame = truth.frames[index]
            if not gate.decide(raw, frame.t).publish:
                continue
            image = _as_published(raw, camera.max_width, camera.jpeg_quality)
            found = frame.detections(object_class=object_class)
            _, steps, _ = pipeline.frame(frame.t, image, found)
            records += steps
            if take_views is not None:
                changes += take_views()
        pipeline.flush()
        if frames != len(truth.frames):
            log.warning(
                "clip %s: the video has %d frames, its ground truth %d",
                clip.name, frames, len(truth.frames),
            )  # fmt: skip
        start = truth.frames[0].t
        return RunResult(
            events=detected_from_records(records, clip_start=start),
            view_alarms=view_alarms_from(changes, clip_start=start),
            duration_s=len(truth.frames) / spec.fps,
        )

    return run


def _as_published(image: Image, max_width: int, quality: int) -> Image:
    """The frame as the detector gets it from the camera ingest: JPEG-encoded and decoded."""
    jpeg, _, _ = encode_jpeg(image, max_width, quality)
    return np.asarray(cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR), np.uint8)


# --------------------------------------------------------------------------- synthetic set


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
        "# Synthetic evaluation set written by `python -m detectors.evaluate make-synthetic`.\n"
        "# Events come from each scene's exact ground truth: one where the bag lay unattended\n"
        f"# for at least the dwell time ({dwell_s:g} s).\n"
    )
    body = yaml.safe_dump({"clips": entries}, sort_keys=False, width=100)
    path.write_text(header + body, encoding="utf-8")
    log.info("synthetic evaluation set: %d clips written to %s", len(entries), out_dir)
    return path


# --------------------------------------------------------------------------- entry point


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m detectors.evaluate",
        description="evaluation harness of the dumping detector",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    make = sub.add_parser("make-synthetic", help="render the synthetic set and its annotations")
    make.add_argument("out_dir", type=Path)
    make.add_argument("--dwell-s", type=float, default=30.0, help="dwell time of the watch zone")
    stand_in = sub.add_parser(
        "run-stand-in",
        help="evaluate synthetic clips with their exact person boxes in place of YOLO",
    )
    stand_in.add_argument("annotations", type=Path)
    stand_in.add_argument("--out", type=Path, help="write table, JSON and plot here")
    check = sub.add_parser("check", help="load an annotation file and list its clips")
    check.add_argument("annotations", type=Path)
    parser.add_argument("-v", "--verbose", action="store_true", help="log every clip and event")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )

    try:
        if args.command == "make-synthetic":
            path = make_synthetic_set(args.out_dir, dwell_s=args.dwell_s)
            print(path)
            return 0
        annotations = load_annotations(args.annotations, os.environ)
        if args.command == "check":
            for clip in annotations.clips:
                print(
                    f"{clip.name}: {len(clip.events)} events, "
                    f"{len(clip.view_changes)} view changes, {clip.video}"
                )
            return 0
        report = evaluate(annotations, truth_box_runner())
        print(format_table(report), end="")
        if args.out is not None:
            for path in write_report(report, args.out).values():
                print(path)
        return 0
    except (AnnotationError, EvaluationError, OSError) as exc:
        print(f"{parser.prog}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
