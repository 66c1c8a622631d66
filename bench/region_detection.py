"""Region-based detection against full-frame detection at 640 and at 320: person recall and
the detector's cost per frame, side by side in one run.

Three ways of detecting the same frames, each on the configured detector (`type: auto`
picks the backend for the size on this machine):

- `640`: every frame whole at 640 (at 640x360 frames: the frame's own resolution);
- `320`: every frame whole at 320 (half the resolution, about a quarter of the work);
- `regions`: the detect stage's region-based detection (`detect.regions`) on the 320
  network: crops at the frame's own resolution around what moved and what was found, the
  whole frame at 320 on each camera's first frame, on the periodic check, and when the crops
  would cover most of it.

Frames: the synthetic set's scenes (rendered here; exact person boxes) and the Intel clips
with people in them (one-by-one, people, store aisle, parking lot), sampled at 5 fps and
scaled to 640 pixels wide as the camera ingest sends them. Each clip is one camera, its frames
in order.

Person recall: the share of people matched by a person box of the configured confidence
(IoU >= 0.5). In the synthetic scenes the people are the scene's own; the Intel clips have
no person boxes, so there the people are what the 640 pass finds at confidence >= 0.5 (640's
recall is then 100 % by construction, and regions must find what 640 found).
`region_recall_delta_pts` = regions' recall minus 640's, in points, the lower of the two sets
(goal: no lower than -2). Cost: the detector process's CPU time per frame over all frames
(network, motion test and crop planning); `region_cost_vs_320` = regions' / 320's (goal <=
1.3). Wall time per frame is printed beside it.

    python bench/region_detection.py [--seconds-per-clip 40] [--intel-seconds 0] [--synthetic-clips 13]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from pipeline_runs import sampled_frames
from tqdm import tqdm

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from detectors.backends import Backend, load_backend  # noqa: E402
from detectors.detections import Detections, kept_classes  # noqa: E402
from detectors.evaluation.synthetic import SyntheticScene  # noqa: E402
from detectors.evaluation.synthetic_set import default_synthetic_clips  # noqa: E402
from detectors.region_detector import Frame, RegionDetector  # noqa: E402
from detectors.regions import box_iou  # noqa: E402
from pantau.settings import RegionSettings, load_settings  # noqa: E402

SHARED = Path(os.environ.get("PANTAU_SHARED_DATA", REPO.parent / "shared" / "data"))
INTEL = SHARED / "video" / "intel-sample-videos"
INTEL_CLIPS = (
    "one-by-one-person-detection.mp4",
    "people-detection.gif",
    "store-aisle-detection.gif",
    "person-bicycle-car-detection.gif",
)
FPS = 5.0
WIDTH = 640
PERSON = 0
# People the 640 pass finds this surely are the Intel clips' people.
PSEUDO_TRUTH_CONFIDENCE = 0.5
MATCH_IOU = 0.5

Box = tuple[float, float, float, float]


@dataclass
class Clip:
    name: str
    group: str  # synthetic | intel
    frames: list[tuple[float, np.ndarray]]
    # The scene's people per frame (synthetic); None: taken from the 640 pass.
    people: list[list[Box]] | None


@dataclass
class ModeResult:
    cpu_s: float = 0.0
    wall_s: float = 0.0
    frames: int = 0
    found: dict[str, list[list[Box]]] = field(default_factory=dict)


def scaled(image: np.ndarray) -> tuple[np.ndarray, float]:
    height, width = image.shape[:2]
    if width <= WIDTH:
        return image, 1.0
    gain = WIDTH / width
    return cv2.resize(image, (WIDTH, round(height * gain)), interpolation=cv2.INTER_AREA), gain


def synthetic_clips(count: int, seconds: float) -> Iterator[Clip]:
    for clip in default_synthetic_clips()[:count]:
        scene = SyntheticScene(clip.spec)
        frames: list[tuple[float, np.ndarray]] = []
        people: list[list[Box]] = []
        step = max(1, round(clip.spec.fps / FPS))
        for index, frame in enumerate(scene.frames()):
            if frame.t > seconds:
                break
            if index % step:
                continue
            image, gain = scaled(frame.image)
            frames.append((frame.t, image))
            people.append(
                [
                    tuple(float(v) * gain for v in actor.box)  # type: ignore[misc]
                    for actor in frame.truth.actors
                    if actor.class_id == PERSON
                ]
            )
        yield Clip(clip.name, "synthetic", frames, people)


def people_in(found: Detections, least: float) -> list[Box]:
    return [
        (float(b[0]), float(b[1]), float(b[2]), float(b[3]))
        for b, c, k in zip(found.xyxy, found.confidence, found.class_id, strict=True)
        if int(k) == PERSON and float(c) >= least
    ]


def matched(truth: Sequence[Box], found: Sequence[Box]) -> int:
    """Greedy one-to-one matching at IoU >= 0.5, best pairs first."""
    pairs = sorted(
        ((box_iou(t, f), i, j) for i, t in enumerate(truth) for j, f in enumerate(found)),
        reverse=True,
    )
    used_t: set[int] = set()
    used_f: set[int] = set()
    for score, i, j in pairs:
        if score < MATCH_IOU:
            break
        if i not in used_t and j not in used_f:
            used_t.add(i)
            used_f.add(j)
    return len(used_t)


def run_mode(
    name: str,
    clips: Sequence[Clip],
    detect: dict[str, object],
    least: float,
    pseudo: bool = False,
) -> ModeResult:
    result = ModeResult()
    total = sum(len(c.frames) for c in clips)
    with tqdm(total=total, desc=name, unit="frame", file=sys.stderr) as bar:
        for clip in clips:
            boxes: list[list[Box]] = []
            for t, image in clip.frames:
                cpu, wall = time.process_time(), time.perf_counter()
                found = detect_one(detect, clip.name, t, image)
                result.cpu_s += time.process_time() - cpu
                result.wall_s += time.perf_counter() - wall
                result.frames += 1
                boxes.append(people_in(found, PSEUDO_TRUTH_CONFIDENCE if pseudo else least))
                bar.update()
            result.found[clip.name] = boxes
    return result


def detect_one(detect: dict[str, object], camera: str, t: float, image: np.ndarray) -> Detections:
    network = detect["network"]
    if isinstance(network, RegionDetector):
        return network.detect([Frame(camera, t, image)])[0]
    assert hasattr(network, "detect")
    return network.detect([image])[0]  # type: ignore[no-any-return]


def recall(
    clips: Sequence[Clip], found: dict[str, list[list[Box]]], truth_of: dict[str, list[list[Box]]]
) -> float:
    hits = total = 0
    for clip in clips:
        for truth, boxes in zip(truth_of[clip.name], found[clip.name], strict=True):
            total += len(truth)
            hits += matched(truth, boxes)
    return 100.0 * hits / max(total, 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--seconds-per-clip", type=float, default=40.0, help="of each synthetic scene"
    )
    parser.add_argument(
        "--intel-seconds", type=float, default=0.0, help="of each Intel clip (0: all of it)"
    )
    parser.add_argument("--synthetic-clips", type=int, default=len(default_synthetic_clips()))
    args = parser.parse_args()
    settings = load_settings(REPO / "configs" / "pantau.yaml", os.environ)
    detector = settings.detector
    assert detector is not None, "configs/pantau.yaml has no detector"
    print(f"cpu: {cpu_model()}; {os.cpu_count()} cores")

    clips: list[Clip] = []
    for clip in tqdm(
        list(synthetic_clips(args.synthetic_clips, args.seconds_per_clip)),
        desc="synthetic scenes",
        unit="clip",
        file=sys.stderr,
    ):
        clips.append(clip)
    for name in INTEL_CLIPS:
        seconds = args.intel_seconds or float("inf")
        clips.append(
            Clip(name, "intel", list(sampled_frames(INTEL / name, FPS, WIDTH, seconds)), None)
        )
    for group in ("synthetic", "intel"):
        chosen = [c for c in clips if c.group == group]
        print(
            f"{group}: {len(chosen)} clips, {sum(len(c.frames) for c in chosen)} frames at {FPS:g} fps"
        )

    full640: Backend = load_backend(detector)
    full320: Backend = load_backend(detector.model_copy(update={"imgsz": 320}))
    least = kept_classes(detector, settings.dumping, full640.names).get(PERSON, detector.confidence)
    region_settings = RegionSettings.model_validate(
        {**settings.detect.regions.model_dump(), "enabled": True}
    )
    regions = RegionDetector(
        full320,
        region_settings,
        320,
        iou=detector.iou,
        classes=kept_classes(detector, settings.dumping, full320.names),
    )
    print(f"networks: 640 {full640.name}, 320 {full320.name}; person confidence {least:g}")

    results = {
        "640": run_mode("640", clips, {"network": full640}, least),
        "320": run_mode("320", clips, {"network": full320}, least),
        "regions": run_mode("regions", clips, {"network": regions}, least),
    }
    # The Intel clips' people: what 640 finds surely.
    pseudo = run_mode(
        "640 (Intel people)",
        [c for c in clips if c.group == "intel"],
        {"network": full640},
        least,
        pseudo=True,
    )
    truth: dict[str, list[list[Box]]] = {}
    for clip in clips:
        truth[clip.name] = clip.people if clip.people is not None else pseudo.found[clip.name]

    deltas: list[float] = []
    for group in ("synthetic", "intel"):
        chosen = [c for c in clips if c.group == group]
        people = sum(len(b) for c in chosen for b in truth[c.name])
        shown = {m: recall(chosen, r.found, truth) for m, r in results.items()}
        delta = shown["regions"] - shown["640"]
        deltas.append(delta)
        print(
            f"{group}: {people} people; person recall 640 {shown['640']:.1f} %, "
            f"320 {shown['320']:.1f} %, regions {shown['regions']:.1f} % "
            f"(regions - 640: {delta:+.1f} points)"
        )
        print(f"figure: region_recall_640_{group} = {shown['640']:.1f} %")
        print(f"figure: region_recall_320_{group} = {shown['320']:.1f} %")
        print(f"figure: region_recall_regions_{group} = {shown['regions']:.1f} %")
    for mode, result in results.items():
        print(
            f"figure: detector_cpu_ms_per_frame_{mode} = "
            f"{1000 * result.cpu_s / result.frames:.2f} ms"
        )
        print(f"wall per frame {mode}: {1000 * result.wall_s / result.frames:.2f} ms")
    stats = regions.stats
    print(f"regions: {stats.summary()}; why: {dict(sorted(stats.reasons.items()))}")
    print(f"figure: region_recall_delta_pts = {min(deltas):+.1f} pts")
    cost = results["regions"].cpu_s / max(results["320"].cpu_s, 1e-9)
    print(f"figure: region_cost_vs_320 = {cost:.2f} x")
    cost640 = results["regions"].cpu_s / max(results["640"].cpu_s, 1e-9)
    print(f"figure: region_cost_vs_640 = {cost640:.2f} x")
    return 0


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


if __name__ == "__main__":
    sys.exit(main())
