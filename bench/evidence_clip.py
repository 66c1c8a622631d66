"""Cost of a dumping event's evidence clip: the recorder's clip step (VP9 in WebM through PyAV,
at libvpx's real-time deadline), against what OpenCV's own writer costs.

Run: `.venv/bin/python bench/evidence_clip.py [--seconds 55] [--fps 5] [--skip-vp9]`.
No services needed.

A typical clip covers the pre-roll, the zone's dwell and the post-roll (20 + 30 + 5 s by
default) at the camera's sampled rate: here 275 frames of the shared clip (people at a table),
sampled at `--fps` by their own times and scaled to 640x360, the detect stream's size.

Figures:
- for comparison, OpenCV's VideoWriter writing one clip from frames in memory: VP8 and VP9
  in WebM (what a browser's <video> plays) at libvpx's default deadline, which OpenCV cannot
  change, and mp4v in MP4 (which no browser plays): milliseconds per frame and size;
- the recorder's whole clip step (`EvidenceRecorder.ready`: decode each buffered JPEG,
  encode, write and hash) with the codec it ships with, without and with the unblurred
  original (two encodings): milliseconds per clip frame. The frames carry no people boxes,
  so nothing is pixelated (a few tenths of a millisecond a box).

OpenCV's VP9 takes about a minute per clip here (`--skip-vp9` leaves it out).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from detectors.detections import Detections  # noqa: E402
from detectors.dumping import DumpingRecord, event_id  # noqa: E402
from detectors.evidence import CLIP_NAME, EvidenceConfig, EvidenceRecorder  # noqa: E402

SHARED = Path(os.environ.get("PANTAU_SHARED_DATA") or REPO.parent / "shared" / "data")
CLIP = SHARED / "video" / "intel-sample-videos" / "one-by-one-person-detection.mp4"
SIZE = (640, 360)
CAMERA = "bench-cam"
PRE_ROLL_S, POST_ROLL_S = 20.0, 5.0
Image = npt.NDArray[np.uint8]


def sampled_frames(path: Path, fps: float, count: int) -> list[Image]:
    """`count` frames of the video, one per 1/fps seconds of its own time, at SIZE."""
    capture = cv2.VideoCapture(str(path))
    frames: list[Image] = []
    next_t = 0.0
    try:
        while len(frames) < count and capture.grab():
            t = float(capture.get(cv2.CAP_PROP_POS_MSEC)) / 1000.0
            if t + 1e-6 < next_t:
                continue
            ok, image = capture.retrieve()
            if not ok:
                break
            frames.append(np.asarray(cv2.resize(image, SIZE), dtype=np.uint8))
            next_t += 1.0 / fps
    finally:
        capture.release()
    return frames


def encode(frames: list[Image], fps: float, fourcc: str, suffix: str) -> tuple[float, int]:
    """(ms per frame, bytes) of one clip written by OpenCV's VideoWriter."""
    with tempfile.TemporaryDirectory(prefix="pantau-bench-") as tmp:
        path = Path(tmp) / f"clip{suffix}"
        started = time.perf_counter()
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*fourcc), fps, SIZE)
        if not writer.isOpened():
            raise SystemExit(f"OpenCV cannot write {fourcc} to a {suffix} file here")
        for frame in frames:
            writer.write(frame)
        writer.release()
        elapsed = time.perf_counter() - started
        return 1000 * elapsed / len(frames), path.stat().st_size


def recorder_step(frames: list[Image], fps: float, keep_originals: bool) -> tuple[float, int]:
    """(ms per clip frame, clip frames) of the recorder's clip step for one event whose clip
    spans all `frames`."""
    start = 1_700_000_000.0
    times = [start + i / fps for i in range(len(frames))]
    appeared = start + PRE_ROLL_S
    alert = times[-1] - POST_ROLL_S
    box = (300.0, 250.0, 340.0, 300.0)
    record = DumpingRecord(
        event_id=event_id(CAMERA, appeared, box),
        phase="new",
        version=0,
        state="alerted",
        camera_id=CAMERA,
        zone_id=None,
        candidate_id=1,
        at=alert,
        appeared_at=appeared,
        owner_left_at=None,
        alerted_at=alert,
        ended_at=None,
        box=box,
        class_id=None,
        class_confidence=0.0,
        owner_track_id=None,
        owner_class_id=None,
        owner_box=None,
        owner_seen_at=None,
        confidence=0.5,
        before_at=appeared - 3.0,
    )
    with tempfile.TemporaryDirectory(prefix="pantau-bench-") as tmp:
        config = EvidenceConfig(
            root=Path(tmp),
            pre_roll_s=PRE_ROLL_S,
            post_roll_s=POST_ROLL_S,
            keep_originals=keep_originals,
            buffer_s=len(frames) / fps + 10,
            max_buffer_frames=len(frames) + 10,
        )
        recorder = EvidenceRecorder(CAMERA, config)
        none = Detections.from_rows([])
        packs = []
        elapsed = 0.0
        for t, frame in zip(times, frames, strict=True):
            recorder.add_frame(t, frame, none)
            if abs(t - alert) < 1e-6:
                recorder.on_record(record)
                recorder.stills(record.event_id)
            started = time.perf_counter()
            packs += recorder.ready()
            elapsed += time.perf_counter() - started
        if len(packs) != 1 or packs[0].error:
            raise SystemExit(f"expected one whole pack, got {packs}")
        clips = list(Path(tmp).rglob(CLIP_NAME))
        if len(clips) != (2 if keep_originals else 1):
            raise SystemExit(f"expected the clip (and its original), got {clips}")
        clip_frames = round((times[-1] - (appeared - PRE_ROLL_S)) * fps) + 1
        return 1000 * elapsed / clip_frames, clip_frames


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=55.0, help="clip length")
    parser.add_argument("--fps", type=float, default=5.0, help="camera sampling rate")
    parser.add_argument("--clip", type=Path, default=CLIP)
    parser.add_argument("--skip-vp9", action="store_true", help="VP9 takes about a minute")
    args = parser.parse_args()

    count = round(args.seconds * args.fps)
    frames = sampled_frames(args.clip, args.fps, count)
    if len(frames) < count:
        print(f"{args.clip}: expected {count} frames, got {len(frames)}", file=sys.stderr)
        return 1
    print(f"{count} frames, {SIZE[0]}x{SIZE[1]} at {args.fps:g} fps", file=sys.stderr)

    codecs = [("vp8", "VP80", ".webm"), ("vp9", "VP90", ".webm"), ("mp4v", "mp4v", ".mp4")]
    for name, fourcc, suffix in codecs:
        if name == "vp9" and args.skip_vp9:
            continue
        ms, size = encode(frames, args.fps, fourcc, suffix)
        print(f"figure: clip_encode_{name}_ms_per_frame = {ms:.1f} ms")
        print(f"figure: clip_encode_{name}_kib = {size / 1024:.0f} KiB")

    for keep in (False, True):
        ms, clip_frames = recorder_step(frames, args.fps, keep)
        name = "clip_step_with_original" if keep else "clip_step"
        print(f"figure: {name}_ms_per_clip_frame = {ms:.1f} ms ({clip_frames} clip frames)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
