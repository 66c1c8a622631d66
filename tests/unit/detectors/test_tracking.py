"""ByteTrack per camera on synthetic moving boxes: ids hold across frames, objects that cross
keep theirs, a long gap in frame time gives a new id, other cameras and classes are apart."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from detectors.detections import Detections
from detectors.tracking import NO_TRACK, ByteTracker, CameraTrackers
from pantau.settings import TrackerSettings

PERSON, CAR, CHAIR = 0, 2, 56
Row = tuple[float, float, float, float, int, float]  # x1, y1, x2, y2, class, confidence


def found(*rows: Row) -> Detections:
    if not rows:
        return Detections.empty()
    return Detections(
        xyxy=np.array([r[:4] for r in rows], dtype=np.float32),
        confidence=np.array([r[5] for r in rows], dtype=np.float32),
        class_id=np.array([r[4] for r in rows], dtype=np.int64),
    )


def person_at(x: float, y: float = 100.0, conf: float = 0.9) -> Row:
    return (x, y, x + 40.0, y + 100.0, PERSON, conf)


def run(tracker: ByteTracker, frames: Sequence[tuple[float, Detections]]) -> list[list[int]]:
    out = []
    for t, detections in frames:
        tracked = tracker.update(detections, t)
        assert tracked.tracker_id is not None
        # Same boxes, same order: the tracker only adds ids.
        np.testing.assert_array_equal(tracked.xyxy, detections.xyxy)
        out.append([int(i) for i in tracked.tracker_id])
    return out


def tracker(**settings: object) -> ByteTracker:
    return ByteTracker("cam-1", TrackerSettings.model_validate(settings))


@pytest.mark.parametrize("fps", [5.0, 10.0])
def test_a_walking_person_keeps_one_id(fps: float) -> None:
    # 60 px/s to the right (a 40 px wide person), sampled at the camera's detect fps.
    frames = [(i / fps, found(person_at(50 + 60 * i / fps))) for i in range(int(8 * fps))]
    ids = run(tracker(), frames)
    assert all(len(row) == 1 for row in ids)
    assert len({row[0] for row in ids}) == 1 and ids[0][0] != NO_TRACK


def test_two_people_crossing_keep_their_ids() -> None:
    # One walks right, one walks left, one row apart in depth: their boxes overlap at the
    # crossing (t = 2 s) and the Kalman prediction carries each through it.
    frames = []
    for i in range(41):
        t = i * 0.1
        frames.append(
            (t, found(person_at(100 + 100 * t, 100), person_at(500 - 100 * t, 130, conf=0.8)))
        )
    ids = run(tracker(), frames)
    right, left = ids[0]
    assert right != left and NO_TRACK not in (right, left)
    assert all(row == [right, left] for row in ids)


def test_a_short_miss_keeps_the_id_and_a_long_gap_gives_a_new_one() -> None:
    track = tracker(buffer_s=3.0)
    seen = run(
        track,
        [
            (0.0, found(person_at(100))),
            (0.5, found(person_at(105))),
            # Missed for two seconds (occluded), then found again close by.
            (1.0, found()),
            (2.0, found()),
            (2.5, found(person_at(110))),
        ],
    )
    first = seen[0][0]
    assert seen[1] == [first] and seen[4] == [first]

    # No frame at all for longer than the buffer (the motion gate held them back): the box at
    # the same place is a new object as far as anyone can tell.
    later = run(track, [(10.0, found(person_at(110))), (10.5, found(person_at(112)))])
    assert later[0][0] not in (first, NO_TRACK)
    assert later[1] == later[0]


def test_the_buffer_counts_seconds_not_frames() -> None:
    # At 10 fps, 3 s of misses is 30 frames; at 1 fps it is 3 frames. Both keep the id
    # within a 4 s buffer; both lose it with a 2 s one.
    for fps, buffer_s, same in [
        (10.0, 4.0, True),
        (1.0, 4.0, True),
        (10.0, 2.0, False),
        (1.0, 2.0, False),
    ]:
        track = tracker(buffer_s=buffer_s)
        step = 1.0 / fps
        frames = [(i * step, found(person_at(100))) for i in range(3)]
        t = frames[-1][0]
        misses = round(3.0 / step)
        frames += [(t + k * step, found()) for k in range(1, misses + 1)]
        frames.append((t + (misses + 1) * step, found(person_at(100))))
        ids = run(track, frames)
        assert (ids[-1] == ids[0]) is same, (fps, buffer_s)


def test_only_configured_classes_get_ids() -> None:
    track = tracker()
    ids = run(
        track,
        [
            (
                0.0,
                found(
                    person_at(100), (300, 200, 400, 300, CHAIR, 0.9), (500, 50, 600, 120, CAR, 0.8)
                ),
            ),
            (
                0.2,
                found(
                    person_at(102), (300, 200, 400, 300, CHAIR, 0.9), (505, 50, 605, 120, CAR, 0.8)
                ),
            ),
        ],
    )
    person, chair, car = ids[1]
    assert chair == NO_TRACK and person != car and NO_TRACK not in (person, car)
    assert ids[0] == ids[1]
    # In the message an untracked box carries no track id at all.
    boxes = track.update(found((300, 200, 400, 300, CHAIR, 0.9)), 0.4).to_boxes({}, 640, 360)
    assert boxes[0].track_id is None


def test_cameras_are_tracked_apart() -> None:
    trackers = CameraTrackers(TrackerSettings())
    a0 = trackers.update("cam-a", found(person_at(100)), 0.0)
    b0 = trackers.update("cam-b", found(person_at(400)), 0.0)
    # cam-b's frame does not make cam-a's person lost, and the reverse.
    a1 = trackers.update("cam-a", found(person_at(102)), 0.2)
    b1 = trackers.update("cam-b", found(person_at(402)), 0.2)
    assert a0.tracker_id is not None and b0.tracker_id is not None
    assert a1.tracker_id is not None and b1.tracker_id is not None
    assert a1.tracker_id[0] == a0.tracker_id[0] and b1.tracker_id[0] == b0.tracker_id[0]


def test_frame_time_going_back_starts_over_without_reusing_ids() -> None:
    track = tracker()
    first = run(track, [(10.0, found(person_at(100))), (10.2, found(person_at(102)))])
    replay = run(track, [(10.0, found(person_at(100))), (10.2, found(person_at(102)))])
    assert replay[0][0] != first[0][0] and replay[1] == replay[0]
