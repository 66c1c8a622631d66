"""Scoring of the evaluation harness: what a run raised against what the annotations say.

The detector itself is injected: `evaluate(annotations, run)` calls `run(clip)` once per clip
and expects a `RunResult`: the events it raised (`DetectedEvent`s) and the view alarms the
camera raised (`ViewAlarm`s), with times in seconds into the clip. A detected event matches an
annotated one when its appearance time is within the tolerance of the drop (and its box
touches `where`, when given); pairs are taken one-to-one, closest in time first; a view alarm
matches an expected view change of the same condition within its tolerance. Scores: TP / FP /
FN, precision, recall, F1, the notification delay (alert time minus drop time) and the box IoU
of the true positives, view alarms found / missed / unexpected, and false alarms per camera-hour
over the clips without dumping; per clip, per group and in total.
"""

from __future__ import annotations

import logging
import statistics
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import cv2
from tqdm import tqdm

from detectors.dumping import DumpingRecord
from detectors.evaluation.annotations import Annotations, Box, ClipSpec, TruthEvent, TruthView
from detectors.regions import box_iou

log = logging.getLogger(__name__)

# Where a detected box must meet an annotated one: any overlap at all. Annotators draw loose
# boxes and detectors cut objects differently; the time window does the real work.
WHERE_MIN_IOU = 0.0
SECONDS_PER_HOUR = 3600.0


class EvaluationError(RuntimeError):
    """A clip could not be evaluated; the message names the clip."""


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


def same_place(where: Box | None, box: Box | None) -> bool:
    """A detected box agrees with an annotated one when they overlap or its centre lies
    inside; no annotated box (or no detected one) leaves the decision to time alone."""
    if where is None or box is None:
        return True
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    inside = where[0] <= cx <= where[2] and where[1] <= cy <= where[3]
    return inside or box_iou(where, box) > WHERE_MIN_IOU


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
        iou = None if where is None or d.box is None else box_iou(where, d.box)
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
