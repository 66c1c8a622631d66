"""Zones of a camera's view: where dumping is watched, what belongs there, what to ignore.

Corners are [x, y] fractions of the frame, so one zone file serves every resolution a
camera is sampled at. A box belongs to a zone when its bottom-centre does: that is where an
object touches the ground, and the ground is what a zone outlines. Pure numpy, no OpenCV.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from pantau.settings import CameraSettings, ZoneSettings

ZoneKind = Literal["watch", "fixture", "ignore"]
ZONE_KINDS: tuple[ZoneKind, ...] = ("watch", "fixture", "ignore")

# Matches ZoneSettings.dwell_s: half a minute unattended is longer than anyone puts a bag down
# to tie a shoe, and short enough for field staff to catch the vehicle.
DEFAULT_DWELL_S = 30.0

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True, eq=False)
class Zone:
    """One polygon; `id` None is the implicit whole-frame watch zone of a camera without any."""

    id: str | None
    kind: ZoneKind
    polygon: FloatArray
    dwell_s: float = DEFAULT_DWELL_S
    name: str = ""

    def __post_init__(self) -> None:
        polygon = np.array(self.polygon, dtype=np.float64, copy=True)
        if polygon.ndim != 2 or polygon.shape[1] != 2 or polygon.shape[0] < 3:
            raise ValueError(
                f"zone {self.id}: expected polygon of shape (K>=3, 2) as [x, y] fractions, "
                f"got {polygon.shape}"
            )
        if not np.isfinite(polygon).all() or polygon.min() < 0.0 or polygon.max() > 1.0:
            raise ValueError(
                f"zone {self.id}: expected corners as fractions of the frame (0..1), "
                f"got values from {polygon.min()} to {polygon.max()}"
            )
        if self.kind not in ZONE_KINDS:
            raise ValueError(f"zone {self.id}: expected kind in {ZONE_KINDS}, got {self.kind!r}")
        if not self.dwell_s > 0:
            raise ValueError(f"zone {self.id}: expected dwell_s > 0, got {self.dwell_s}")
        polygon.setflags(write=False)
        object.__setattr__(self, "polygon", polygon)

    @classmethod
    def from_settings(cls, zone: ZoneSettings) -> Zone:
        return cls(
            id=zone.id,
            kind=zone.kind,
            polygon=np.asarray(zone.polygon, dtype=np.float64),
            dwell_s=zone.dwell_s,
            name=zone.name,
        )

    @classmethod
    def whole_frame(cls, dwell_s: float = DEFAULT_DWELL_S) -> Zone:
        corners = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
        return cls(id=None, kind="watch", polygon=corners, dwell_s=dwell_s)

    def contains(self, xyxy: npt.ArrayLike, width: int, height: int) -> BoolArray:
        """Which boxes (frame pixels, shape (N, 4)) have their bottom-centre in this zone."""
        return in_zone(xyxy, self, width, height)


def _as_boxes(xyxy: npt.ArrayLike) -> FloatArray:
    boxes = np.asarray(xyxy, dtype=np.float64)
    if boxes.size == 0:
        return np.zeros((0, 4), dtype=np.float64)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"xyxy: expected shape (N, 4), got {boxes.shape}")
    return boxes


def _check_size(width: int, height: int) -> None:
    if width <= 0 or height <= 0:
        raise ValueError(f"frame size: expected positive width and height, got {width}x{height}")


def bottom_centres(xyxy: npt.ArrayLike) -> FloatArray:
    """The ground point of each box: (x1 + x2) / 2, y2. Shape (N, 2)."""
    boxes = _as_boxes(xyxy)
    return np.stack([(boxes[:, 0] + boxes[:, 2]) / 2.0, boxes[:, 3]], axis=1)


def points_in_polygon(points: npt.ArrayLike, polygon: npt.ArrayLike) -> BoolArray:
    """Even-odd rule, vectorised over the points; works for concave polygons too."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    poly = np.asarray(polygon, dtype=np.float64)
    x, y = pts[:, 0], pts[:, 1]
    inside = np.zeros(len(pts), dtype=np.bool_)
    for (x1, y1), (x2, y2) in zip(poly, np.roll(poly, -1, axis=0), strict=True):
        crosses = (y1 > y) != (y2 > y)
        if y1 == y2 or not crosses.any():
            continue
        x_at = x1 + (y - y1) * (x2 - x1) / (y2 - y1)
        inside ^= crosses & (x < x_at)
    return inside


def in_zone(xyxy: npt.ArrayLike, zone: Zone, width: int, height: int) -> BoolArray:
    """Boolean mask over boxes in frame pixels: bottom-centre inside the zone's polygon."""
    _check_size(width, height)
    anchors = bottom_centres(xyxy) / np.array([width, height], dtype=np.float64)
    return points_in_polygon(anchors, zone.polygon)


def raster_mask(zones: Iterable[Zone], width: int, height: int) -> BoolArray:
    """(height, width) mask of the pixels whose centre lies inside any of the zones."""
    _check_size(width, height)
    mask = np.zeros((height, width), dtype=np.bool_)
    xs = (np.arange(width, dtype=np.float64) + 0.5) / width
    ys = (np.arange(height, dtype=np.float64) + 0.5) / height
    for zone in zones:
        lo, hi = zone.polygon.min(axis=0), zone.polygon.max(axis=0)
        # Only the polygon's bounding rectangle is tested: zones are usually small.
        cols = np.flatnonzero((xs >= lo[0]) & (xs <= hi[0]))
        rows = np.flatnonzero((ys >= lo[1]) & (ys <= hi[1]))
        if cols.size == 0 or rows.size == 0:
            continue
        grid_x, grid_y = np.meshgrid(xs[cols], ys[rows])
        inside = points_in_polygon(np.stack([grid_x.ravel(), grid_y.ravel()], axis=1), zone.polygon)
        block = mask[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
        block |= inside.reshape(len(rows), len(cols))
    return mask


@dataclass(frozen=True)
class CameraZones:
    """All zones of one camera. Without watch zones the whole frame is watched."""

    camera_id: str
    zones: tuple[Zone, ...] = ()
    default_dwell_s: float = DEFAULT_DWELL_S

    def __post_init__(self) -> None:
        seen: set[str | None] = set()
        for zone in self.zones:
            if zone.id is None:
                raise ValueError(f"camera {self.camera_id}: configured zones need an id, got None")
            if zone.id in seen:
                raise ValueError(f"camera {self.camera_id}: zone id {zone.id!r} is used twice")
            seen.add(zone.id)

    @classmethod
    def from_settings(
        cls, camera: CameraSettings, default_dwell_s: float = DEFAULT_DWELL_S
    ) -> CameraZones:
        return cls(
            camera_id=camera.id,
            zones=tuple(Zone.from_settings(z) for z in camera.zones),
            default_dwell_s=default_dwell_s,
        )

    def of_kind(self, *kinds: ZoneKind) -> tuple[Zone, ...]:
        return tuple(z for z in self.zones if z.kind in kinds)

    @property
    def watch(self) -> tuple[Zone, ...]:
        """The configured watch zones, or the whole frame when none is configured."""
        configured = self.of_kind("watch")
        return configured or (Zone.whole_frame(self.default_dwell_s),)

    def excluded(self, xyxy: npt.ArrayLike, width: int, height: int) -> BoolArray:
        """Boxes whose bottom-centre lies in a fixture or ignore zone."""
        boxes = _as_boxes(xyxy)
        mask = np.zeros(len(boxes), dtype=np.bool_)
        for zone in self.of_kind("fixture", "ignore"):
            mask |= in_zone(boxes, zone, width, height)
        return mask

    def watch_zone_of(self, xyxy: npt.ArrayLike, width: int, height: int) -> list[Zone | None]:
        """Per box: the first watch zone (config order) holding its bottom-centre, or None.

        Fixture and ignore zones win over watch zones, so a bin drawn inside a watched
        roadside is never a candidate.
        """
        boxes = _as_boxes(xyxy)
        found: list[Zone | None] = [None] * len(boxes)
        excluded = self.excluded(boxes, width, height)
        for zone in self.watch:
            hits = in_zone(boxes, zone, width, height) & ~excluded
            for i in np.flatnonzero(hits):
                if found[i] is None:
                    found[i] = zone
        return found

    def exclusion_mask(self, width: int, height: int) -> BoolArray:
        """Pixels of fixture and ignore zones: no candidate object is looked for there."""
        return raster_mask(self.of_kind("fixture", "ignore"), width, height)

    def watch_mask(self, width: int, height: int) -> BoolArray:
        return raster_mask(self.watch, width, height)
