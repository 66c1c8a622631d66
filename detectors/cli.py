"""Subcommand of the detector stage: `detect`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pantau.commands import Context, SubParsers
from pantau.runtime import stop_after, stop_on_signals


def register(sub: SubParsers) -> None:
    detect = sub.add_parser("detect", help="run the YOLO detector on frames from Kafka")
    detect.add_argument("--duration", type=float, help="stop after this many seconds")
    detect.add_argument("--max-frames", type=int, help="stop after this many frames")
    detect.add_argument(
        "--snapshot-dir", type=Path, help="write the latest annotated frame per camera here (PNG)"
    )
    detect.set_defaults(handler=_detect)


def _detect(args: argparse.Namespace, ctx: Context) -> int:
    from detectors.backends import DetectorError, load_backend
    from detectors.service import build

    settings = ctx.settings
    if settings.detector is None:
        print("pantau detect: no detector configured (settings: detector)", file=sys.stderr)
        return 2
    if args.snapshot_dir is not None:
        settings = settings.model_copy(
            update={
                "detect": settings.detect.model_copy(update={"snapshot_dir": args.snapshot_dir})
            }
        )
    detector = settings.detector
    assert detector is not None
    stop = stop_on_signals()
    try:
        service = build(settings, lambda: load_backend(detector))
    except DetectorError as exc:
        print(f"pantau detect: {exc}", file=sys.stderr)
        return 2
    stop_after(stop, args.duration)
    try:
        stats = service.run(stop, max_frames=args.max_frames)
    finally:
        service.close()
    labels = ", ".join(f"{k} {v}" for k, v in sorted(stats.by_label.items(), key=lambda kv: -kv[1]))
    per_frame_ms = stats.inference_s * 1000.0 / max(stats.frames, 1)
    print(
        f"detector: {stats.frames} frames, {per_frame_ms:.0f} ms inference per frame, "
        f"{stats.boxes} boxes ({labels or 'none'}), {stats.dead_letters} dead letters"
    )
    return 0
