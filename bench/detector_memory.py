"""The detector's resident memory per camera, with every camera's evidence ring buffer full.

What a detector holds per camera lives in its camera pipeline (tracker, static-object model,
dumping logic, view check, and the evidence ring buffer of `dumping.evidence.buffer_s`
seconds of frames) and, with region-based detection, a small grey picture and the objects
held. This runs such cameras in this process, as the detect stage makes them from the
configured settings, on the shared clip (people at a table) at 5 fps and 640x360, each camera
starting elsewhere in the clip: first N/2 cameras, then N, each time for `buffer_s` plus 15 s
of frames, so every ring buffer is at its configured size when the memory is read. The
network's answers come from the configured detector at 320, once per distinct frame of the
clip (the cameras share the clip).

`detector_rss_mb_per_camera` = (resident memory with N full cameras - with N/2) / (N/2), in
MB (goal: at most 40): what one more camera costs. What the first cameras bring once (code
loaded on first use, the allocator's first pools) is printed beside it, as is the whole
process's memory over N (which falls with N: the network and the runtime are shared).

    python bench/detector_memory.py [--cameras 8]
"""

from __future__ import annotations

import argparse
import gc
import os
import re
import sys
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np
from pipeline_runs import sampled_frames
from tqdm import tqdm

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from detectors.backends import load_backend  # noqa: E402
from detectors.camera import CameraPipeline  # noqa: E402
from detectors.detections import Detections, kept_classes  # noqa: E402
from detectors.events import EventClock  # noqa: E402
from detectors.region_detector import Frame, RegionDetector  # noqa: E402
from pantau.settings import CameraSettings, RegionSettings, load_settings  # noqa: E402

SHARED = Path(os.environ.get("PANTAU_SHARED_DATA", REPO.parent / "shared" / "data"))
CLIP = SHARED / "video" / "intel-sample-videos" / "one-by-one-person-detection.mp4"
FPS = 5.0
WIDTH = 640
_VMRSS = re.compile(r"^VmRSS:\s+(\d+) kB", re.MULTILINE)


def rss_mb() -> float:
    gc.collect()
    found = _VMRSS.search(Path("/proc/self/status").read_text())
    return int(found[1]) / 1024 if found else 0.0


def clip_jpegs(quality: int) -> list[bytes]:
    """The clip at 5 fps, 640 wide, as the camera ingest publishes it (JPEG)."""
    out: list[bytes] = []
    for _, image in sampled_frames(CLIP, FPS, WIDTH):
        ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
        assert ok
        out.append(data.tobytes())
    return out


def run_cameras(
    pipelines: list[CameraPipeline],
    jpegs: list[bytes],
    answers: list[Detections],
    regions: RegionDetector,
    steps: int,
    *,
    start: int,
) -> None:
    """`steps` frames (5 fps) through every camera, camera i starting elsewhere in the clip."""
    total = steps * len(pipelines)
    with tqdm(total=total, desc=f"{len(pipelines)} cameras", unit="frame", file=sys.stderr) as bar:
        for step in range(start, start + steps):
            t = step / FPS
            for i, pipeline in enumerate(pipelines):
                index = (step + i * len(jpegs) // len(pipelines)) % len(jpegs)
                # Each frame's bytes of its own, as each record from Kafka is.
                data = bytes(bytearray(jpegs[index]))
                image = np.asarray(
                    cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), np.uint8
                )
                # The camera's region state (its grey picture, what it holds); the network's
                # answer is the clip frame's, computed once beforehand.
                regions._plan(Frame(pipeline.camera.id, t, image))
                pipeline.frame(t, image, answers[index], data)
                bar.update()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cameras", type=int, default=8)
    parser.add_argument("--extra-s", type=float, default=15.0, help="seconds past buffer_s")
    args = parser.parse_args()
    settings = load_settings(REPO / "configs" / "pantau.yaml", os.environ)
    detector = settings.detector
    assert detector is not None, "configs/pantau.yaml has no detector"
    detector = detector.model_copy(update={"imgsz": 320})
    dumping = settings.dumping
    buffer_s = dumping.evidence.buffer_s
    print(
        f"{args.cameras} cameras; evidence ring buffer {buffer_s:g} s at {FPS:g} fps "
        f"(dumping {'on' if dumping.enabled else 'off'}), "
        f"{buffer_s + args.extra_s:g} s of frames each"
    )

    backend = load_backend(detector)
    classes = kept_classes(detector, dumping, backend.names)
    jpegs = clip_jpegs(85)
    answers: list[Detections] = []
    for data in tqdm(jpegs, desc="network, once per clip frame", unit="frame", file=sys.stderr):
        image = np.asarray(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR))
        answers.append(backend.detect([image])[0])
    regions = RegionDetector(
        backend,
        RegionSettings.model_validate({"enabled": True}),
        320,
        iou=detector.iou,
        classes=classes,
    )
    before = rss_mb()
    print(f"resident before the first camera: {before:.0f} MB (network, runtime, clip)")

    pipelines: list[CameraPipeline] = []
    half = max(1, args.cameras // 2)
    steps = round((buffer_s + args.extra_s) * FPS)
    resident: dict[int, float] = {}
    for count in (half, args.cameras):
        while len(pipelines) < count:
            camera = CameraSettings.model_validate(
                {"id": f"mem-{len(pipelines):02d}", "url": "unconfigured"}
            )
            pipelines.append(
                CameraPipeline(
                    camera,
                    tracker=detector.tracker,
                    dumping=dumping,
                    names=backend.names,
                    clock=EventClock(datetime(2026, 1, 1, tzinfo=UTC)),
                    classes=classes,
                )
            )
        run_cameras(pipelines, jpegs, answers, regions, steps, start=len(resident) * steps)
        resident[count] = rss_mb()
        buffered = [
            len(p.gate.recorder.buffer) if p.gate.recorder is not None else 0 for p in pipelines
        ]
        print(
            f"resident with {count} cameras: {resident[count]:.0f} MB; frames in each ring "
            f"buffer: {min(buffered)} to {max(buffered)} (full: {buffer_s * FPS:.0f})"
        )
    added = args.cameras - half
    per_camera = (resident[args.cameras] - resident[half]) / max(added, 1)
    print(f"figure: detector_rss_mb_per_camera = {per_camera:.1f} MB")
    print(f"figure: detector_rss_mb_total_{args.cameras}_cameras = {resident[args.cameras]:.0f} MB")
    print(
        f"per camera from {half} to {args.cameras} cameras, every ring buffer full; from none "
        f"to {half}: {(resident[half] - before) / half:.0f} MB a camera (what the first "
        "camera brings once, code and the allocator's first pools, is in that); the whole "
        f"process over {args.cameras} cameras: {resident[args.cameras] / args.cameras:.0f} MB"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
