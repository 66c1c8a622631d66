"""`detector.type: auto` against a measurement of its own: is the backend it chooses the
fastest one on this machine?

A fresh calibration (no cache) chooses among the candidates; then every candidate is timed
again, independently, on frames of a shared clip it was not calibrated on, at the same size and
batch. `auto_backend_ratio` = the chosen backend's frames/s / the best frames/s measured here
(1.00 when it chose the fastest; goal >= 0.95).

    python bench/auto_backend.py [--imgsz 640] [--batch 4] [--seconds 8]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from detectors import calibration  # noqa: E402
from detectors.backends import DetectorError, load_backend  # noqa: E402
from pantau.settings import AutoDetector  # noqa: E402
from tests.conftest import OPENVINO_MODEL, PT_MODEL, SAMPLE_CLIP  # noqa: E402


def clip_frames(count: int) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(SAMPLE_CLIP))
    frames: list[np.ndarray] = []
    index = 0
    while len(frames) < count:
        ok, image = capture.read()
        if not ok:
            break
        if index % 25 == 0:  # 2.5 s apart: people come and go
            frames.append(np.asarray(image))
        index += 1
    capture.release()
    return frames


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--imgsz", type=int, choices=(320, 640), default=640)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=8.0, help="timing per backend")
    args = parser.parse_args()
    frames = clip_frames(32)
    with tempfile.TemporaryDirectory(prefix="auto-backend-") as folder:
        auto = AutoDetector(
            model=PT_MODEL,
            int8_model=OPENVINO_MODEL,
            imgsz=args.imgsz,
            max_batch=args.batch,
            exports_dir=Path(folder),
        )
        started = time.monotonic()
        choice, _ = calibration.calibrate(auto, use_cache=False)
        took = time.monotonic() - started
        print(f"cpu: {choice.cpu}", file=sys.stderr)
        print(f"calibration ({took:.1f} s, exports included): {choice.summary()}", file=sys.stderr)
        rates: dict[str, float] = {}
        name: str
        for name in tqdm(auto.candidates, desc="timing", unit="backend"):
            try:
                backend = load_backend(calibration.concrete(auto, name))
            except DetectorError as exc:
                print(f"{name}: not run ({exc})", file=sys.stderr)
                continue
            batches = [frames[i : i + args.batch] for i in range(0, len(frames), args.batch)]
            for b in batches:
                backend.detect(b)
            done, began = 0, time.perf_counter()
            while time.perf_counter() - began < args.seconds:
                for b in batches:
                    backend.detect(b)
                    done += len(b)
            rates[name] = done / (time.perf_counter() - began)
            print(f"{name}: {rates[name]:.1f} frames/s", file=sys.stderr)
    best = max(rates, key=lambda n: rates[n])
    for label, rate in rates.items():
        print(f"figure: {label.replace('-', '_')}_frames_per_s_{args.imgsz} = {rate:.1f} frames/s")
    print(f"figure: auto_backend_chosen = {choice.name} ({best} fastest)")
    print(f"figure: auto_calibration_s = {took:.1f} s")
    print(f"figure: auto_backend_ratio = {rates[choice.name] / rates[best]:.2f} x")


if __name__ == "__main__":
    main()
