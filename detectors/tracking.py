"""Per-camera multi-object tracking: ByteTrack (ultralytics' implementation) on frame time.

ByteTrack matches confident boxes to the Kalman-predicted tracks first, then lets
low-confidence boxes extend tracks that found no match (a person half hidden behind a cart
keeps their id). Ultralytics counts how long a track may stay lost in frames; our frames come
unevenly (the camera's motion gate publishes a still scene only every few seconds), so this
adapter counts in seconds of frame time instead: a track not seen for `buffer_s` is dropped,
and the object gets a new id when it comes back.

Matching is by overlap, so an object must overlap its predicted box from one frame to the
next: at the default 5 fps a walking person does; at 1-2 fps a fast one may get a new id.

Only the configured classes (people, vehicles, carriable objects) are tracked; every other
box passes through with track id -1 ("none"), as does a low-confidence box that matched no
track.
"""

from __future__ import annotations

import logging
from collections import deque
from types import SimpleNamespace
from typing import Any

import numpy as np
import numpy.typing as npt

from detectors.backends import offline_ultralytics
from detectors.detections import Detections
from pantau.settings import TrackerSettings

log = logging.getLogger(__name__)

NO_TRACK = -1
# The tracker's own frame-count limit is switched off: time decides (see _forget_stale).
_NEVER_BY_FRAMES = 2**31


class _Boxes:
    """The numpy view of detections that BYTETracker reads: conf, cls, xywh, xyxy and
    boolean indexing (what `ultralytics.engine.results.Boxes` offers)."""

    def __init__(
        self,
        xyxy: npt.NDArray[np.float32],
        conf: npt.NDArray[np.float32],
        cls: npt.NDArray[np.float32],
    ) -> None:
        self.xyxy = xyxy
        self.conf = conf
        self.cls = cls

    @property
    def xywh(self) -> npt.NDArray[np.float32]:
        centre = (self.xyxy[:, :2] + self.xyxy[:, 2:]) / 2
        size = self.xyxy[:, 2:] - self.xyxy[:, :2]
        return np.concatenate([centre, size], axis=1)

    def __len__(self) -> int:
        return len(self.conf)

    def __getitem__(self, index: Any) -> _Boxes:
        return _Boxes(self.xyxy[index], self.conf[index], self.cls[index])


class ByteTracker:
    """One camera's tracker: `update(detections, t)` returns the same detections, in the same
    order, with `tracker_id` set (-1 where there is no track). `t` is the frame's capture
    time in seconds; it should not go backwards (a replay after a rebalance starts over)."""

    def __init__(self, camera_id: str, settings: TrackerSettings) -> None:
        # ultralytics' matching imports `lap` and would pip-install it when missing.
        offline_ultralytics()
        from ultralytics.trackers.basetrack import TrackState
        from ultralytics.trackers.byte_tracker import BYTETracker

        self._tracked_state = int(TrackState.Tracked)
        self.camera_id = camera_id
        self.settings = settings
        self._classes = np.asarray(sorted(settings.classes), dtype=np.int64)
        self._tracker = BYTETracker(
            SimpleNamespace(
                track_high_thresh=settings.high_confidence,
                track_low_thresh=settings.low_confidence,
                new_track_thresh=settings.new_track_confidence,
                track_buffer=_NEVER_BY_FRAMES,
                match_thresh=1.0 - settings.match_iou,
                fuse_score=True,
            )
        )
        # Older ultralytics releases name the frame-count limit differently.
        self._tracker.max_frames_lost = _NEVER_BY_FRAMES
        self._tracker.max_time_lost = _NEVER_BY_FRAMES
        # (tracker frame number, frame time) of recent frames: a track's last frame -> time.
        self._frame_times: deque[tuple[int, float]] = deque()
        self._last_t: float | None = None

    def update(self, detections: Detections, t: float) -> Detections:
        if self._last_t is not None and t < self._last_t:
            log.info(
                "camera %s: frame time went back %.1f s (a replay); tracks start over",
                self.camera_id,
                self._last_t - t,
            )
            self._drop_all()
        self._last_t = t
        self._forget_stale(t)

        wanted = np.isin(detections.class_id, self._classes)
        boxes = _Boxes(
            np.asarray(detections.xyxy[wanted], dtype=np.float32),
            np.asarray(detections.confidence[wanted], dtype=np.float32),
            detections.class_id[wanted].astype(np.float32),
        )
        tracker = self._tracker
        tracker.update(boxes)
        frame = int(tracker.frame_id)
        self._frame_times.append((frame, t))

        ids = np.full(len(detections), NO_TRACK, dtype=np.int64)
        positions = np.flatnonzero(wanted)
        # Tracks updated in this frame, new ones included: a new track has its id from its
        # first frame on, even though ByteTrack reports it only once it is seen again.
        for track in tracker.tracked_stracks:
            if track.frame_id == frame and track.state == self._tracked_state:
                ids[positions[int(track.idx)]] = int(track.track_id)
        return Detections(
            xyxy=detections.xyxy,
            confidence=detections.confidence,
            class_id=detections.class_id,
            tracker_id=ids,
        )

    @staticmethod
    def last_id() -> int:
        """The highest track id given out in this process (ids are counted process-wide)."""
        from ultralytics.trackers.basetrack import BaseTrack

        return int(BaseTrack._count)

    @staticmethod
    def continue_ids_after(last: int) -> None:
        """Give out only ids above `last` from now on: a detector that resumes a camera's
        state must not hand a new track the id of an owner it remembers."""
        from ultralytics.trackers.basetrack import BaseTrack

        BaseTrack._count = max(int(BaseTrack._count), int(last))

    def _forget_stale(self, now: float) -> None:
        """Drop tracks last seen more than buffer_s ago, lost or not: after a long gap
        between frames nothing says the box at the same place is the same object."""
        tracker = self._tracker
        if not self._frame_times:
            return
        horizon = now - self.settings.buffer_s
        seen_at = dict(self._frame_times)

        def fresh(track: Any) -> bool:
            return seen_at.get(int(track.end_frame), -np.inf) >= horizon

        stale = [s for s in (*tracker.tracked_stracks, *tracker.lost_stracks) if not fresh(s)]
        for track in stale:
            track.mark_removed()
        if stale:
            tracker.tracked_stracks = [s for s in tracker.tracked_stracks if fresh(s)]
            tracker.lost_stracks = [s for s in tracker.lost_stracks if fresh(s)]
        while self._frame_times and self._frame_times[0][1] < horizon:
            self._frame_times.popleft()

    def _drop_all(self) -> None:
        """Forget every track but keep counting ids, so no id is given out twice."""
        self._tracker.tracked_stracks = []
        self._tracker.lost_stracks = []
        self._tracker.removed_stracks = []
        self._frame_times.clear()


class CameraTrackers:
    """One ByteTracker per camera, created on the camera's first frame."""

    def __init__(self, settings: TrackerSettings) -> None:
        self.settings = settings
        self._trackers: dict[str, ByteTracker] = {}

    def update(self, camera_id: str, detections: Detections, t: float) -> Detections:
        tracker = self._trackers.get(camera_id)
        if tracker is None:
            tracker = self._trackers[camera_id] = ByteTracker(camera_id, self.settings)
        return tracker.update(detections, t)
