from __future__ import annotations

import numpy as np
import pytest

from detectors.zones import (
    CameraZones,
    Zone,
    ZoneKind,
    bottom_centres,
    in_zone,
    points_in_polygon,
    raster_mask,
)
from pantau.settings import CameraSettings, ZoneSettings

W, H = 640, 360
SQUARE = [[0.25, 0.25], [0.75, 0.25], [0.75, 0.75], [0.25, 0.75]]
# An L: the square's top-right quarter is cut away.
ELL = [[0.25, 0.25], [0.5, 0.25], [0.5, 0.5], [0.75, 0.5], [0.75, 0.75], [0.25, 0.75]]
TRIANGLE = [[0.0, 1.0], [0.5, 0.0], [1.0, 1.0]]


def zone(
    corners: list[list[float]], kind: ZoneKind = "watch", zid: str = "z", dwell_s: float = 30.0
) -> Zone:
    return Zone(id=zid, kind=kind, polygon=np.array(corners, dtype=np.float64), dwell_s=dwell_s)


def box_at(fx: float, fy: float, w: float = 40, h: float = 30) -> list[float]:
    """A box whose bottom-centre sits at (fx, fy) as fractions of the frame."""
    x, y = fx * W, fy * H
    return [x - w / 2, y - h, x + w / 2, y]


@pytest.mark.parametrize(
    ("xyxy", "expected"),
    [
        ([[0, 0, 10, 20]], [[5, 20]]),
        ([[100, 50, 140, 90], [-10, 0, 10, 360]], [[120, 90], [0, 360]]),
    ],
)
def test_anchor_is_the_bottom_centre(xyxy: list[list[float]], expected: list[list[float]]) -> None:
    assert bottom_centres(xyxy).tolist() == expected


def test_no_boxes_give_an_empty_mask() -> None:
    assert bottom_centres(np.zeros((0, 4))).shape == (0, 2)
    assert in_zone(np.zeros((0, 4)), zone(SQUARE), W, H).shape == (0,)


@pytest.mark.parametrize(
    ("polygon", "point", "inside"),
    [
        (SQUARE, (0.5, 0.5), True),
        (SQUARE, (0.1, 0.5), False),
        (SQUARE, (0.5, 0.9), False),
        (ELL, (0.3, 0.3), True),
        (ELL, (0.6, 0.3), False),  # in the cut-away corner of the concave shape
        (ELL, (0.6, 0.6), True),
        (TRIANGLE, (0.5, 0.5), True),
        (TRIANGLE, (0.1, 0.2), False),
    ],
)
def test_points_in_polygon(
    polygon: list[list[float]], point: tuple[float, float], inside: bool
) -> None:
    assert points_in_polygon([point], polygon).tolist() == [inside]


def test_membership_is_by_bottom_centre_not_overlap() -> None:
    boxes = [
        box_at(0.5, 0.5),  # inside
        box_at(0.5, 0.8, h=200),  # mostly over the zone, but standing below it
        box_at(0.5, 0.3, h=5),  # just inside the top edge
        box_at(0.9, 0.5),  # beside it
    ]
    assert in_zone(boxes, zone(SQUARE), W, H).tolist() == [True, False, True, False]
    assert zone(SQUARE).contains(boxes, W, H).tolist() == [True, False, True, False]


def test_membership_does_not_depend_on_resolution() -> None:
    boxes = np.array([box_at(0.3, 0.4), box_at(0.8, 0.4)])
    small = boxes * np.array([0.5, 0.5, 0.5, 0.5])
    assert (
        in_zone(boxes, zone(SQUARE), W, H).tolist()
        == in_zone(small, zone(SQUARE), W // 2, H // 2).tolist()
    )


@pytest.mark.parametrize(("polygon", "area"), [(SQUARE, 0.25), (ELL, 0.1875), (TRIANGLE, 0.5)])
def test_raster_mask_covers_the_polygon_area(polygon: list[list[float]], area: float) -> None:
    mask = raster_mask([zone(polygon)], 320, 180)
    assert mask.shape == (180, 320)
    assert mask.mean() == pytest.approx(area, abs=0.01)


def test_raster_mask_agrees_with_the_point_test_and_unions_zones() -> None:
    mask = raster_mask([zone(ELL), zone([[0.0, 0.0], [0.1, 0.0], [0.1, 0.1]])], 64, 36)
    ys, xs = np.mgrid[0:36, 0:64]
    centres = np.stack([(xs.ravel() + 0.5) / 64, (ys.ravel() + 0.5) / 36], axis=1)
    expected = points_in_polygon(centres, ELL) | points_in_polygon(
        centres, [[0.0, 0.0], [0.1, 0.0], [0.1, 0.1]]
    )
    assert (mask.ravel() == expected).all()
    assert raster_mask([], 64, 36).sum() == 0


@pytest.mark.parametrize(
    ("corners", "kind", "dwell_s", "message"),
    [
        (
            [[0.1, 0.1], [0.2, 0.2]],
            "watch",
            30.0,
            r"zone z: expected polygon of shape \(K>=3, 2\).*got \(2, 2\)",
        ),
        ([[0.1, 0.1, 0.0]] * 3, "watch", 30.0, r"got \(3, 3\)"),
        (
            [[0.1, 0.1], [1.2, 0.1], [0.5, 0.5]],
            "watch",
            30.0,
            r"fractions of the frame \(0\.\.1\), got values from 0\.1 to 1\.2",
        ),
        (SQUARE, "trash", 30.0, r"expected kind in .* got 'trash'"),
        (SQUARE, "watch", 0.0, r"expected dwell_s > 0, got 0\.0"),
    ],
)
def test_invalid_zones_say_what_was_expected(
    corners: list[list[float]], kind: str, dwell_s: float, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        Zone(id="z", kind=kind, polygon=np.array(corners), dwell_s=dwell_s)  # type: ignore[arg-type]


def test_zone_keeps_its_own_copy_of_the_polygon() -> None:
    corners = np.array(SQUARE, dtype=np.float64)
    z = zone(corners.tolist())
    corners[0, 0] = 0.9
    assert z.polygon[0, 0] == 0.25
    with pytest.raises(ValueError, match="read-only"):
        z.polygon[0, 0] = 0.5


def camera(*zones: ZoneSettings) -> CameraSettings:
    return CameraSettings(id="tps-gedeg", url="file.mp4", zones=zones)


def test_zones_come_from_the_camera_settings() -> None:
    cam = camera(
        ZoneSettings(
            id="tepi-jalan", polygon=((0.0, 0.5), (1.0, 0.5), (1.0, 1.0), (0.0, 1.0)), dwell_s=45
        ),
        ZoneSettings(
            id="tong", kind="fixture", polygon=((0.8, 0.6), (0.9, 0.6), (0.9, 0.9), (0.8, 0.9))
        ),
    )
    zones = CameraZones.from_settings(cam)
    assert zones.camera_id == "tps-gedeg"
    assert [(z.id, z.kind, z.dwell_s) for z in zones.zones] == [
        ("tepi-jalan", "watch", 45.0),
        ("tong", "fixture", 30.0),
    ]
    assert [z.id for z in zones.watch] == ["tepi-jalan"]


def test_fixtures_and_ignore_zones_win_over_watch_zones() -> None:
    zones = CameraZones(
        "tps-gedeg",
        (
            zone([[0.0, 0.5], [1.0, 0.5], [1.0, 1.0], [0.0, 1.0]], zid="road", dwell_s=20),
            zone([[0.5, 0.0], [1.0, 0.0], [1.0, 1.0], [0.5, 1.0]], zid="right", dwell_s=60),
            zone([[0.8, 0.6], [0.9, 0.6], [0.9, 0.9], [0.8, 0.9]], "fixture", zid="bin"),
            zone([[0.0, 0.9], [0.2, 0.9], [0.2, 1.0], [0.0, 1.0]], "ignore", zid="tree"),
        ),
    )
    boxes = [
        box_at(0.3, 0.7),
        box_at(0.6, 0.7),
        box_at(0.6, 0.3),
        box_at(0.85, 0.8),
        box_at(0.1, 0.95),
        box_at(0.3, 0.2),
    ]
    found = zones.watch_zone_of(boxes, W, H)
    # The first configured zone wins where two overlap.
    assert [z.id if z else None for z in found] == ["road", "road", "right", None, None, None]
    assert zones.excluded(boxes, W, H).tolist() == [False, False, False, True, True, False]


def test_without_watch_zones_the_whole_frame_is_watched() -> None:
    zones = CameraZones("tps-gedeg", (zone(SQUARE, "fixture", zid="bin"),), default_dwell_s=12.0)
    (whole,) = zones.watch
    assert whole.id is None and whole.dwell_s == 12.0
    found = zones.watch_zone_of([box_at(0.1, 0.1), box_at(0.5, 0.5)], W, H)
    assert [z is not None and z.id is None and z.dwell_s == 12.0 for z in found] == [True, False]
    assert zones.watch_mask(32, 18).all()


def test_exclusion_mask_is_fixtures_and_ignore_only() -> None:
    zones = CameraZones(
        "tps-gedeg",
        (
            zone(SQUARE, zid="watched"),
            zone([[0.0, 0.0], [0.5, 0.0], [0.5, 0.5], [0.0, 0.5]], "ignore", zid="sky"),
        ),
    )
    mask = zones.exclusion_mask(100, 100)
    assert mask[:50, :50].all() and not mask[50:, :].any() and not mask[:, 50:].any()


def test_duplicate_zone_ids_name_the_camera() -> None:
    with pytest.raises(ValueError, match="camera tps-gedeg: zone id 'a' is used twice"):
        CameraZones("tps-gedeg", (zone(SQUARE, zid="a"), zone(ELL, zid="a")))


def test_frame_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="expected positive width and height, got 0x360"):
        in_zone([box_at(0.5, 0.5)], zone(SQUARE), 0, H)
