"""Detector latency per backend and input size on this machine: one frame per call.

Run: `.venv/bin/python bench/detector_latency.py [--frames 60] [--runs 2]`. No services
needed. For each backend (ultralytics .pt on PyTorch; OpenVINO and ONNX Runtime, both with
our own pre- and post-processing) at imgsz 320 and 640: load, warm up, then time
`detect([frame])` (pre-processing, inference, decoding and NMS) on real frames of the shared
clip. Runs are interleaved so that other load on the machine spreads over every backend; a
figure is the median over runs of that run's p50 or p95.

OpenVINO: the shared model is int8 and static at 640, so `openvino_640` is that model and
`openvino_320` is an fp32 export of the same .pt at 320 (`openvino_fp32_640` is the fp32 export
at 640, to tell the int8 gain from the size). ONNX exports are made once, locally, under
.pantau/models. Prints one `figure:` line per measurement.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from detectors.backends import Backend, export_model, load_backend  # noqa: E402
from pantau.settings import (  # noqa: E402
    DetectorSettings,
    OnnxDetector,
    OpenVinoDetector,
    UltralyticsDetector,
)

SHARED = Path(os.environ.get("PANTAU_SHARED_DATA") or REPO.parent / "shared" / "data")
CLIP = SHARED / "video" / "intel-sample-videos" / "one-by-one-person-detection.mp4"
PT = SHARED / "models" / "yolo11n-coco-dequantized.pt"
INT8 = SHARED / "models" / "yolo11n_int8_openvino_model"
EXPORTS = REPO / ".pantau" / "models"
WARMUP = 5


def config_for(backend: str, imgsz: int) -> DetectorSettings:
    if backend == "ultralytics":
        return UltralyticsDetector(model=PT, imgsz=imgsz)
    if backend == "openvino" and imgsz == 640:
        return OpenVinoDetector(model=INT8, imgsz=imgsz)
    if backend in ("openvino", "openvino_fp32"):
        return OpenVinoDetector(model=export_model(PT, "openvino", imgsz, EXPORTS), imgsz=imgsz)
    assert backend == "onnx"
    return OnnxDetector(model=export_model(PT, "onnx", imgsz, EXPORTS), imgsz=imgsz)


def clip_frames(count: int) -> list[np.ndarray]:
    """`count` frames spread over the clip (people come and go), at its own 768x432."""
    capture = cv2.VideoCapture(str(CLIP))
    if not capture.isOpened():
        raise SystemExit(f"cannot open {CLIP} (set PANTAU_SHARED_DATA)")
    total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    frames = []
    for index in np.linspace(0, total - 1, count, dtype=int):
        capture.set(cv2.CAP_PROP_POS_FRAMES, int(index))
        ok, image = capture.read()
        if ok:
            frames.append(np.asarray(image))
    capture.release()
    return frames


def time_calls(backend: Backend, frames: list[np.ndarray]) -> list[float]:
    for frame in frames[:WARMUP]:
        backend.detect([frame])
    elapsed = []
    for frame in frames:
        started = time.perf_counter()
        backend.detect([frame])
        elapsed.append((time.perf_counter() - started) * 1000.0)
    return elapsed


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument(
        "--backends", nargs="+", default=["ultralytics", "openvino", "onnx", "openvino_fp32"]
    )
    parser.add_argument("--sizes", nargs="+", type=int, default=[320, 640])
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    frames = clip_frames(args.frames)
    cases = [
        (b, s)
        for b in args.backends
        for s in args.sizes
        if not (b == "openvino_fp32" and s != 640)  # at 320 `openvino` is the fp32 export
    ]
    loaded: dict[tuple[str, int], Backend] = {}
    for backend, size in cases:
        started = time.perf_counter()
        loaded[backend, size] = load_backend(config_for(backend, size))
        print(
            f"{backend} {size}: {loaded[backend, size].name} loaded in "
            f"{time.perf_counter() - started:.1f} s",
            file=sys.stderr,
        )

    p50: dict[tuple[str, int], list[float]] = {case: [] for case in cases}
    p95: dict[tuple[str, int], list[float]] = {case: [] for case in cases}
    for run in range(args.runs):
        for case in cases:
            elapsed = time_calls(loaded[case], frames)
            p50[case].append(percentile(elapsed, 50))
            p95[case].append(percentile(elapsed, 95))
            print(
                f"run {run + 1}: {case[0]} {case[1]}: p50 {p50[case][-1]:.1f} ms, "
                f"p95 {p95[case][-1]:.1f} ms",
                file=sys.stderr,
            )

    summary: Callable[[list[float]], float] = statistics.median
    for backend, size in cases:
        print(f"figure: detector_p50_ms_{backend}_{size} = {summary(p50[backend, size]):.1f} ms")
        print(f"figure: detector_p95_ms_{backend}_{size} = {summary(p95[backend, size]):.1f} ms")
    print(
        f"{len(frames)} frames of {CLIP.name} (768x432), one per call, {WARMUP} warm-up calls, "
        f"median of {args.runs} runs; {os.cpu_count()} CPU cores; openvino_640 is the shared "
        "int8 model, openvino_320 and openvino_fp32_640 fp32 exports of the same .pt"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
