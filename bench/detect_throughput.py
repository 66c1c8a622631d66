"""Detector throughput on this machine: frames of the shared clip through Kafka and YOLO.

Run with the services up: `python bench/detect_throughput.py [--frames 300] [--model PATH]`.
Publishes frames under a throw-away topic prefix, then times the detector service draining
them (model load excluded). Prints one `figure:` line per measurement.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from detectors.backends import load_backend  # noqa: E402
from detectors.service import build  # noqa: E402
from pantau.settings import load_settings  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--model", type=Path, help="default: detector.model of the config")
    parser.add_argument("--batch", type=int, help="default: detector.max_batch of the config")
    parser.add_argument("--config", type=Path, default=REPO / "configs" / "pantau.yaml")
    args = parser.parse_args()

    tag = f"bench-{uuid.uuid4().hex[:6]}"
    env = {
        **os.environ,
        "PANTAU__KAFKA__TOPIC_PREFIX": f"{tag}.",
        "PANTAU__DETECT__GROUP_ID": f"{tag}-detect",
    }
    if args.model:
        env["PANTAU__DETECTOR__MODEL"] = str(args.model)
    if args.batch:
        env["PANTAU__DETECTOR__MAX_BATCH"] = str(args.batch)
    settings = load_settings(args.config, env)
    assert settings.detector is not None

    print(f"publishing {args.frames} frames of the sample clip…", file=sys.stderr)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pantau.cli",
            "--config",
            str(args.config),
            "--log-level",
            "WARNING",
            "ingest",
            "camera",
            "--no-realtime",
            "--loop",
            "--max-frames",
            str(args.frames),
        ],
        check=True,
        env=env,
        cwd=REPO,
    )
    detector = settings.detector
    service = build(settings, lambda: load_backend(detector))
    started = time.perf_counter()
    stats = service.run(threading.Event(), max_frames=args.frames)
    elapsed = time.perf_counter() - started
    service.close()

    print(f"figure: detect_fps = {stats.frames / elapsed:.1f} frames/s")
    print(f"figure: inference_ms_per_frame = {stats.inference_s * 1000 / stats.frames:.1f} ms")
    print(f"figure: detect_frames = {stats.frames} frames")
    print(
        f"model {detector.model.name}, imgsz {detector.imgsz}, batch {detector.max_batch}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
