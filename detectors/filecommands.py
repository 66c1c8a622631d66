"""`pantau detect-file` and `pantau evaluate`: the dumping detector on files, offline."""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import yaml
from pydantic import ValidationError

from pantau.commands import Context
from pantau.messages import CameraView
from pantau.settings import CameraSettings, Settings

if TYPE_CHECKING:
    from detectors.backends import Backend


def utc_time(text: str) -> datetime:
    """ISO 8601; a time without an offset is taken as UTC."""
    value = datetime.fromisoformat(text)
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def load_camera(path: Path, video: Path) -> CameraSettings:
    """A camera from a YAML file: one entry shaped like those of the settings' `cameras:`
    (id, zones, fps, ...); the url defaults to the video."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"camera config {path}: {exc}") from exc
    if isinstance(raw, dict) and "cameras" in raw:
        cameras = raw["cameras"]
        if not isinstance(cameras, list) or len(cameras) != 1:
            raise ValueError(f"camera config {path}: expected exactly one camera under cameras:")
        raw = cameras[0]
    if not isinstance(raw, dict):
        raise ValueError(f"camera config {path}: expected a mapping, got {type(raw).__name__}")
    raw.setdefault("url", str(video))
    try:
        return CameraSettings.model_validate(raw, context={"base_dir": path.parent})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise ValueError(f"camera config {path}: {problems}") from exc


def _backend(settings: Settings) -> Backend:
    from detectors.backends import DetectorError, load_backend

    if settings.detector is None:
        raise ValueError("no detector configured (settings: detector)")
    try:
        return load_backend(settings.detector)
    except DetectorError as exc:
        raise ValueError(str(exc)) from exc


def detect_file(args: argparse.Namespace, ctx: Context) -> int:
    from detectors.offline import FileRun

    settings = ctx.settings
    video: Path = args.video
    if not video.is_file():
        print(f"pantau detect-file: no such video: {video}", file=sys.stderr)
        return 2
    try:
        camera = load_camera(args.camera_config, video)
        if args.evidence_dir is not None:
            evidence = settings.dumping.evidence.model_copy(update={"dir": args.evidence_dir})
            dumping = settings.dumping.model_copy(update={"evidence": evidence})
            settings = settings.model_copy(update={"dumping": dumping})
        backend = _backend(settings)
    except ValueError as exc:
        print(f"pantau detect-file: {exc}", file=sys.stderr)
        return 2
    origin = args.start or datetime.now(UTC)
    run = FileRun(camera, settings=settings, backend=backend, origin=origin, dwell_s=args.dwell)
    started = time.monotonic()
    for event in run.events(video, progress=not args.json and sys.stderr.isatty()):
        if args.json:
            print(event.model_dump_json(), flush=True)
        elif isinstance(event, CameraView):
            print(
                f"view   {event.condition:<9} {event.phase:<5} {event.camera_id}  at "
                f"{event.ts_capture:%H:%M:%S}  outline moved {event.changed_frac:.0%}  "
                f"spread {event.brightness_spread:.1f}  detail {event.sharpness_ratio:.2f}"
                + (f"  relearning {event.relearn_s:.0f} s" if event.relearn_s else ""),
                flush=True,
            )
        else:
            where = f"zone {event.zone_id}" if event.zone_id else "whole frame"
            print(
                f"{event.phase:<6} {event.state:<9} {event.event_id}  {event.camera_id} "
                f"{where}  appeared {event.appeared_at:%H:%M:%S}  alert "
                f"{event.alerted_at:%H:%M:%S}  conf {event.confidence:.2f}  "
                f"evidence {len(event.evidence)}",
                flush=True,
            )
    wall = time.monotonic() - started
    stats = run.stats
    print(
        f"detect-file: {stats.frames_read} frames over {stats.video_s:.1f} s of video "
        f"({stats.frames_gated} held back by the motion gate) in "
        f"{wall:.1f} s ({stats.video_s / max(wall, 1e-6):.1f}x real time), "
        f"{stats.events} event messages {dict(sorted(stats.by_phase.items()))}, "
        f"{stats.view_changes} view changes"
        + (f", {stats.failures} frames the pipeline failed on (logged)" if stats.failures else "")
        + f"; evidence under {settings.dumping.evidence.dir}",
        file=sys.stderr,
    )
    return 0


def evaluate(args: argparse.Namespace, ctx: Context) -> int:
    # The evaluation harness stays out of the runtime: loaded only when asked for.
    from detectors.evaluation.commands import run_evaluate

    return run_evaluate(args, ctx, _backend)
