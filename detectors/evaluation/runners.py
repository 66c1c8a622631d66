"""Runners of the evaluation harness: a detector run over one annotated clip.

`clip_runner` runs the real offline pipeline of `pantau detect-file` (YOLO, tracking,
static-object model, dumping state machine, view checks). `truth_box_runner` runs one
camera's pipeline after YOLO (`detectors.camera.CameraPipeline`) on clips written by
`detectors.evaluation.synthetic.write_scene`, with the scene's exact person boxes standing
in for YOLO.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from detectors.backends import Backend
from detectors.camera import CameraPipeline
from detectors.dumping import DumpingRecord
from detectors.evaluation.annotations import ClipSpec
from detectors.evaluation.scoring import (
    EvaluationError,
    Runner,
    RunResult,
    ViewChangeLike,
    detected_from_records,
    view_alarms_from,
)
from detectors.evaluation.synthetic import read_truth
from detectors.events import EventClock
from detectors.offline import FileRun, as_published
from pantau.motion import MotionGate
from pantau.settings import (
    CameraSettings,
    DumpingSettings,
    MotionSettings,
    Settings,
    TrackerSettings,
)

log = logging.getLogger(__name__)

Image = npt.NDArray[np.uint8]


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
            image, _ = as_published(raw, camera.max_width, camera.jpeg_quality)
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


# --------------------------------------------------------------------------- real detector


def clip_camera(clip: ClipSpec, fps: float, max_width: int) -> CameraSettings:
    """The camera an annotated clip stands for: its zones, the detect fps and width."""
    return CameraSettings.model_validate(
        {
            "id": clip.camera_id or clip.name,
            "url": str(clip.video),
            "fps": fps,
            "max_width": max_width,
            "zones": [z.model_dump() for z in clip.zones],
        }
    )


def clip_runner(
    settings: Settings,
    backend: Backend,
    *,
    fps: float = 5.0,
    max_width: int = 640,
) -> Runner:
    """The real offline pipeline (YOLO, ByteTrack, static objects, dumping logic) as the
    evaluation harness's runner; boxes are scaled back to the video's own pixels."""

    def run(clip: ClipSpec) -> RunResult:
        camera = clip_camera(clip, fps, max_width)
        file_run = FileRun(
            camera,
            settings=settings,
            backend=backend,
            origin=datetime(2000, 1, 1, tzinfo=UTC),
            dwell_s=clip.dwell_s,
            evidence=False,
        )
        for _ in file_run.events(clip.video):
            pass
        events = [e.scaled(file_run.scale) for e in detected_from_records(file_run.records)]
        # The camera's view changes (turned, covered, blurred), on the file's clock.
        changes = file_run.view_changes
        return RunResult(events, view_alarms_from(changes), duration_s=file_run.stats.video_s)

    return run
