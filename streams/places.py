"""Which cameras each place rule joins with which sensors: pure, computed once from the
registry when the stream processor starts.

A camera joins a sensor for a rule when the rule applies to the sensor and the two are near:
within the rule's `within_m` metres (great-circle distance between their coordinates), or in
the same desa with `same_desa`; for a river rule, when both stand on the same river and the
gauge lies at most `downstream_km` downstream of the camera (location.river_km grows
downstream). A sensor or camera without a location joins nothing.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from pantau.settings import (
    CameraSettings,
    Location,
    PlaceRule,
    RiverDumpingRule,
    SensorSettings,
)

# Mean radius of the Earth (IUGG), metres: the error over a regency's few kilometres is far
# below a GPS fix's.
EARTH_RADIUS_M = 6_371_008.8


def distance_m(a: Location, b: Location) -> float:
    """Great-circle (haversine) distance between two locations, metres."""
    lat1, lat2 = math.radians(a.lat), math.radians(b.lat)
    dlat = lat2 - lat1
    dlon = math.radians(b.lon - a.lon)
    h = math.sin(dlat / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin(dlon / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))


@dataclass(frozen=True)
class PlaceLink:
    """One rule joining one sensor with one camera, and how near they are in words."""

    rule: PlaceRule
    sensor_id: str
    camera_id: str
    distance_m: float
    how: str  # e.g. "320 m", "desa Sooko", "2.1 km upstream on Kali Sadar"


def _same_desa(a: Location, b: Location) -> bool:
    return (
        a.desa is not None
        and b.desa is not None
        and a.desa.strip().casefold() == b.desa.strip().casefold()
    )


def _link(rule: PlaceRule, sensor: SensorSettings, camera: CameraSettings) -> PlaceLink | None:
    here, there = sensor.location, camera.location
    if here is None or there is None:
        return None
    metres = distance_m(here, there)
    if isinstance(rule, RiverDumpingRule):
        if here.river is None or there.river is None or here.river_km is None:
            return None
        if there.river_km is None or here.river.casefold() != there.river.casefold():
            return None
        downstream = here.river_km - there.river_km
        if not 0 <= downstream <= rule.downstream_km:
            return None
        how = f"{downstream:.1f} km upstream on {there.river}"
        return PlaceLink(rule, sensor.id, camera.id, metres, how)
    if rule.within_m is not None and metres <= rule.within_m:
        return PlaceLink(rule, sensor.id, camera.id, metres, f"{metres:.0f} m")
    if rule.same_desa and _same_desa(here, there):
        return PlaceLink(rule, sensor.id, camera.id, metres, f"desa {(there.desa or '').strip()}")
    return None


def place_links(
    rules: Iterable[PlaceRule],
    sensors: Sequence[SensorSettings],
    cameras: Sequence[CameraSettings],
) -> list[PlaceLink]:
    """Every (rule, sensor, camera) the rules join, nearest camera first per sensor."""
    links: list[PlaceLink] = []
    for rule in rules:
        for sensor in sensors:
            if not rule.applies_to(sensor):
                continue
            found = [link for c in cameras if (link := _link(rule, sensor, c)) is not None]
            links += sorted(found, key=lambda link: (link.distance_m, link.camera_id))
    return links
