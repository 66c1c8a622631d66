"""Subcommands of the detector stage: `detect`, `detector-export`, `detector-calibrate`,
`detect-file`, `evaluate`."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from pantau.commands import Context, SubParsers, supervised
from pantau.runtime import stop_after, stop_on_signals
from pantau.settings import Settings

log = logging.getLogger(__name__)


def register(sub: SubParsers) -> None:
    detect = sub.add_parser("detect", help="run the YOLO detector on frames from Kafka")
    detect.add_argument("--duration", type=float, help="stop after this many seconds")
    detect.add_argument("--max-frames", type=int, help="stop after this many frames")
    detect.add_argument(
        "--snapshot-dir", type=Path, help="write the latest annotated frame per camera here (PNG)"
    )
    detect.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="detector processes in the consumer group under one supervisor "
        "(default: detect.workers)",
    )
    supervised(detect, "detect", _detect_workers)
    detect.set_defaults(handler=_detect)

    export = sub.add_parser(
        "detector-export",
        help="export a .pt checkpoint locally to ONNX or OpenVINO at one input size",
    )
    export.add_argument("--format", choices=("onnx", "openvino"), default="onnx")
    export.add_argument("--imgsz", type=int, choices=(320, 640), default=640)
    export.add_argument(
        "--model", type=Path, help=".pt checkpoint (default: detector.model when it is a .pt)"
    )
    export.add_argument(
        "out",
        nargs="?",
        type=Path,
        default=Path(".pantau/models"),
        metavar="OUT",
        help="folder for the export, reused when it is there (default: .pantau/models)",
    )
    export.set_defaults(handler=_export)

    calibrate = sub.add_parser(
        "detector-calibrate",
        help="type auto: time the candidate backends on this machine and keep the fastest "
        "that agrees with the fp32 reference (as the detector's first start does)",
    )
    calibrate.add_argument(
        "--imgsz", type=int, choices=(320, 640), help="default: detector.imgsz of the config"
    )
    calibrate.add_argument(
        "--fresh", action="store_true", help="measure again even when this machine chose before"
    )
    calibrate.set_defaults(handler=_calibrate)

    from detectors import filecommands

    detect_file = sub.add_parser(
        "detect-file",
        help="run the dumping detector on a video file as fast as it goes; prints the events",
    )
    detect_file.add_argument("video", type=Path)
    detect_file.add_argument(
        "--camera-config",
        type=Path,
        required=True,
        help="YAML of one camera as under `cameras:` (id, zones, fps)",
    )
    detect_file.add_argument("--dwell", type=float, help="seconds unattended before an alert")
    detect_file.add_argument("--json", action="store_true", help="one event message per line")
    detect_file.add_argument(
        "--evidence-dir", type=Path, help="evidence store (default: dumping.evidence.dir)"
    )
    detect_file.add_argument(
        "--start",
        type=filecommands.utc_time,
        help="UTC time of the video's first frame (ISO 8601; default: now)",
    )
    detect_file.set_defaults(handler=filecommands.detect_file)

    evaluate = sub.add_parser(
        "evaluate",
        help="score the dumping detector on annotated clips: precision, recall, F1, delay",
        usage=(
            "%(prog)s [-h] ANNOTATIONS [--out DIR]\n"
            "       %(prog)s make-synthetic DIR [--dwell-s S]\n"
            "       %(prog)s run-stand-in ANNOTATIONS [--out DIR]\n"
            "       %(prog)s check ANNOTATIONS"
        ),
        description=(
            "ANNOTATIONS: run the configured detector on the annotated clips and score it. "
            "make-synthetic: render the synthetic set and its annotations into DIR. "
            "run-stand-in: score synthetic clips with their exact person boxes in place of "
            "YOLO. check: load an annotation file and list its clips."
        ),
    )
    evaluate.add_argument(
        "target",
        metavar="ANNOTATIONS|make-synthetic|run-stand-in|check",
        help="annotations YAML, or a subcommand (./check reaches a file named check)",
    )
    evaluate.add_argument(
        "path", nargs="?", type=Path, metavar="DIR|ANNOTATIONS", help="what the subcommand uses"
    )
    evaluate.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        help="folder for table, JSON and plot (default: evaluation; run-stand-in: the table only)",
    )
    evaluate.add_argument(
        "--dwell-s",
        type=float,
        metavar="S",
        help="make-synthetic: dwell time of the watch zone (default 30)",
    )
    evaluate.set_defaults(handler=filecommands.evaluate)


def _detect_workers(args: argparse.Namespace, settings: Settings) -> int:
    count: int = args.workers or settings.detect.workers
    return count


def _detect(args: argparse.Namespace, ctx: Context) -> int:
    from detectors.backends import DetectorError, load_backend
    from detectors.service import InfrastructureError, build

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
    except InfrastructureError as exc:
        # No input causes this; the frames of the batch are read again after a restart.
        log.critical("pantau detect: stopping: %s", exc, exc_info=exc.__cause__)
        print(f"pantau detect: {exc}", file=sys.stderr)
        return 1
    finally:
        service.close()
    labels = ", ".join(f"{k} {v}" for k, v in sorted(stats.by_label.items(), key=lambda kv: -kv[1]))
    per_frame_ms = stats.inference_s * 1000.0 / max(stats.frames, 1)
    print(
        f"detector: {stats.frames} frames, {per_frame_ms:.0f} ms inference per frame, "
        f"{stats.boxes} boxes ({labels or 'none'}), {stats.dead_letters} dead letters"
    )
    return 0


def _export(args: argparse.Namespace, ctx: Context) -> int:
    from detectors.backends import DetectorError, export_model

    checkpoint: Path | None = args.model
    if checkpoint is None:
        configured = ctx.settings.detector
        if configured is None or configured.model.suffix != ".pt":
            print(
                "pantau detector-export: give --model PATH.pt (the configured detector.model "
                f"is {configured.model if configured else 'not set'}, not a .pt checkpoint)",
                file=sys.stderr,
            )
            return 2
        checkpoint = configured.model
    try:
        path = export_model(checkpoint, args.format, args.imgsz, args.out)
    except DetectorError as exc:
        print(f"pantau detector-export: {exc}", file=sys.stderr)
        return 2
    print(path)
    return 0


def _calibrate(args: argparse.Namespace, ctx: Context) -> int:
    from detectors.backends import DetectorError
    from detectors.calibration import calibrate
    from pantau.settings import AutoDetector

    detector = ctx.settings.detector
    if not isinstance(detector, AutoDetector):
        kind = detector.type if detector is not None else "not set"
        print(
            f"pantau detector-calibrate: detector.type is {kind}; calibration is for type auto",
            file=sys.stderr,
        )
        return 2
    if args.imgsz is not None:
        detector = detector.model_copy(update={"imgsz": args.imgsz})
    try:
        choice, _ = calibrate(detector, use_cache=not args.fresh)
    except DetectorError as exc:
        print(f"pantau detector-calibrate: {exc}", file=sys.stderr)
        return 2
    print(f"cpu: {choice.cpu}")
    for trial in choice.trials:
        if trial.ms_per_frame is None:
            print(f"  {trial.name:14} not run: {trial.error}")
        else:
            print(
                f"  {trial.name:14} {trial.ms_per_frame:6.1f} ms a frame "
                f"(batch {detector.max_batch}), agreement {trial.agreement:.2f}"
            )
    source = "as chosen before on this machine" if choice.cached else "measured now"
    print(f"chosen at {detector.imgsz}: {choice.name} ({source})")
    return 0
