"""Synthetic street scenes with exact ground truth, for tests and the evaluation harness.

A rendered pavement beside a road, with a pole and a bin that belong there; a simple
articulated person walks in carrying a dark bag and, depending on the scenario, puts it down
and leaves, comes back for it, never puts it down, or just stands still; or people only walk
by. Lighting (a slow dusk, a sudden cloud, a lamp-lit night) and sensor noise vary the picture
without changing the truth. The camera itself may be turned a few degrees mid-clip (the
whole picture pans and tilts, then stays) or covered for a while (a hand or a cloth over the
lens); the truth lists those view changes, and the boxes follow what the picture shows.

Every frame comes with the boxes a perfect detector and tracker would report, so tests can
feed the dumping logic without running YOLO. Geometry is in fractions of the frame, so a
scene renders at any resolution; everything is deterministic for a given spec.

`python -m detectors.evaluation.synthetic OUT_DIR` renders one scene as a video file
(`pantau demo` plays one as a camera).
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Literal, get_args

import cv2
import numpy as np
import numpy.typing as npt
import yaml

from detectors.detections import Detections

log = logging.getLogger(__name__)

Scenario = Literal[
    "drop_and_leave",
    "drop_and_pickup",
    "drop_and_clean",
    "walk_through",
    "stand_still",
    "passers_by",
    "empty",
]
Lighting = Literal["steady", "dusk", "cloud", "night"]
ViewCondition = Literal["moved", "covered"]
Box = tuple[float, float, float, float]
Image = npt.NDArray[np.uint8]

PERSON = 0
# A standing adult seen by a street camera a few metres up fills about a third of the height.
PERSON_HEIGHT_FRAC = 0.3
# 1.3 m/s for a 1.7 m person: an ordinary walking pace, in body heights per second.
WALK_SPEED_HEIGHTS = 0.76
# A stuffed 40-60 litre trash bag next to that person.
BAG_W_HEIGHTS = 0.30
BAG_H_HEIGHTS = 0.26
# How long the person stays bent over the bag around a drop or a pick-up.
_STOOP_BEFORE_S = 0.6
_STOOP_AFTER_S = 0.4
_NOISE_BANK = 4
_NOISE_PAD = 32
# passers_by: one person every 10 s, alternately from the left and the right; crossing the
# frame takes about 9 s, so no two are in view at once (nobody hides anybody).
_PASS_EVERY_S = 10.0
# A camera knocked or turned by hand swings to its new view within about a second.
_MOVE_EASE_S = 1.0
# A hand or a cloth slides over (and off) the lens in about this long.
_COVER_SLIDE_S = 0.4
# A covered lens sees a dark, smooth, nearly even surface: a few grey levels of shading.
_COVER_GREY = 26.0
_COVER_SHADING = 5.0
# Night: street lamps light pools of pavement; between them only a little light from afar.
# A camera at night runs at high gain, so its sensor noise grows as well.
_NIGHT_AMBIENT = 0.13
_NIGHT_LAMP_GAIN = 0.5
_NIGHT_LAMPS_X = (0.38, 0.86)
_NIGHT_NOISE_GAIN = 2.0

_OWNER_SHIRT = (170, 90, 40)
_CLEANER_SHIRT = (20, 140, 235)
_PASSER_SHIRTS = ((40, 40, 170), (150, 150, 150), (130, 60, 20), (30, 110, 200))
_TROUSERS = (60, 45, 40)
_SKIN = (95, 140, 190)
_BAG = (30, 27, 25)
_BAG_SHINE = (75, 72, 70)


@dataclass(frozen=True)
class SceneSpec:
    """What to render; times are seconds from the first frame unless said otherwise."""

    scenario: Scenario = "drop_and_leave"
    width: int = 640
    height: int = 360
    fps: float = 5.0
    duration_s: float | None = None
    lighting: Lighting = "steady"
    noise_sigma: float = 2.0
    seed: int = 0
    start_at: float = 0.0
    # When the first person walks in: the same scene at another moment of the clip.
    enter_s: float = 1.0
    drop_x: float = 0.45
    ground_y: float = 0.8
    away_s: float = 10.0
    clean_after_s: float = 45.0
    stand_s: float = 60.0
    # The camera turned mid-clip: from `move_at_s` the picture pans by `move_shift` of its
    # width (positive: the camera turns right, the scene slides left; 0.065 is about 4
    # degrees of a 60-degree lens, 42 px at 640 wide) and rolls by `move_roll_deg`, eased over
    # a second, then stays there.
    move_at_s: float | None = None
    move_shift: float = 0.065
    move_roll_deg: float = 1.0
    # The lens covered from `cover_at_s` for `cover_s` seconds, then the same view again.
    cover_at_s: float | None = None
    cover_s: float = 10.0

    def __post_init__(self) -> None:
        problems: list[str] = []
        if self.scenario not in get_args(Scenario):
            problems.append(
                f"scenario: expected one of {get_args(Scenario)}, got {self.scenario!r}"
            )
        if self.lighting not in get_args(Lighting):
            problems.append(
                f"lighting: expected one of {get_args(Lighting)}, got {self.lighting!r}"
            )
        if self.width < 64 or self.height < 64:
            problems.append(f"size: expected at least 64x64, got {self.width}x{self.height}")
        if not self.fps > 0:
            problems.append(f"fps: expected > 0, got {self.fps}")
        if self.duration_s is not None and not self.duration_s > 0:
            problems.append(f"duration_s: expected > 0, got {self.duration_s}")
        if self.noise_sigma < 0:
            problems.append(f"noise_sigma: expected >= 0, got {self.noise_sigma}")
        if self.enter_s < 0:
            problems.append(f"enter_s: expected >= 0, got {self.enter_s}")
        if not 0.25 <= self.drop_x <= 0.7:
            problems.append(f"drop_x: expected 0.25..0.7 of the width, got {self.drop_x}")
        if not 0.6 <= self.ground_y <= 0.95:
            problems.append(f"ground_y: expected 0.6..0.95 of the height, got {self.ground_y}")
        if self.away_s < 3.0:
            problems.append(f"away_s: expected >= 3 s (walk off and back), got {self.away_s}")
        if self.clean_after_s < 3.0:
            problems.append(f"clean_after_s: expected >= 3 s, got {self.clean_after_s}")
        if not self.stand_s > 0:
            problems.append(f"stand_s: expected > 0, got {self.stand_s}")
        if self.move_at_s is not None and self.move_at_s < 0:
            problems.append(f"move_at_s: expected >= 0, got {self.move_at_s}")
        if not 0.01 <= abs(self.move_shift) <= 0.25:
            problems.append(
                f"move_shift: expected 0.01..0.25 of the width either way, got {self.move_shift}"
            )
        if abs(self.move_roll_deg) > 10:
            problems.append(
                f"move_roll_deg: expected within +-10 degrees, got {self.move_roll_deg}"
            )
        if self.cover_at_s is not None and self.cover_at_s < _COVER_SLIDE_S:
            problems.append(
                f"cover_at_s: expected >= {_COVER_SLIDE_S} s (the cover slides in), "
                f"got {self.cover_at_s}"
            )
        if not self.cover_s > 0:
            problems.append(f"cover_s: expected > 0, got {self.cover_s}")
        if problems:
            raise ValueError("synthetic scene: " + "; ".join(problems))


@dataclass(frozen=True)
class ActorTruth:
    track_id: int
    class_id: int
    box: Box


@dataclass(frozen=True)
class FrameTruth:
    index: int
    t: float
    actors: tuple[ActorTruth, ...]
    object_box: Box | None = None
    light: float = 1.0

    def detections(self, *, confidence: float = 0.9, object_class: int | None = None) -> Detections:
        """What a perfect detector and tracker would report; the bag on the ground as
        `object_class` (e.g. 26 handbag) when given, else not at all (class-agnostic path)."""
        rows = [(a.box, a.class_id, a.track_id, confidence) for a in self.actors]
        if object_class is not None and self.object_box is not None:
            # Track ids of objects do not matter to the dumping logic; keep them apart.
            rows.append((self.object_box, object_class, 1000, 0.6))
        return Detections.from_rows(rows)


@dataclass(frozen=True)
class FixtureTruth:
    """An object that belongs in the scene, with a ground outline to use as a fixture zone."""

    name: str
    box: Box
    polygon: tuple[tuple[float, float], ...]


@dataclass(frozen=True)
class ViewChangeTruth:
    """The camera's picture stopped showing its usual view: turned away (`moved`, from `at`
    on; `until` None, it stays so) or covered from `at` until `until`."""

    at: float
    until: float | None
    condition: ViewCondition


@dataclass(frozen=True)
class SceneTruth:
    spec: SceneSpec
    drop_at: float | None
    removed_at: float | None
    removed_by: int | None
    object_box: Box | None
    owner_track_id: int | None
    owner_left_at: float | None
    owner_back_at: float | None
    fixtures: tuple[FixtureTruth, ...]
    frames: tuple[FrameTruth, ...] = field(repr=False)
    view_changes: tuple[ViewChangeTruth, ...] = ()

    def expects_event(self, dwell_s: float) -> bool:
        """Whether the bag lay unattended for at least `dwell_s` (owner away, still there)."""
        if self.drop_at is None or self.owner_left_at is None:
            return False
        ends = [t for t in (self.owner_back_at, self.removed_at) if t is not None]
        last = self.frames[-1].t if self.frames else self.drop_at
        return min([*ends, last]) - self.owner_left_at >= dwell_s

    def camera_zones(self, dwell_s: float) -> list[dict[str, Any]]:
        """The zones a deployer would draw on this scene, in the settings' shape: the
        pavement watched (the road above the kerb is not), the street furniture as fixtures."""
        zones: list[dict[str, Any]] = [
            {"id": "pavement", "kind": "watch", "dwell_s": dwell_s,
             "polygon": [[0.0, 0.46], [1.0, 0.46], [1.0, 1.0], [0.0, 1.0]]},
        ]  # fmt: skip
        for f in self.fixtures:
            polygon = [[round(min(1.0, max(0.0, v)), 4) for v in p] for p in f.polygon]
            zones.append({"id": f.name, "kind": "fixture", "polygon": polygon})
        return zones

    def to_dict(self) -> dict[str, Any]:
        return {
            "spec": asdict(self.spec),
            "drop_at": self.drop_at,
            "removed_at": self.removed_at,
            "removed_by": self.removed_by,
            "object_box": _plain_box(self.object_box),
            "owner_track_id": self.owner_track_id,
            "owner_left_at": self.owner_left_at,
            "owner_back_at": self.owner_back_at,
            "fixtures": [
                {"name": f.name, "box": _plain_box(f.box), "polygon": [list(p) for p in f.polygon]}
                for f in self.fixtures
            ],
            "frames": [
                {
                    "index": f.index,
                    "t": f.t,
                    "light": f.light,
                    "object_box": _plain_box(f.object_box),
                    "actors": [
                        {"track_id": a.track_id, "class_id": a.class_id, "box": _plain_box(a.box)}
                        for a in f.actors
                    ],
                }
                for f in self.frames
            ],
            "view_changes": [
                {"at": v.at, "until": v.until, "condition": v.condition} for v in self.view_changes
            ],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SceneTruth:
        return cls(
            spec=SceneSpec(**data["spec"]),
            drop_at=data["drop_at"],
            removed_at=data["removed_at"],
            removed_by=data["removed_by"],
            object_box=_box_or_none(data["object_box"]),
            owner_track_id=data["owner_track_id"],
            owner_left_at=data["owner_left_at"],
            owner_back_at=data["owner_back_at"],
            fixtures=tuple(
                FixtureTruth(
                    name=f["name"],
                    box=_box(f["box"]),
                    polygon=tuple((float(x), float(y)) for x, y in f["polygon"]),
                )
                for f in data["fixtures"]
            ),
            frames=tuple(
                FrameTruth(
                    index=f["index"],
                    t=f["t"],
                    light=f["light"],
                    object_box=_box_or_none(f["object_box"]),
                    actors=tuple(
                        ActorTruth(a["track_id"], a["class_id"], _box(a["box"]))
                        for a in f["actors"]
                    ),
                )
                for f in data["frames"]
            ),
            view_changes=tuple(
                ViewChangeTruth(
                    at=float(v["at"]),
                    until=None if v["until"] is None else float(v["until"]),
                    condition=_view_condition(v["condition"]),
                )
                for v in data.get("view_changes", ())
            ),
        )


@dataclass(frozen=True)
class SyntheticFrame:
    t: float
    image: Image
    truth: FrameTruth


def _plain_box(box: Box | None) -> list[float] | None:
    return None if box is None else [float(v) for v in box]


def _box(values: Sequence[float]) -> Box:
    x1, y1, x2, y2 = (float(v) for v in values)
    return (x1, y1, x2, y2)


def _box_or_none(values: Sequence[float] | None) -> Box | None:
    return None if values is None else _box(values)


def _view_condition(value: Any) -> ViewCondition:
    if value == "moved":
        return "moved"
    if value == "covered":
        return "covered"
    raise ValueError(
        f"view change: expected a condition in {get_args(ViewCondition)}, got {value!r}"
    )


# --------------------------------------------------------------------------- drawing

_Colour = tuple[int, int, int]


@dataclass(frozen=True)
class _Op:
    """One drawing primitive in frame pixels (floats; rounded when drawn)."""

    shape: Literal["line", "rect", "circle", "ellipse", "poly"]
    points: tuple[tuple[float, float], ...]
    size: float
    colour: _Colour


def _draw(canvas: Image, ops: Sequence[_Op], offset: tuple[float, float] = (0.0, 0.0), *,
          colour: _Colour | None = None) -> None:  # fmt: skip
    ox, oy = offset

    def pt(p: tuple[float, float]) -> tuple[int, int]:
        return round(p[0] - ox), round(p[1] - oy)

    for op in ops:
        c = colour or op.colour
        if op.shape == "line":
            cv2.line(canvas, pt(op.points[0]), pt(op.points[1]), c, max(1, round(op.size)))
        elif op.shape == "rect":
            cv2.rectangle(canvas, pt(op.points[0]), pt(op.points[1]), c, -1)
        elif op.shape == "circle":
            cv2.circle(canvas, pt(op.points[0]), max(1, round(op.size)), c, -1)
        elif op.shape == "ellipse":
            (cx, cy), (ax, ay) = pt(op.points[0]), op.points[1]
            cv2.ellipse(canvas, (cx, cy), (max(1, round(ax)), max(1, round(ay))), 0, 0, 360, c, -1)
        else:
            cv2.fillPoly(canvas, [np.array([pt(p) for p in op.points], dtype=np.int32)], c)


def _extent(ops: Sequence[_Op], anchor: tuple[float, float], reach: float) -> Box | None:
    """Exact pixel box of what `ops` draw, measured by drawing them on a small mask."""
    size = max(8, math.ceil(2 * reach))
    ox, oy = anchor[0] - reach, anchor[1] - reach
    mask = np.zeros((size, size), dtype=np.uint8)
    _draw(mask, ops, (ox, oy), colour=(255, 255, 255))
    ys, xs = np.nonzero(mask)
    if xs.size == 0:
        return None
    return (
        float(xs.min() + round(ox)),
        float(ys.min() + round(oy)),
        float(xs.max() + 1 + round(ox)),
        float(ys.max() + 1 + round(oy)),
    )


def _clip(box: Box, width: int, height: int) -> Box | None:
    x1, y1 = max(0.0, box[0]), max(0.0, box[1])
    x2, y2 = min(float(width), box[2]), min(float(height), box[3])
    if x2 - x1 < 1 or y2 - y1 < 1:
        return None
    return (x1, y1, x2, y2)


def _person_ops(x: float, foot_y: float, hp: float, phase: float, shirt: _Colour) -> list[_Op]:
    swing = math.sin(phase)
    leg = max(2.0, 0.09 * hp)
    hip_y = foot_y - 0.48 * hp
    shoulder_y = foot_y - 0.80 * hp
    ops: list[_Op] = []
    for side in (-1.0, 1.0):
        foot_x = x + side * (0.04 * hp + 0.16 * hp * swing)
        ops.append(
            _Op("line", ((x + side * 0.03 * hp, hip_y), (foot_x, foot_y - leg / 2)), leg, _TROUSERS)
        )
    ops.append(
        _Op("rect", ((x - 0.12 * hp, shoulder_y), (x + 0.12 * hp, hip_y + 0.04 * hp)), 0, shirt)
    )
    arm = max(2.0, 0.06 * hp)
    for side in (-1.0, 1.0):
        hand_x = x + side * 0.15 * hp - side * 0.12 * hp * swing
        shoulder = (x + side * 0.12 * hp, shoulder_y + 0.04 * hp)
        ops.append(_Op("line", (shoulder, (hand_x, foot_y - 0.44 * hp)), arm, shirt))
    ops.append(_Op("circle", ((x, foot_y - 0.90 * hp),), 0.08 * hp, _SKIN))
    return ops


def _bag_ops(cx: float, bottom_y: float, hp: float) -> list[_Op]:
    w, h = BAG_W_HEIGHTS * hp, BAG_H_HEIGHTS * hp
    cy = bottom_y - h / 2
    knot_top = bottom_y - h - 0.06 * hp
    return [
        _Op("ellipse", ((cx, cy), (w / 2, h / 2)), 0, _BAG),
        _Op(
            "poly",
            ((cx - 0.05 * hp, cy - h * 0.35), (cx + 0.05 * hp, cy - h * 0.35), (cx, knot_top)),
            0,
            _BAG,
        ),
        _Op("ellipse", ((cx - w * 0.18, cy - h * 0.12), (w * 0.12, h * 0.08)), 0, _BAG_SHINE),
    ]


# --------------------------------------------------------------------------- script


@dataclass(frozen=True)
class _Walker:
    track_id: int
    shirt: _Colour
    keys: tuple[tuple[float, float], ...]  # (t, foot x): linear between keys, absent outside
    carries: tuple[tuple[float, float], ...]  # [from, to) while a bag hangs from the hand

    def at(self, t: float) -> tuple[float, float, float] | None:
        """(foot x, gait phase in walked distance, facing ±1), or None when not in the scene."""
        if t < self.keys[0][0] or t > self.keys[-1][0]:
            return None
        walked = 0.0
        facing = 1.0
        for (t0, x0), (t1, x1) in zip(self.keys, self.keys[1:], strict=False):
            if x1 != x0:
                facing = math.copysign(1.0, x1 - x0)
            if t <= t1:
                f = 0.0 if t1 == t0 else (t - t0) / (t1 - t0)
                return x0 + f * (x1 - x0), walked + f * abs(x1 - x0), facing
            walked += abs(x1 - x0)
        return self.keys[-1][1], walked, facing

    def carrying(self, t: float) -> bool:
        return any(a <= t < b for a, b in self.carries)


@dataclass(frozen=True)
class _Script:
    walkers: tuple[_Walker, ...]
    bag_x: float | None
    drop_at: float | None
    removed_at: float | None
    removed_by: int | None
    owner_left_at: float | None
    owner_back_at: float | None
    duration_s: float


def _script(spec: SceneSpec) -> _Script:
    w = float(spec.width)
    hp = PERSON_HEIGHT_FRAC * spec.height
    speed = WALK_SPEED_HEIGHTS * hp
    x_in, x_out = -0.4 * hp, w + 0.4 * hp
    enter = spec.enter_s
    stop_x = spec.drop_x * w
    arrive = enter + (stop_x - x_in) / speed
    drop_at = arrive + _STOOP_BEFORE_S
    leave = drop_at + _STOOP_AFTER_S
    # Walking right, the bag goes down beside the trailing foot, so the owner walks away
    # from it rather than over it.
    bag_x = stop_x - 0.30 * hp
    end = math.inf

    keys: tuple[tuple[float, float], ...]

    def exit_after(t: float, x: float, to: float) -> tuple[float, float]:
        return t + abs(to - x) / speed, to

    if spec.scenario == "empty":
        return _Script((), None, None, None, None, None, None, spec.duration_s or 40.0)

    if spec.scenario in ("stand_still", "walk_through"):
        pause = spec.stand_s if spec.scenario == "stand_still" else 5.0
        keys = ((enter, x_in), (arrive, stop_x), (arrive + pause, stop_x))
        keys += (exit_after(arrive + pause, stop_x, x_out),)
        carries = ((enter, end),) if spec.scenario == "walk_through" else ()
        walker = _Walker(1, _OWNER_SHIRT, keys, carries)
        return _Script(
            (walker,), None, None, None, None, None, None, spec.duration_s or keys[-1][0] + 3.0
        )

    if spec.scenario == "passers_by":
        duration = spec.duration_s or 60.0
        passers: list[_Walker] = []
        start = enter
        while start < duration:
            k = len(passers)
            ends = (x_in, x_out) if k % 2 == 0 else (x_out, x_in)
            keys = ((start, ends[0]), exit_after(start, *ends))
            shirt = _PASSER_SHIRTS[k % len(_PASSER_SHIRTS)]
            passers.append(_Walker(k + 1, shirt, keys, ()))
            start += _PASS_EVERY_S
        return _Script(tuple(passers), None, None, None, None, None, None, duration)

    leave_keys: tuple[tuple[float, float], ...] = ((enter, x_in), (arrive, stop_x), (leave, stop_x))
    if spec.scenario == "drop_and_leave":
        keys = (*leave_keys, exit_after(leave, stop_x, x_out))
        owner = _Walker(1, _OWNER_SHIRT, keys, ((enter, drop_at),))
        duration = spec.duration_s or drop_at + 45.0
        return _Script((owner,), bag_x, drop_at, None, None, leave, None, duration)

    if spec.scenario == "drop_and_pickup":
        pickup_at = drop_at + spec.away_s
        back_at = pickup_at - _STOOP_BEFORE_S
        # Walk off to the right while staying in view (same track id), wait, come back.
        far_x = min(stop_x + speed * max(1.0, (spec.away_s - 2.0) / 2), w - 0.4 * hp)
        walk = (far_x - stop_x) / speed
        turn_at = max(leave + walk, back_at - walk)
        keys = (
            *leave_keys,
            (leave + walk, far_x),
            (turn_at, far_x),
            (turn_at + walk, stop_x),
            (pickup_at + _STOOP_AFTER_S, stop_x),
        )
        keys += (exit_after(keys[-1][0], stop_x, x_in),)
        owner = _Walker(1, _OWNER_SHIRT, keys, ((enter, drop_at), (pickup_at, end)))
        duration = spec.duration_s or pickup_at + 8.0
        return _Script((owner,), bag_x, drop_at, pickup_at, 1, leave, turn_at + walk, duration)

    # drop_and_clean: the owner leaves; later a cleaner walks in from the right for it.
    keys = (*leave_keys, exit_after(leave, stop_x, x_out))
    owner = _Walker(1, _OWNER_SHIRT, keys, ((enter, drop_at),))
    pickup_at = drop_at + spec.clean_after_s
    cleaner_x = bag_x + 0.30 * hp
    arrive_c = pickup_at - _STOOP_BEFORE_S
    start_c = arrive_c - (x_out - cleaner_x) / speed
    keys_c: tuple[tuple[float, float], ...] = (
        (start_c, x_out),
        (arrive_c, cleaner_x),
        (pickup_at + _STOOP_AFTER_S, cleaner_x),
    )
    keys_c += (exit_after(keys_c[-1][0], cleaner_x, x_out),)
    cleaner = _Walker(2, _CLEANER_SHIRT, keys_c, ((pickup_at, end),))
    duration = spec.duration_s or pickup_at + 8.0
    return _Script((owner, cleaner), bag_x, drop_at, pickup_at, 2, leave, None, duration)


# --------------------------------------------------------------------------- scene


class SyntheticScene:
    """One deterministic clip: `truth` without rendering, `frames()` with the pictures."""

    def __init__(self, spec: SceneSpec | None = None) -> None:
        self.spec = spec or SceneSpec()
        self._script = _script(self.spec)
        self._hp = PERSON_HEIGHT_FRAC * self.spec.height
        self._foot_y = self.spec.ground_y * self.spec.height
        self._reach = 1.3 * self._hp

    def __len__(self) -> int:
        return max(1, round(self._script.duration_s * self.spec.fps))

    def time_of(self, index: int) -> float:
        return self.spec.start_at + index / self.spec.fps

    # ------------------------------------------------------------------ truth

    @cached_property
    def truth(self) -> SceneTruth:
        s, start = self._script, self.spec.start_at

        def shifted(t: float | None) -> float | None:
            return None if t is None else start + t

        return SceneTruth(
            spec=self.spec,
            drop_at=shifted(s.drop_at),
            removed_at=shifted(s.removed_at),
            removed_by=s.removed_by,
            object_box=self._object_box,
            owner_track_id=1 if s.drop_at is not None else None,
            owner_left_at=shifted(s.owner_left_at),
            owner_back_at=shifted(s.owner_back_at),
            fixtures=self._fixtures,
            frames=tuple(self._frame_truth(i) for i in range(len(self))),
            view_changes=self._view_changes,
        )

    @cached_property
    def _view_changes(self) -> tuple[ViewChangeTruth, ...]:
        spec, start, d = self.spec, self.spec.start_at, self._script.duration_s
        changes = []
        if spec.move_at_s is not None and spec.move_at_s < d:
            changes.append(ViewChangeTruth(start + spec.move_at_s, None, "moved"))
        if spec.cover_at_s is not None and spec.cover_at_s < d:
            until = spec.cover_at_s + spec.cover_s
            changes.append(
                ViewChangeTruth(start + spec.cover_at_s, start + until if until < d else None,
                                "covered")
            )  # fmt: skip
        return tuple(sorted(changes, key=lambda v: v.at))

    @cached_property
    def _object_box(self) -> Box | None:
        if self._script.bag_x is None:
            return None
        ops = _bag_ops(self._script.bag_x, self._foot_y, self._hp)
        return _extent(ops, (self._script.bag_x, self._foot_y), self._reach)

    def _on_ground(self, t: float) -> bool:
        s = self._script
        if s.drop_at is None or t < s.drop_at:
            return False
        return s.removed_at is None or t < s.removed_at

    def _person(self, walker: _Walker, t: float) -> tuple[list[_Op], list[_Op]] | None:
        """(body ops, carried bag ops) of a walker at scene time t."""
        state = walker.at(t)
        if state is None:
            return None
        x, walked, facing = state
        stride = 0.8 * self._hp
        phase = 2 * math.pi * walked / stride
        body = _person_ops(x, self._foot_y, self._hp, phase, walker.shirt)
        bag: list[_Op] = []
        if walker.carrying(t):
            hand_x = x - facing * 0.24 * self._hp
            bag = _bag_ops(hand_x, self._foot_y - 0.22 * self._hp, self._hp)
        return body, bag

    def _frame_truth(self, index: int) -> FrameTruth:
        t = index / self.spec.fps
        warp, covered = self._warp(t), self._covered(t)
        actors = []
        for walker in self._script.walkers:
            drawn = self._person(walker, t)
            if drawn is None:
                continue
            x = walker.at(t)
            assert x is not None
            if warp is None and covered == 0.0:
                box = _extent(drawn[0], (x[0], self._foot_y - 0.5 * self._hp), self._reach)
                box = None if box is None else _clip(box, self.spec.width, self.spec.height)
            else:
                box = self._seen_box(drawn[0], warp, covered)
            if box is not None:
                actors.append(ActorTruth(walker.track_id, PERSON, box))
        object_box = self._object_box if self._on_ground(t) else None
        if object_box is not None and (warp is not None or covered > 0.0):
            assert self._script.bag_x is not None
            bag = _bag_ops(self._script.bag_x, self._foot_y, self._hp)
            object_box = self._seen_box(bag, warp, covered)
        return FrameTruth(
            index=index,
            t=self.time_of(index),
            actors=tuple(actors),
            object_box=object_box,
            light=self._light(t)[0],
        )

    def _seen_box(
        self, ops: Sequence[_Op], warp: npt.NDArray[np.float64] | None, covered: float
    ) -> Box | None:
        """Pixel box of what `ops` draw as the camera shows it: turned by `warp`, with the
        left `covered` share of the width hidden."""
        w, h = self.spec.width, self.spec.height
        mask = np.zeros((h, w), dtype=np.uint8)
        _draw(mask, ops, colour=(255, 255, 255))
        if warp is not None:
            mask = np.asarray(cv2.warpAffine(mask, warp, (w, h)), dtype=np.uint8)
        mask[:, : self._cover_edge(covered)] = 0
        ys, xs = np.nonzero(mask >= 128)
        if xs.size == 0:
            return None
        return (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))

    # ------------------------------------------------------------------ the camera itself

    def _warp(self, t: float) -> npt.NDArray[np.float64] | None:
        """The affine map from the scene to the picture at scene time t; None while the
        camera looks where it always did."""
        spec = self.spec
        if spec.move_at_s is None or t < spec.move_at_s:
            return None
        k = min(1.0, (t - spec.move_at_s) / _MOVE_EASE_S)
        k = k * k * (3.0 - 2.0 * k)  # smoothstep: the camera starts and stops gently
        w, h = spec.width, spec.height
        warp = cv2.getRotationMatrix2D((w / 2, h / 2), spec.move_roll_deg * k, 1.0)
        warp[0, 2] -= spec.move_shift * w * k
        return np.asarray(warp, dtype=np.float64)

    def _covered(self, t: float) -> float:
        """Share of the width covered at scene time t (the cover slides in from the left)."""
        spec = self.spec
        if spec.cover_at_s is None:
            return 0.0
        start, end = spec.cover_at_s, spec.cover_at_s + spec.cover_s
        if t < start - _COVER_SLIDE_S or t >= end + _COVER_SLIDE_S:
            return 0.0
        if t < start:
            return 1.0 - (start - t) / _COVER_SLIDE_S
        if t < end:
            return 1.0
        return 1.0 - (t - end) / _COVER_SLIDE_S

    def _cover_edge(self, covered: float) -> int:
        return round(covered * self.spec.width)

    @cached_property
    def _cover_image(self) -> Image:
        """What the lens sees through a hand or a cloth: dark, smooth, a little shaded."""
        w, h = self.spec.width, self.spec.height
        rng = np.random.default_rng([self.spec.seed, 4])
        grain = rng.normal(0.0, 1.0, (h, w)).astype(np.float32)
        smooth = np.asarray(cv2.GaussianBlur(grain, (0, 0), 0.15 * w), dtype=np.float32)
        smooth *= _COVER_SHADING / max(float(smooth.std()), 1e-6)
        shade = np.array((1.0, 0.92, 1.06), dtype=np.float32)  # a faintly warm skin-dark tone
        cover = (_COVER_GREY + smooth)[..., None] * shade
        return np.asarray(np.clip(np.rint(cover), 0, 255), dtype=np.uint8)

    # ------------------------------------------------------------------ pictures

    @cached_property
    def _fixtures(self) -> tuple[FixtureTruth, ...]:
        w, h = self.spec.width, self.spec.height
        g = self.spec.ground_y
        pole = (0.12 * w, 0.12 * h, 0.135 * w, (g + 0.03) * h)
        bin_ = (0.80 * w, (g - 0.2) * h, 0.88 * w, (g + 0.04) * h)

        def outline(box: Box) -> tuple[tuple[float, float], ...]:
            x1, x2 = box[0] / w - 0.02, box[2] / w + 0.02
            y1, y2 = box[3] / h - 0.08, min(1.0, box[3] / h + 0.04)
            return ((x1, y1), (x2, y1), (x2, y2), (x1, y2))

        return (FixtureTruth("pole", pole, outline(pole)), FixtureTruth("bin", bin_, outline(bin_)))

    @cached_property
    def background(self) -> Image:
        """The empty scene at full light: road, kerb, tiled pavement, a pole and a bin."""
        w, h = self.spec.width, self.spec.height
        rng = np.random.default_rng([self.spec.seed, 1])
        canvas = np.zeros((h, w, 3), dtype=np.float32)
        road_bottom, kerb_bottom = round(0.42 * h), round(0.46 * h)
        canvas[:road_bottom] = (72, 74, 76)
        canvas[road_bottom:kerb_bottom] = (172, 174, 170)
        canvas[kerb_bottom:] = (128, 133, 138)
        # Tiles of slightly different shade with darker joints: texture for the models to
        # keep, like real paving.
        tile = max(8, round(0.08 * w))
        for ty in range(kerb_bottom, h, tile // 2):
            for tx in range(-(ty // (tile // 2) % 2) * tile // 2, w, tile):
                shade = float(rng.uniform(-8, 8))
                canvas[ty : ty + tile // 2, max(0, tx) : tx + tile] += shade
                canvas[ty : ty + 1, max(0, tx) : tx + tile] -= 22
                canvas[ty : ty + tile // 2, max(0, tx) : max(0, tx) + 1] -= 22
        for x in range(0, w, round(0.12 * w)):
            y0 = round(0.2 * h)
            canvas[y0 : y0 + max(1, round(0.012 * h)), x : x + round(0.06 * w)] = (196, 198, 200)
        grain = rng.normal(0.0, 5.0, (h, w, 1)).astype(np.float32)
        canvas += cv2.GaussianBlur(grain, (0, 0), 1.2)[..., None]
        image = np.clip(canvas, 0, 200).astype(np.uint8)
        for fixture in self._fixtures:
            x1, y1, x2, y2 = (round(v) for v in fixture.box)
            if fixture.name == "pole":
                cv2.rectangle(image, (x1, y1), (x2 - 1, y2 - 1), (62, 60, 60), -1)
                sign = round(0.03 * w)
                cv2.rectangle(image, (x1 - sign, y1), (x2 + sign, y1 + sign), (150, 85, 25), -1)
            else:
                cv2.rectangle(image, (x1, y1), (x2 - 1, y2 - 1), (45, 115, 50), -1)
                cv2.rectangle(image, (x1 - 2, y1), (x2 + 1, y1 + max(2, (y2 - y1) // 8)),
                              (30, 80, 35), -1)  # fmt: skip
        return image

    @cached_property
    def _noise(self) -> list[npt.NDArray[np.int16]]:
        """A few noise fields; each frame takes one at a random offset (cheap, and no two
        neighbouring frames share their noise)."""
        if self._noise_sigma == 0:
            return []
        rng = np.random.default_rng([self.spec.seed, 2])
        shape = (self.spec.height + _NOISE_PAD, self.spec.width + _NOISE_PAD, 3)
        return [
            np.rint(rng.normal(0.0, self._noise_sigma, shape)).astype(np.int16)
            for _ in range(_NOISE_BANK)
        ]

    @cached_property
    def _noise_sigma(self) -> float:
        gain = _NIGHT_NOISE_GAIN if self.spec.lighting == "night" else 1.0
        return self.spec.noise_sigma * gain

    @cached_property
    def _night_light(self) -> npt.NDArray[np.float32]:
        """Per-pixel BGR gain of the night street: lamp pools on the pavement, warm sodium
        light in them, a faint bluish light elsewhere."""
        w, h = self.spec.width, self.spec.height
        ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
        pool = np.zeros((h, w), dtype=np.float32)
        centre_y = (self.spec.ground_y - 0.08) * h
        for lamp_x in _NIGHT_LAMPS_X:
            dx, dy = (xs - lamp_x * w) / (0.13 * w), (ys - centre_y) / (0.25 * h)
            pool = np.maximum(pool, np.exp(-0.5 * (dx * dx + dy * dy)))
        ambient = _NIGHT_AMBIENT * np.array((1.1, 1.0, 0.9), dtype=np.float32)
        lamp = _NIGHT_LAMP_GAIN * np.array((0.75, 0.95, 1.2), dtype=np.float32)
        return np.asarray(ambient + pool[..., None] * lamp, dtype=np.float32)

    def _light(self, t: float) -> tuple[float, tuple[float, float, float]]:
        """(gain, per-channel BGR tint) at scene time t; at night the mean gain of the lamp-lit
        picture (see `_night_light`)."""
        d = self._script.duration_s
        if self.spec.lighting == "night":
            return float(self._night_light.mean()), (1.0, 1.0, 1.0)
        if self.spec.lighting == "dusk":
            # Compressed into the clip: real dusk takes half an hour, not a minute.
            k = min(1.0, max(0.0, (t - 0.1 * d) / (0.8 * d)))
            return 1.0 - 0.65 * k, (1.0 + 0.08 * k, 1.0, 1.0 - 0.08 * k)
        if self.spec.lighting == "cloud" and 0.35 * d <= t < 0.7 * d:
            return 0.55, (1.0, 1.0, 1.0)
        return 1.0, (1.0, 1.0, 1.0)

    def render(self, index: int) -> Image:
        """Frame `index` as a BGR image."""
        t = index / self.spec.fps
        canvas = self.background.copy()
        if self._on_ground(t) and self._script.bag_x is not None:
            _draw(canvas, _bag_ops(self._script.bag_x, self._foot_y, self._hp))
        carried: list[_Op] = []
        for walker in self._script.walkers:
            drawn = self._person(walker, t)
            if drawn is not None:
                _draw(canvas, drawn[0])
                carried += drawn[1]
        _draw(canvas, carried)
        warp = self._warp(t)
        if warp is not None:
            canvas = self._turned(canvas, warp)
        gain, tint = self._light(t)
        out = canvas
        if self.spec.lighting == "night":
            lit = canvas.astype(np.float32) * self._night_light
            out = np.clip(np.rint(lit), 0, 255).astype(np.uint8)
        elif gain != 1.0 or tint != (1.0, 1.0, 1.0):
            scale = np.diag(np.array(tint, dtype=np.float32) * np.float32(gain))
            out = np.asarray(cv2.transform(canvas, scale), dtype=np.uint8)
        edge = self._cover_edge(self._covered(t))
        if edge > 0:
            out = out.copy() if out is canvas else out
            out[:, :edge] = self._cover_image[:, :edge]
        if self._noise:
            rng = np.random.default_rng([self.spec.seed, 3, index])
            bank = self._noise[int(rng.integers(len(self._noise)))]
            dy, dx = (int(v) for v in rng.integers(0, _NOISE_PAD, 2))
            noise = bank[dy : dy + self.spec.height, dx : dx + self.spec.width]
            out = np.asarray(cv2.add(out, noise, dtype=cv2.CV_8U), dtype=np.uint8)
        return out

    def _turned(self, canvas: Image, warp: npt.NDArray[np.float64]) -> Image:
        """The picture of a turned camera. Beyond the old picture's edge it now sees more
        street: the empty background continues there (never a mirrored person)."""
        w, h = self.spec.width, self.spec.height
        flags, reflect = cv2.INTER_LINEAR, cv2.BORDER_REFLECT101
        picture = cv2.warpAffine(canvas, warp, (w, h), flags=flags, borderMode=reflect)
        beyond = cv2.warpAffine(self.background, warp, (w, h), flags=flags, borderMode=reflect)
        inside = cv2.warpAffine(np.full((h, w), 255, np.uint8), warp, (w, h), flags=flags,
                                borderMode=cv2.BORDER_CONSTANT, borderValue=0)  # fmt: skip
        return np.asarray(np.where(inside[..., None] >= 128, picture, beyond), dtype=np.uint8)

    def frames(self) -> Iterator[SyntheticFrame]:
        truths = self.truth.frames
        for index in range(len(self)):
            yield SyntheticFrame(self.time_of(index), self.render(index), truths[index])


def write_scene(
    scene: SyntheticScene, directory: Path, name: str | None = None
) -> tuple[Path, Path]:
    """Write the clip as `<name>.mp4` (mp4v) and its ground truth as `<name>.yaml`."""
    spec = scene.spec
    stem = name or f"{spec.scenario}-{spec.lighting}-{spec.seed}"
    directory.mkdir(parents=True, exist_ok=True)
    video, truth = directory / f"{stem}.mp4", directory / f"{stem}.yaml"
    fourcc = cv2.VideoWriter.fourcc(*"mp4v")
    writer = cv2.VideoWriter(str(video), fourcc, spec.fps, (spec.width, spec.height))
    if not writer.isOpened():
        raise OSError(f"cannot write {video}: OpenCV has no mp4v encoder here")
    try:
        for frame in scene.frames():
            writer.write(frame.image)
    finally:
        writer.release()
    truth.write_text(yaml.safe_dump(scene.truth.to_dict(), sort_keys=False), encoding="utf-8")
    log.info("synthetic scene %s: %d frames written to %s", stem, len(scene), video)
    return video, truth


def read_truth(path: Path) -> SceneTruth:
    """Ground truth written by `write_scene`."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or "spec" not in data:
        raise ValueError(f"{path}: expected a synthetic scene's ground truth, got {type(data)}")
    return SceneTruth.from_dict(data)


# --------------------------------------------------------------------------- entry point


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m detectors.evaluation.synthetic OUT_DIR`: one scene as `<name>.mp4` and
    `<name>.yaml`; prints the video's path."""
    parser = argparse.ArgumentParser(
        prog="python -m detectors.evaluation.synthetic",
        description="render one synthetic street scene and its ground truth",
    )
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--name", help="file name without suffix (default: scenario-lighting-seed)")
    parser.add_argument("--scenario", choices=get_args(Scenario), default="drop_and_leave")
    parser.add_argument("--lighting", choices=get_args(Lighting), default="steady")
    parser.add_argument(
        "--duration", type=float, help="seconds of video (default: the scenario's own length)"
    )
    parser.add_argument(
        "--drop-x", type=float, default=0.45, help="where the bag goes down (fraction of width)"
    )
    parser.add_argument(
        "--enter-s", type=float, default=1.0, help="seconds before the first person walks in"
    )
    parser.add_argument(
        "--move-at", type=float, help="seconds into the clip the camera is turned a few degrees"
    )
    parser.add_argument("--cover-at", type=float, help="seconds into the clip the lens is covered")
    parser.add_argument("--cover-s", type=float, default=10.0, help="how long it stays covered")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        spec = SceneSpec(
            scenario=args.scenario,
            lighting=args.lighting,
            duration_s=args.duration,
            drop_x=args.drop_x,
            enter_s=args.enter_s,
            seed=args.seed,
            move_at_s=args.move_at,
            cover_at_s=args.cover_at,
            cover_s=args.cover_s,
        )
        video, _ = write_scene(SyntheticScene(spec), args.out_dir, args.name)
    except (ValueError, OSError) as exc:
        print(f"{parser.prog}: {exc}", file=sys.stderr)
        return 2
    print(video)
    return 0


if __name__ == "__main__":
    sys.exit(main())
