"""Motion gate cost and effect on the shared clip (768x432, 10 fps, 139 s).

Run: `.venv/bin/python bench/motion_gate.py [--fps 5] [--config configs/pantau.yaml]`.
Decodes the clip, samples it at the camera's fps by the frames' own times (as the camera loop
does) and times `MotionGate.decide` on each sampled frame, right after its decode, as in the
camera loop. The gate uses the demo camera's settings from the config. No services needed.

Figures: the gate's time per frame (p50 and p95) and the share of sampled frames it publishes.
The clip is busy (someone is at the table for most of its 139 s), so the share on it is high;
an empty street is where the gate saves most.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

import cv2

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ingest.sampling import FpsSampler  # noqa: E402
from pantau.motion import MotionGate  # noqa: E402
from pantau.settings import MotionSettings, load_settings  # noqa: E402

SHARED = Path(os.environ.get("PANTAU_SHARED_DATA") or REPO.parent / "shared" / "data")
CLIP = SHARED / "video" / "intel-sample-videos" / "one-by-one-person-detection.mp4"
CAMERA = "demo-table"


def gate_settings(config: Path) -> MotionSettings:
    env = {**os.environ, "PANTAU_SHARED_DATA": str(SHARED)}
    settings = load_settings(config, env)
    return settings.camera(CAMERA).motion_gate(settings.ingest.motion)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--fps", type=float, default=5.0, help="camera sampling rate")
    parser.add_argument("--config", type=Path, default=REPO / "configs" / "pantau.yaml")
    parser.add_argument("--clip", type=Path, default=CLIP)
    args = parser.parse_args()

    motion = gate_settings(args.config)
    print(f"gate settings: {motion.model_dump()}", file=sys.stderr)
    gate = MotionGate(motion)
    sampler = FpsSampler(args.fps)
    capture = cv2.VideoCapture(str(args.clip))
    if not capture.isOpened():
        print(f"cannot open {args.clip}", file=sys.stderr)
        return 1
    timings_ns: list[int] = []
    reasons: Counter[str] = Counter()
    decoded = 0
    size = (0, 0)
    try:
        while capture.grab():
            decoded += 1
            t = float(capture.get(cv2.CAP_PROP_POS_MSEC)) / 1000.0
            if not sampler.take(t):
                continue
            ok, image = capture.retrieve()
            if not ok:
                break
            size = (image.shape[1], image.shape[0])
            started = time.perf_counter_ns()
            decision = gate.decide(image, t)
            timings_ns.append(time.perf_counter_ns() - started)
            reasons[decision.reason] += 1
    finally:
        capture.release()
    if not timings_ns:
        print(f"no frames decoded from {args.clip}", file=sys.stderr)
        return 1

    # The first call pays for OpenCV's lazy initialisation; it is not a per-frame cost.
    ms = sorted(ns / 1e6 for ns in timings_ns[1:] or timings_ns)
    p95 = ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))]
    sampled = sum(reasons.values())
    published = sampled - reasons["skip"]
    print(
        f"{decoded} frames decoded ({size[0]}x{size[1]}), {sampled} sampled at {args.fps:g} fps, "
        f"{published} published; gate reasons: "
        + ", ".join(f"{r} {n}" for r, n in sorted(reasons.items())),
        file=sys.stderr,
    )
    print(f"figure: motion_gate_ms = {statistics.median(ms):.3f} ms")
    print(f"figure: motion_gate_p95_ms = {p95:.3f} ms")
    print(f"figure: motion_gate_published_share = {100 * published / sampled:.1f} %")
    return 0


if __name__ == "__main__":
    sys.exit(main())
