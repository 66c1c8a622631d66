"""Region-based detection: the crop plan, the merge of the crops' answers, and the detector
around a network that finds bright squares (so what it finds is known exactly)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pytest

from detectors.detections import Detections
from detectors.region_detector import Frame, RegionDetector
from detectors.regions import RegionConfig, merge_detections, merge_rects, plan_regions, tiles
from pantau.settings import RegionSettings

CONFIG = RegionConfig(size=320, max_cover=0.5, margin_px=16)
W, H = 640, 360


QUARTERS = ((0, 0, 320, 192), (320, 0, 640, 192), (0, 168, 320, 360), (320, 168, 640, 360))


def test_a_frame_asked_for_whole_is_looked_at_scaled_and_in_tiles_at_its_own_resolution() -> None:
    plan = plan_regions(W, H, [(10, 10, 50, 50)], CONFIG, full_reason="periodic")
    assert plan.full and plan.reason == "periodic"
    assert plan.crops == QUARTERS


def test_tiles_cover_the_frame_with_crops_no_larger_than_the_network() -> None:
    assert tiles(W, H, CONFIG) == QUARTERS
    assert tiles(320, 180, CONFIG) == ((0, 0, 320, 180),)
    hd = tiles(1920, 1080, CONFIG)
    assert len(hd) == 6 * 4
    covered = np.zeros((1080, 1920), dtype=bool)
    for x1, y1, x2, y2 in hd:
        assert x2 - x1 <= 320 and y2 - y1 <= 320
        covered[y1:y2, x1:x2] = True
    assert covered.all()
    # A frame that fits one crop is that crop: no scaled pass besides.
    small = plan_regions(320, 180, [], CONFIG, full_reason="first frame")
    assert not small.full and small.crops == ((0, 0, 320, 180),)


def test_nothing_moved_and_nothing_held_means_no_network_call() -> None:
    plan = plan_regions(W, H, [], CONFIG)
    assert not plan.full and plan.crops == ()
    assert plan.pixels(W, H, 320) == 0


def test_a_small_region_gets_one_crop_around_it_at_the_frames_resolution() -> None:
    plan = plan_regions(W, H, [(300.5, 100, 340, 180)], CONFIG)
    assert not plan.full
    (crop,) = plan.crops
    x1, y1, x2, y2 = crop
    # The box and its margin are inside; the sides are multiples of 32, at least 64.
    assert x1 <= 300 - 16 and y1 <= 100 - 16 and x2 >= 340 + 16 and y2 >= 180 + 16
    assert (x2 - x1) % 32 == 0 and (y2 - y1) % 32 == 0
    assert (x2 - x1, y2 - y1) == (96, 128)
    # About 12k network pixels against 61k for the whole frame at 320 (320x180).
    assert plan.pixels(W, H, 320) == 96 * 128
    whole = plan_regions(W, H, [], CONFIG, full_reason="x")
    assert whole.pixels(W, H, 320) == 320 * 180 + 2 * 320 * 192 + 2 * 320 * 192


def test_a_crop_at_the_frames_edge_is_moved_inside_it() -> None:
    (crop,) = plan_regions(W, H, [(0, 330, 20, 360)], CONFIG).crops
    assert crop[0] == 0 and crop[3] == H
    assert crop[2] - crop[0] == 64 and crop[3] - crop[1] == 64


def test_overlapping_regions_share_a_crop_and_distant_ones_do_not() -> None:
    near = plan_regions(W, H, [(100, 100, 140, 140), (130, 120, 170, 160)], CONFIG)
    assert len(near.crops) == 1
    far = plan_regions(W, H, [(10, 10, 40, 40), (560, 300, 600, 340)], CONFIG)
    assert len(far.crops) == 2


def test_merging_stops_where_a_union_would_not_fit_a_crop() -> None:
    rects = merge_rects([(0, 0, 200, 100), (150, 50, 500, 120)], 320)
    assert rects == [(0, 0, 500, 120)]  # they overlap: one region, larger than a crop
    assert merge_rects([(0, 0, 100, 100), (300, 0, 400, 100)], 320) == [
        (0, 0, 100, 100),
        (300, 0, 400, 100),
    ]


def test_an_object_larger_than_a_crop_brings_the_whole_frame_and_others_keep_crops() -> None:
    plan = plan_regions(W, H, [(0, 0, 400, 200), (560, 300, 600, 340)], CONFIG)
    assert plan.full and len(plan.crops) == 1
    assert plan.reason == "an object larger than a crop"


def test_regions_covering_most_of_the_frame_become_one_whole_frame() -> None:
    boxes = [(x, y, x + 100, y + 100) for x in (0, 160, 320, 480) for y in (0, 200)]
    plan = plan_regions(W, H, boxes, CONFIG)
    assert plan.full and plan.reason == "regions cover most of the frame"
    # The crops stay beside the scaled frame: small things keep their detail.
    assert 1 <= len(plan.crops) <= 8


def dets(rows: Sequence[tuple[float, float, float, float, float, int]]) -> Detections:
    return Detections(
        xyxy=np.array([r[:4] for r in rows], dtype=np.float32).reshape(-1, 4),
        confidence=np.array([r[4] for r in rows], dtype=np.float32),
        class_id=np.array([r[5] for r in rows], dtype=np.int64),
    )


def test_crop_answers_move_into_the_frames_pixels() -> None:
    merged = merge_detections(
        None, [((100, 50, 196, 178), dets([(10, 20, 40, 90, 0.8, 0)]))], W, H, iou=0.5
    )
    assert merged.xyxy.tolist() == [[110, 70, 140, 140]]


def test_an_object_seen_in_two_crops_or_in_a_crop_and_the_whole_frame_is_one_box() -> None:
    whole = dets([(110, 70, 141, 141, 0.6, 0)])
    a = ((100, 50, 196, 178), dets([(10, 20, 40, 90, 0.8, 0)]))
    b = ((64, 50, 192, 178), dets([(46, 20, 76, 90, 0.7, 0)]))
    merged = merge_detections(whole, [a, b], W, H, iou=0.5)
    assert len(merged) == 1 and merged.confidence.tolist() == pytest.approx([0.8])


def test_a_part_cut_by_a_crops_edge_goes_where_the_whole_object_was_found() -> None:
    # A person found whole in the frame pass; a crop holds only its upper half, cut at the
    # crop's lower edge (not the frame's): the half is dropped.
    whole = dets([(100, 40, 160, 300, 0.7, 0)])
    half = ((64, 0, 192, 160), dets([(36, 40, 96, 160, 0.9, 0)]))
    merged = merge_detections(whole, [half], W, H, iou=0.5)
    assert merged.xyxy.tolist() == [[100, 40, 160, 300]]
    # Without the whole object the part is all there is, and it stays.
    alone = merge_detections(None, [half], W, H, iou=0.5)
    assert len(alone) == 1
    # An object of another class inside the person (a bag held) is not a part of it.
    bag = ((64, 0, 192, 160), dets([(36, 100, 76, 160, 0.9, 26)]))
    assert len(merge_detections(whole, [bag], W, H, iou=0.5)) == 2


class Squares:
    """A network that finds every pure-white axis-aligned block as a person and records
    the shape of each picture it was given and whether it could enlarge it."""

    name = "squares"
    names: Mapping[int, str] = {0: "person"}

    def __init__(self) -> None:
        self.calls: list[tuple[list[tuple[int, int]], bool]] = []

    def detect(self, images: Sequence[np.ndarray], *, scaleup: bool = True) -> list[Detections]:
        self.calls.append(([im.shape[:2] for im in images], scaleup))
        out = []
        for image in images:
            ys, xs = np.nonzero(image[:, :, 0] == 255)
            if len(xs):
                out.append(dets([(xs.min(), ys.min(), xs.max() + 1, ys.max() + 1, 0.9, 0)]))
            else:
                out.append(Detections.empty())
        return out


def scene(x: int, y: int, size: int = 20) -> np.ndarray:
    image = np.full((H, W, 3), 90, dtype=np.uint8)
    image[y : y + size, x : x + size] = 255
    return image


def detector(**settings: float) -> tuple[RegionDetector, Squares]:
    network = Squares()
    values = {"enabled": True, "full_every_s": 10.0, **settings}
    return RegionDetector(network, RegionSettings.model_validate(values), 320), network


def test_first_frame_whole_then_crops_around_what_moved_and_what_was_found() -> None:
    regions, network = detector()
    (first,) = regions.detect([Frame("cam", 0.0, scene(100, 100))])
    assert first.xyxy.tolist() == [[100, 100, 120, 120]]
    # The whole frame, scaled by the network, and in four tiles at its own resolution;
    # the square, found in both, is one box.
    assert network.calls == [([(H, W)], True), ([(192, 320)] * 4, False)]
    # The square moves 30 px: one crop, given at the frame's own resolution, finds it there.
    (second,) = regions.detect([Frame("cam", 0.2, scene(130, 100))])
    assert second.xyxy.tolist() == [[130, 100, 150, 120]]
    shapes, scaleup = network.calls[-1]
    assert scaleup is False and len(shapes) == 1 and max(shapes[0]) <= 320
    assert regions.stats.crops == 4 + 1 and regions.stats.full == 1


def test_a_still_object_stays_in_view_and_a_still_empty_frame_costs_nothing() -> None:
    regions, _ = detector()
    regions.detect([Frame("cam", 0.0, scene(100, 100))])
    for i in range(1, 20):
        (found,) = regions.detect([Frame("cam", i * 0.2, scene(100, 100))])
        assert len(found) == 1  # held: looked for again where it was
    empty, blank = detector()
    plain = np.full((H, W, 3), 90, dtype=np.uint8)
    empty.detect([Frame("cam", 0.0, plain)])
    for i in range(1, 5):
        empty.detect([Frame("cam", i * 0.2, plain)])
    assert len(blank.calls) == 2  # only the first frame's: scaled and in tiles


def test_whole_frame_again_on_the_periodic_check_and_when_the_clock_goes_back() -> None:
    regions, _ = detector(full_every_s=1.0)
    plain = np.full((H, W, 3), 90, dtype=np.uint8)
    for t in (0.0, 0.4, 0.8, 1.2, 1.4, 0.2):
        regions.detect([Frame("cam", t, plain)])
    assert regions.stats.reasons == {
        "first frame of the camera": 1,
        "nothing moved": 3,
        "periodic whole-frame check": 1,
        "the camera's clock went back": 1,
    }


def test_a_small_far_object_the_whole_frame_pass_would_shrink_is_found_in_a_crop() -> None:
    """A 6-pixel object: at 320 it would be 3 pixels; the crop keeps its 6."""
    regions, network = detector()
    regions.detect([Frame("cam", 0.0, np.full((H, W, 3), 90, dtype=np.uint8))])
    (found,) = regions.detect([Frame("cam", 0.2, scene(400, 200, size=6))])
    assert found.xyxy.tolist() == [[400, 200, 406, 206]]
    shapes, scaleup = network.calls[-1]
    # Motion is found on a picture a quarter the size, then grown by the margin.
    assert not scaleup and shapes == [(96, 96)]


def test_crops_of_a_batch_go_to_the_network_in_one_call_across_cameras() -> None:
    regions, network = detector()
    plain = np.full((H, W, 3), 90, dtype=np.uint8)
    regions.detect([Frame("a", 0.0, plain), Frame("b", 0.0, plain)])
    assert network.calls == [([(H, W), (H, W)], True), ([(192, 320)] * 8, False)]
    found = regions.detect([Frame("a", 0.2, scene(10, 10)), Frame("b", 0.2, scene(500, 300))])
    assert [f.xyxy.tolist() for f in found] == [[[10, 10, 30, 30]], [[500, 300, 520, 320]]]
    assert len(network.calls) == 3 and network.calls[-1][1] is False
    assert len(network.calls[-1][0]) == 2


def test_a_camera_forgotten_after_a_rebalance_starts_whole_again() -> None:
    regions, _ = detector()
    plain = np.full((H, W, 3), 90, dtype=np.uint8)
    regions.detect([Frame("a", 0.0, plain)])
    regions.forget()
    regions.detect([Frame("a", 0.2, plain)])
    assert regions.stats.reasons["first frame of the camera"] == 2


def test_a_camera_that_changes_resolution_starts_whole_and_forgets_what_it_held() -> None:
    regions, network = detector()
    # A square found where the smaller picture also has pixels.
    regions.detect([Frame("cam", 0.0, scene(100, 100))])
    smaller = np.full((180, 320, 3), 90, dtype=np.uint8)
    (found,) = regions.detect([Frame("cam", 0.2, smaller)])
    assert len(found) == 0
    assert regions.stats.reasons["first frame of the camera"] == 2
    # The 320x180 frame fits one crop: looked at once, whole, at its own resolution.
    assert network.calls[-1] == ([(180, 320)], False)
    # Nothing moved and nothing is held: the next frame costs no call.
    regions.detect([Frame("cam", 0.4, smaller)])
    assert len(network.calls) == 3
