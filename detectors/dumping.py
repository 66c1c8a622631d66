"""Dumping logic per camera: who left which object where, and for how long. Pure: no I/O.

Each candidate object from the static-object model becomes a case:

    appeared ─► attended ⇄ unattended ─► alerted ─► cleaned | picked_up | expired
                      └──────┴── object removed before the alert: dropped, nothing emitted

- The owner is the person or vehicle track nearest the object when it appeared, found in a
  short history of tracks (the object is only confirmed seconds after it was put down, by
  which time its owner may be gone).
- The owner attends the object while within `attend_ratio` x the owner's own box size of
  it (a box gap, so it scales with distance from the camera).
- Unattended for the zone's dwell time, the case raises an event: `new`; later `update`s
  (more confidence, another box) and one `end` (cleaned, picked up, expired).

Times are the frames' capture times in seconds (any clock, e.g. epoch seconds); nothing
here reads a clock. `DumpingDetector` wires a static-object model and the tracker for one
camera; the Kafka service only has to feed it frames and detections.
"""

from __future__ import annotations

import logging
import math
import uuid
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, Literal, Protocol

import numpy as np
import numpy.typing as npt

from detectors.detections import Detections
from detectors.zones import CameraZones, Zone
from pantau.ids import stable_id
from pantau.settings import DumpingSettings

log = logging.getLogger(__name__)

Box = tuple[float, float, float, float]
Phase = Literal["new", "update", "end"]
CaseState = Literal["attended", "unattended", "alerted"]
EventState = Literal["alerted", "cleaned", "picked_up", "expired"]

# COCO ids of the detector's classes that matter here.
PERSON, BICYCLE, CAR, MOTORCYCLE, TRUCK = 0, 1, 2, 3, 7
BACKPACK, HANDBAG, SUITCASE, BOTTLE = 24, 26, 28, 39
ACTOR_CLASSES = frozenset({PERSON, BICYCLE, CAR, MOTORCYCLE, TRUCK})
CARRIABLE_CLASSES = frozenset({BACKPACK, HANDBAG, SUITCASE, BOTTLE})


class Candidate(Protocol):
    """What the dumping logic needs of a static object (static_objects.StaticObject)."""

    @property
    def id(self) -> int: ...
    @property
    def box(self) -> Box: ...
    @property
    def first_seen(self) -> float: ...
    @property
    def status(self) -> str: ...
    @property
    def removed_at(self) -> float | None: ...


class StaticModel(Protocol):
    """What the detector needs of a static-object model (static_objects.StaticObjectModel)."""

    def update(
        self, image: npt.NDArray[np.uint8], t: float, exclude: npt.ArrayLike | None = None
    ) -> Sequence[Candidate]: ...

    def absorb(self, object_id: int) -> bool: ...


@dataclass(frozen=True)
class DumpingConfig:
    """Thresholds of the dumping logic; distances are multiples of the actor's box size
    (its larger side: a person's height, a car's length), times are seconds."""

    # The owner attends the object while the gap between their boxes is at most this: about
    # one metre for a standing person, close enough to be "with" a bag. (This field, the
    # next, `max_age_s` and `trash_bag_class` are the `dumping` settings': their defaults and
    # bounds are written there.)
    attend_ratio: float = DumpingSettings.default_of("attend_ratio")
    # The owner is the actor nearest the object when it appeared, if within this.
    associate_ratio: float = DumpingSettings.default_of("associate_ratio")
    # ... looking this far either side of the estimated appearance time (the estimate comes
    # from when the pixels first differed, which can be a little early or late).
    associate_window_s: float = 3.0
    # Tracks are remembered this long: longer than an object takes to be confirmed while
    # its owner stands next to it, so the owner is still known when it is.
    history_s: float = 120.0
    # A new track that starts within this of the owner's track ending, where the owner was,
    # is the owner under a new id (trackers switch ids on occlusion).
    reid_window_s: float = 3.0
    # A candidate this similar (IoU) to a recent actor box is that actor standing still
    # while the detector missed it, not an object.
    actor_iou: float = 0.5
    # People and vehicles stay masked from the static-object model this long after their
    # track was last seen: detectors miss a frame now and then.
    exclude_hold_s: float = 1.5
    # Cases end as expired this long after the object appeared.
    max_age_s: float = DumpingSettings.default_of("max_age_s")
    # The evidence "before" still is taken this long before the appearance.
    before_margin_s: float = 3.0
    # Removed while the owner was near within this: picked up rather than cleaned.
    picked_up_window_s: float = 2.0
    actor_classes: frozenset[int] = ACTOR_CLASSES
    carriable_classes: frozenset[int] = CARRIABLE_CLASSES
    # A litter model's trash-bag class, when one is configured.
    trash_bag_class: int | None = DumpingSettings.default_of("trash_bag_class")
    # A YOLO box counts for a candidate when IoU >= this or its centre lies inside it.
    class_iou: float = 0.2
    # Confidence is a noisy-or of independent evidence: a static object that stayed for the
    # dwell time; an owner seen leaving it; a carriable class (x its score); a trash bag.
    static_weight: float = 0.5
    owner_weight: float = 0.4
    carriable_weight: float = 0.6
    trash_bag_weight: float = 0.9
    # An alerted event is updated when confidence rose this much or the box changed (IoU).
    update_confidence_step: float = 0.05
    update_box_iou: float = 0.7

    def __post_init__(self) -> None:
        DumpingSettings.check_fields(
            "dumping config",
            {
                "attend_ratio": self.attend_ratio,
                "associate_ratio": self.associate_ratio,
                "max_age_s": self.max_age_s,
                "trash_bag_class": self.trash_bag_class,
            },
        )
        checks = {
            "attend_ratio <= associate_ratio": self.attend_ratio <= self.associate_ratio,
            "history_s > associate_window_s > 0": self.history_s > self.associate_window_s > 0,
            "weights in 0..1": all(
                0 <= w <= 1
                for w in (
                    self.static_weight,
                    self.owner_weight,
                    self.carriable_weight,
                    self.trash_bag_weight,
                )
            ),
        }
        failed = [name for name, ok in checks.items() if not ok]
        if failed:
            raise ValueError(f"dumping config: expected {', '.join(failed)}, got {self}")


@dataclass(frozen=True)
class DumpingRecord:
    """One step in the life of a dumping event (maps onto messages.DumpingEvent).

    Times are capture times in seconds on the clock the frames came with. For evidence:
    `before_at` is a moment before the object appeared, `alerted_at` the alert frame, and
    `owner_seen_at` / `owner_box` where the owner was next to the object.
    """

    event_id: uuid.UUID
    phase: Phase
    version: int
    state: EventState
    camera_id: str
    zone_id: str | None
    candidate_id: int
    at: float
    appeared_at: float
    owner_left_at: float | None
    alerted_at: float
    ended_at: float | None
    box: Box
    class_id: int | None
    class_confidence: float
    owner_track_id: int | None
    owner_class_id: int | None
    owner_box: Box | None
    owner_seen_at: float | None
    confidence: float
    before_at: float


@dataclass(frozen=True)
class CaseView:
    """A case as it stands (for logs, debugging and tests)."""

    candidate_id: int
    state: CaseState
    zone_id: str | None
    owner_track_id: int | None
    unattended_since: float | None
    confidence: float


# --------------------------------------------------------------------------- geometry


def box_gap(a: npt.ArrayLike, b: npt.ArrayLike) -> float:
    """Shortest distance between two boxes (x1, y1, x2, y2); 0 when they overlap."""
    ax1, ay1, ax2, ay2 = (float(v) for v in np.asarray(a, dtype=np.float64))
    bx1, by1, bx2, by2 = (float(v) for v in np.asarray(b, dtype=np.float64))
    dx = max(0.0, max(ax1, bx1) - min(ax2, bx2))
    dy = max(0.0, max(ay1, by1) - min(ay2, by2))
    return math.hypot(dx, dy)


def relative_gap(obj: npt.ArrayLike, actor: npt.ArrayLike) -> float:
    """The gap between an object and an actor in units of the actor's larger box side."""
    a = np.asarray(actor, dtype=np.float64)
    size = max(float(a[2] - a[0]), float(a[3] - a[1]), 1.0)
    return box_gap(obj, a) / size


def iou(a: npt.ArrayLike, b: npt.ArrayLike) -> float:
    ax1, ay1, ax2, ay2 = (float(v) for v in np.asarray(a, dtype=np.float64))
    bx1, by1, bx2, by2 = (float(v) for v in np.asarray(b, dtype=np.float64))
    iw = min(ax2, bx2) - max(ax1, bx1)
    ih = min(ay2, by2) - max(ay1, by1)
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    union = (ax2 - ax1) * (ay2 - ay1) + (bx2 - bx1) * (by2 - by1) - inter
    return inter / union if union > 0 else 0.0


def event_id(camera_id: str, appeared_at: float, box: Box) -> uuid.UUID:
    """Stable id: the same object on the same camera at the same time is the same event,
    also when a restarted detector replays the frames."""
    corners = ",".join(str(round(v)) for v in box)
    return stable_id("dumping", camera_id, f"{appeared_at:.1f}", corners)


def _reached(elapsed: float, limit: float) -> bool:
    # Capture times are floats (often epoch seconds): 42.8 - 12.8 is not quite 30.
    return elapsed >= limit - 1e-6


def _as_box(values: npt.ArrayLike) -> Box:
    # A tenth of a pixel, like the detector's message boxes; float32 noise is no news.
    x1, y1, x2, y2 = (round(float(v), 1) for v in np.asarray(values, dtype=np.float64))
    return (x1, y1, x2, y2)


# --------------------------------------------------------------------------- track history


@dataclass(frozen=True)
class _Sample:
    t: float
    box: Box
    class_id: int


class _History:
    """Recent boxes of every actor track."""

    def __init__(self, keep_s: float) -> None:
        self.keep_s = keep_s
        self.tracks: dict[int, deque[_Sample]] = {}
        self.first_seen: dict[int, float] = {}

    def add(self, t: float, track_id: int, box: Box, class_id: int) -> None:
        self.tracks.setdefault(track_id, deque()).append(_Sample(t, box, class_id))
        self.first_seen.setdefault(track_id, t)

    def prune(self, t: float) -> None:
        horizon = t - self.keep_s
        for track_id in list(self.tracks):
            samples = self.tracks[track_id]
            while samples and samples[0].t < horizon:
                samples.popleft()
            if not samples:
                del self.tracks[track_id]
                del self.first_seen[track_id]

    def last(self, track_id: int) -> _Sample | None:
        samples = self.tracks.get(track_id)
        return samples[-1] if samples else None

    def oldest(self) -> float | None:
        return min((s[0].t for s in self.tracks.values() if s), default=None)


# --------------------------------------------------------------------------- cases


@dataclass
class _Case:
    candidate_id: int
    zone: Zone
    box: Box
    appeared_at: float
    state: CaseState
    unattended_since: float
    owner_id: int | None = None
    owner_class: int | None = None
    owner_box: Box | None = None
    owner_seen_at: float | None = None
    last_near: float | None = None
    class_id: int | None = None
    class_confidence: float = 0.0
    trash_confidence: float = 0.0
    confidence: float = 0.0
    event_id: uuid.UUID | None = None
    version: int = -1
    alerted_at: float | None = None
    reported_box: Box | None = None
    reported_confidence: float = 0.0


class DumpingTracker:
    """The dumping cases of one camera. Call `update` once per frame, in time order."""

    def __init__(
        self, camera_id: str, zones: CameraZones, config: DumpingConfig | None = None
    ) -> None:
        if zones.camera_id != camera_id:
            raise ValueError(
                f"camera {camera_id}: expected zones of this camera, got zones of "
                f"{zones.camera_id!r}"
            )
        self.camera_id = camera_id
        self.zones = zones
        self.config = config or DumpingConfig()
        self._history = _History(self.config.history_s)
        self._cases: dict[int, _Case] = {}
        self._ignored: set[int] = set()
        self._expired: list[int] = []
        self._last_t: float | None = None

    # ------------------------------------------------------------------ public

    def update(
        self,
        t: float,
        candidates: Sequence[Candidate],
        detections: Detections,
        *,
        width: int,
        height: int,
    ) -> list[DumpingRecord]:
        """One frame: the static-object model's candidates and the detector's tracked
        boxes at capture time `t`. Returns the event steps this frame produced.

        A candidate the model no longer lists counts as absorbed into the background.
        """
        if self._last_t is not None and t < self._last_t:
            raise ValueError(
                f"camera {self.camera_id}: expected frames in time order, got {t:.3f} "
                f"after {self._last_t:.3f}"
            )
        self._last_t = t
        actors, objects = self._split(detections)
        for track_id, (box, class_id) in actors.items():
            self._history.add(t, track_id, box, class_id)
        self._history.prune(t)

        records: list[DumpingRecord] = []
        listed: set[int] = set()
        for cand in candidates:
            listed.add(cand.id)
            if cand.id in self._ignored:
                continue
            case = self._cases.get(cand.id)
            if case is None:
                if cand.status != "present":
                    continue
                case = self._open(cand, t, actors, width, height)
                if case is None:
                    self._ignored.add(cand.id)
                    continue
                self._cases[cand.id] = case
            records += self._step(case, cand, t, actors, objects)
        for candidate_id in [c for c in self._cases if c not in listed]:
            case = self._cases.pop(candidate_id)
            if case.state == "alerted":
                records.append(self._record(case, "end", "expired", t, ended_at=t))
        self._ignored &= listed
        return records

    def take_expired(self) -> list[int]:
        """Candidate ids whose case reached max_age_s: fold them into the background."""
        expired, self._expired = self._expired, []
        return expired

    def exclusion_boxes(self, t: float, detections: Detections) -> npt.NDArray[np.float32]:
        """Boxes to hide from the static-object model: people and vehicles in this frame,
        and those seen within exclude_hold_s (a missed detection is not an object)."""
        actors, _ = self._split(detections)
        boxes = [box for box, _ in actors.values()]
        hold = self.config.exclude_hold_s
        for track_id, samples in self._history.tracks.items():
            if track_id not in actors and samples and t - samples[-1].t <= hold:
                boxes.append(samples[-1].box)
        return np.array(boxes, dtype=np.float32).reshape(-1, 4)

    def cases(self) -> tuple[CaseView, ...]:
        return tuple(
            CaseView(
                candidate_id=c.candidate_id,
                state=c.state,
                zone_id=c.zone.id,
                owner_track_id=c.owner_id,
                unattended_since=None if c.state == "attended" else c.unattended_since,
                confidence=c.confidence,
            )
            for c in self._cases.values()
        )

    # ------------------------------------------------------------------ resuming

    def export_state(self) -> dict[str, Any]:
        """The open cases, as plain data (see `detectors.state`): what a restarted detector
        needs to go on with them. Track history is not kept: tracks start over anyway."""
        cases = []
        for c in self._cases.values():
            case = {f.name: getattr(c, f.name) for f in fields(_Case) if f.name != "zone"}
            case["zone_id"] = c.zone.id
            case["zone_dwell_s"] = c.zone.dwell_s
            case["event_id"] = None if c.event_id is None else str(c.event_id)
            owner = self._history.last(c.owner_id) if c.owner_id is not None else None
            case["owner_last_box"] = None if owner is None else list(owner.box)
            cases.append(case)
        return {"cases": cases, "ignored": sorted(self._ignored), "last_t": self._last_t}

    def import_state(self, state: Mapping[str, Any], t: float) -> None:
        """Take up the cases a previous detector left, at frame time `t`.

        An owner who was with the object then counts as with it now, last seen where they
        stood: a new track starting there within reid_window_s is taken to be them (their
        track id cannot survive a restart)."""
        zones = {z.id: z for z in self.zones.watch}
        self._cases.clear()
        for raw in state["cases"]:
            data = dict(raw)
            zone_id, dwell = data.pop("zone_id"), float(data.pop("zone_dwell_s"))
            owner_box = data.pop("owner_last_box")
            zone = zones.get(zone_id)
            if zone is None:
                # The zone was removed from the configuration since: the case keeps its
                # place in the whole frame, with the dwell it had.
                zone = Zone.whole_frame(dwell)
            event = data.get("event_id")
            data["event_id"] = None if event is None else uuid.UUID(event)
            for key in ("box", "owner_box", "reported_box"):
                if data.get(key) is not None:
                    data[key] = _as_box(data[key])
            case = _Case(zone=zone, **data)
            if case.state == "attended":
                case.last_near = t
            if case.owner_id is not None and owner_box is not None and case.owner_class is not None:
                self._history.add(t, case.owner_id, _as_box(owner_box), case.owner_class)
            self._cases[case.candidate_id] = case
        self._ignored = {int(i) for i in state["ignored"]}
        last_t = state.get("last_t")
        self._last_t = None if last_t is None else min(float(last_t), t)

    def owner_ids(self) -> list[int]:
        return [c.owner_id for c in self._cases.values() if c.owner_id is not None]

    # ------------------------------------------------------------------ input

    def _split(
        self, detections: Detections
    ) -> tuple[dict[int, tuple[Box, int]], list[tuple[Box, int, float]]]:
        """Tracked actors by track id, and the boxes of object classes that add confidence."""
        cfg = self.config
        classes = detections.class_id
        is_actor = np.isin(classes, list(cfg.actor_classes))
        if is_actor.any() and detections.tracker_id is None:
            raise ValueError(
                f"camera {self.camera_id}: expected tracked detections (tracker_id) for "
                f"people and vehicles, got {int(is_actor.sum())} boxes without track ids"
            )
        actors: dict[int, tuple[Box, int]] = {}
        objects: list[tuple[Box, int, float]] = []
        wanted = set(cfg.carriable_classes)
        if cfg.trash_bag_class is not None:
            wanted.add(cfg.trash_bag_class)
        for i in range(len(detections)):
            class_id = int(classes[i])
            box = _as_box(detections.xyxy[i])
            if is_actor[i]:
                assert detections.tracker_id is not None
                track = int(detections.tracker_id[i])
                # A box the tracker did not keep (low confidence, no track yet) is nobody in
                # particular: it cannot own an object.
                if track >= 0:
                    actors[track] = (box, class_id)
            elif class_id in wanted:
                objects.append((box, class_id, float(detections.confidence[i])))
        return actors, objects

    # ------------------------------------------------------------------ opening a case

    def _open(
        self,
        cand: Candidate,
        t: float,
        actors: dict[int, tuple[Box, int]],
        width: int,
        height: int,
    ) -> _Case | None:
        cfg = self.config
        box = _as_box(cand.box)
        zone = self.zones.watch_zone_of(np.array([box]), width, height)[0]
        if zone is None:
            log.debug(
                "camera %s: object %d at %s is outside every watch zone (or in a fixture)",
                self.camera_id, cand.id, box,
            )  # fmt: skip
            return None
        for track_id, samples in self._history.tracks.items():
            if any(iou(box, s.box) >= cfg.actor_iou for s in samples):
                log.debug(
                    "camera %s: object %d looks like track %d standing still; not an object",
                    self.camera_id, cand.id, track_id,
                )  # fmt: skip
                return None

        appeared_at = min(float(cand.first_seen), t)
        known_from = t - cfg.history_s
        case = _Case(
            candidate_id=cand.id,
            zone=zone,
            box=box,
            appeared_at=appeared_at,
            state="unattended",
            # Without an owner, unattended since it appeared, as far as the history reaches.
            unattended_since=max(appeared_at, known_from),
        )
        owner = self._find_owner(box, appeared_at, t)
        if owner is not None:
            track_id, sample = owner
            case.owner_id, case.owner_class = track_id, sample.class_id
            case.owner_box, case.owner_seen_at = sample.box, sample.t
            near_times = [
                s.t
                for s in self._history.tracks[track_id]
                if s.t >= sample.t and relative_gap(box, s.box) <= cfg.attend_ratio
            ]
            case.last_near = max(near_times, default=None)
            case.unattended_since = case.last_near if case.last_near is not None else sample.t
            current = actors.get(track_id)
            if current is not None and relative_gap(box, current[0]) <= cfg.attend_ratio:
                case.state = "attended"
        log.debug(
            "camera %s: object %d in zone %s, appeared at %.2f, owner %s, %s",
            self.camera_id, cand.id, zone.id, appeared_at, case.owner_id, case.state,
        )  # fmt: skip
        return case

    def _find_owner(self, box: Box, appeared_at: float, t: float) -> tuple[int, _Sample] | None:
        cfg = self.config
        lo = max(appeared_at - cfg.associate_window_s, t - cfg.history_s)
        hi = max(appeared_at + cfg.associate_window_s, lo + 2 * cfg.associate_window_s)
        best: tuple[float, float, int, _Sample] | None = None
        for track_id, samples in self._history.tracks.items():
            for s in samples:
                if not lo <= s.t <= hi:
                    continue
                gap = relative_gap(box, s.box)
                if gap > cfg.associate_ratio:
                    continue
                key = (gap, abs(s.t - appeared_at), track_id, s)
                if best is None or key[:2] < best[:2]:
                    best = key
        return None if best is None else (best[2], best[3])

    # ------------------------------------------------------------------ each frame

    def _step(
        self,
        case: _Case,
        cand: Candidate,
        t: float,
        actors: dict[int, tuple[Box, int]],
        objects: list[tuple[Box, int, float]],
    ) -> list[DumpingRecord]:
        cfg = self.config
        case.box = _as_box(cand.box)
        near = self._owner_near(case, t, actors)

        if cand.status == "removed":
            self._close(case)
            removed_at = cand.removed_at if cand.removed_at is not None else t
            if case.state != "alerted":
                log.debug(
                    "camera %s: object %d taken away again before any alert",
                    self.camera_id, case.candidate_id,
                )  # fmt: skip
                return []
            recent = case.last_near is not None and case.last_near >= removed_at - (
                cfg.picked_up_window_s
            )
            state: EventState = "picked_up" if near or recent else "cleaned"
            return [self._record(case, "end", state, t, ended_at=removed_at)]

        if cand.status != "present" or _reached(t - case.appeared_at, cfg.max_age_s):
            self._close(case)
            if cand.status == "present":
                self._expired.append(case.candidate_id)
            if case.state != "alerted":
                return []
            return [self._record(case, "end", "expired", t, ended_at=t)]

        if near:
            case.last_near = t
            if case.state == "unattended":
                case.state = "attended"
        elif case.state == "attended":
            case.state = "unattended"
            case.unattended_since = case.last_near if case.last_near is not None else t

        self._weigh(case, objects)
        if case.state == "unattended" and _reached(t - case.unattended_since, case.zone.dwell_s):
            case.state = "alerted"
            case.alerted_at = t
            case.event_id = event_id(self.camera_id, case.appeared_at, case.box)
            log.info(
                "camera %s: dumping event %s in zone %s: object %d at %s unattended since "
                "%.1f (owner %s), confidence %.2f",
                self.camera_id, case.event_id, case.zone.id, case.candidate_id, case.box,
                case.unattended_since, case.owner_id, case.confidence,
            )  # fmt: skip
            return [self._record(case, "new", "alerted", t)]
        if case.state == "alerted":
            assert case.reported_box is not None
            rose = case.confidence >= case.reported_confidence + cfg.update_confidence_step
            moved = iou(case.box, case.reported_box) < cfg.update_box_iou
            if rose or moved:
                return [self._record(case, "update", "alerted", t)]
        return []

    def _close(self, case: _Case) -> None:
        del self._cases[case.candidate_id]
        # Should the model list it again, it is not a new object.
        self._ignored.add(case.candidate_id)

    def _owner_near(self, case: _Case, t: float, actors: dict[int, tuple[Box, int]]) -> bool:
        if case.owner_id is None:
            return False
        if case.owner_id not in actors:
            self._reidentify(case, t, actors)
        current = actors.get(case.owner_id) if case.owner_id is not None else None
        return current is not None and relative_gap(case.box, current[0]) <= (
            self.config.attend_ratio
        )

    def _reidentify(self, case: _Case, t: float, actors: dict[int, tuple[Box, int]]) -> None:
        """The owner's track is gone: a track that began where and when it ended is the
        owner under a new id (occlusion, a tracker's id switch)."""
        assert case.owner_id is not None
        last = self._history.last(case.owner_id)
        if last is None or t - last.t > self.config.history_s:
            return
        window = self.config.reid_window_s
        for track_id, (box, class_id) in actors.items():
            started = self._history.first_seen.get(track_id, t)
            same_kind = (class_id == PERSON) == (last.class_id == PERSON)
            if (
                track_id != case.owner_id
                and same_kind
                and last.t <= started <= last.t + window
                and relative_gap(box, last.box) <= self.config.attend_ratio
            ):
                log.debug(
                    "camera %s: track %d continues owner track %d of object %d",
                    self.camera_id, track_id, case.owner_id, case.candidate_id,
                )  # fmt: skip
                case.owner_id = track_id
                return

    def _weigh(self, case: _Case, objects: list[tuple[Box, int, float]]) -> None:
        cfg = self.config
        x1, y1, x2, y2 = case.box
        for box, class_id, score in objects:
            cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
            if not (iou(box, case.box) >= cfg.class_iou or (x1 <= cx <= x2 and y1 <= cy <= y2)):
                continue
            if class_id == cfg.trash_bag_class:
                case.trash_confidence = max(case.trash_confidence, score)
            if score > case.class_confidence or case.class_id is None:
                case.class_id, case.class_confidence = class_id, score
        carriable = case.class_confidence if case.class_id in cfg.carriable_classes else 0.0
        keep = (1 - cfg.static_weight) * (1 - cfg.owner_weight * (case.owner_id is not None))
        keep *= (1 - cfg.carriable_weight * carriable) * (
            1 - cfg.trash_bag_weight * case.trash_confidence
        )
        case.confidence = round(1.0 - keep, 3)

    def _record(
        self,
        case: _Case,
        phase: Phase,
        state: EventState,
        t: float,
        *,
        ended_at: float | None = None,
    ) -> DumpingRecord:
        assert case.event_id is not None
        assert case.alerted_at is not None
        case.version += 1
        case.reported_box = case.box
        case.reported_confidence = case.confidence
        # The times of an event are in order: appeared <= owner left <= alerted <= ended. The
        # owner may have been last seen near the spot a moment before the pixels settled, and
        # the object may have been missed from a moment before the alert frame.
        owner_left_at = None
        if case.owner_id is not None:
            owner_left_at = min(max(case.unattended_since, case.appeared_at), case.alerted_at)
        if ended_at is not None:
            ended_at = max(ended_at, case.alerted_at)
        return DumpingRecord(
            event_id=case.event_id,
            phase=phase,
            version=case.version,
            state=state,
            camera_id=self.camera_id,
            zone_id=case.zone.id,
            candidate_id=case.candidate_id,
            at=t,
            appeared_at=case.appeared_at,
            owner_left_at=owner_left_at,
            alerted_at=case.alerted_at,
            ended_at=ended_at,
            box=case.box,
            class_id=case.class_id,
            class_confidence=case.class_confidence,
            owner_track_id=case.owner_id,
            owner_class_id=case.owner_class,
            owner_box=case.owner_box,
            owner_seen_at=case.owner_seen_at,
            confidence=case.confidence,
            before_at=case.appeared_at - self.config.before_margin_s,
        )


# --------------------------------------------------------------------------- one camera


class DumpingDetector:
    """A camera's static-object model and dumping tracker, fed one frame at a time."""

    def __init__(
        self,
        camera_id: str,
        zones: CameraZones,
        static_model: StaticModel,
        config: DumpingConfig | None = None,
    ) -> None:
        self.camera_id = camera_id
        self.static_model = static_model
        self.tracker = DumpingTracker(camera_id, zones, config)

    def process(
        self, image: npt.NDArray[np.uint8], t: float, detections: Detections
    ) -> list[DumpingRecord]:
        """One frame (BGR) at capture time `t` with its tracked detections."""
        height, width = image.shape[:2]
        exclude = self.tracker.exclusion_boxes(t, detections)
        candidates = self.static_model.update(image, t, exclude)
        records = self.tracker.update(t, candidates, detections, width=width, height=height)
        for candidate_id in self.tracker.take_expired():
            self.static_model.absorb(candidate_id)
        return records
