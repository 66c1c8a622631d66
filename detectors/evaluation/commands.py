"""`pantau evaluate`: the evaluation harness from the command line.

    pantau evaluate ANNOTATIONS [--out DIR]               the configured detector on the clips
    pantau evaluate make-synthetic DIR [--dwell-s S]      render the synthetic set, annotated
    pantau evaluate run-stand-in ANNOTATIONS [--out DIR]  synthetic clips, exact boxes for YOLO
    pantau evaluate check ANNOTATIONS                     load an annotation file, list its clips

A first argument that is one of the subcommand names picks it; anything else is an annotation
file (`./check` reaches a file of that name).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from detectors.evaluation.annotations import AnnotationError, load_annotations
from detectors.evaluation.report import format_table, write_report
from detectors.evaluation.runners import clip_runner, truth_box_runner
from detectors.evaluation.scoring import EvaluationError, evaluate
from detectors.evaluation.synthetic_set import make_synthetic_set
from pantau.commands import Context
from pantau.settings import Settings

if TYPE_CHECKING:
    from detectors.backends import Backend

PROG = "pantau evaluate"
SUBCOMMANDS = ("make-synthetic", "run-stand-in", "check")
DEFAULT_OUT = Path("evaluation")
DEFAULT_SYNTHETIC_DWELL_S = 30.0

BackendFactory = Callable[[Settings], "Backend"]


def run_evaluate(args: argparse.Namespace, ctx: Context, backend: BackendFactory) -> int:
    """`args`: `target` (a subcommand name or the annotation file), `path` (the subcommand's
    folder or annotation file), `out`, `dwell_s`. `backend(settings)` loads the detector,
    raising ValueError with the reason when it cannot."""
    target: str = args.target
    operand: Path | None = args.path
    command = target if target in SUBCOMMANDS else "detector"
    misuse = _misuse(command, operand, out=args.out, dwell_s=args.dwell_s)
    if misuse:
        print(f"{PROG}: {misuse}", file=sys.stderr)
        return 2
    if command == "detector":
        return _run_detector(Path(target), args.out or DEFAULT_OUT, ctx, backend)
    assert operand is not None
    try:
        if command == "make-synthetic":
            dwell_s = args.dwell_s if args.dwell_s is not None else DEFAULT_SYNTHETIC_DWELL_S
            print(make_synthetic_set(operand, dwell_s=dwell_s))
            return 0
        annotations = load_annotations(operand, ctx.environ)
        if command == "check":
            for clip in annotations.clips:
                print(
                    f"{clip.name}: {len(clip.events)} events, "
                    f"{len(clip.view_changes)} view changes, {clip.video}"
                )
            return 0
        report = evaluate(annotations, truth_box_runner())
        print(format_table(report), end="")
        if args.out is not None:
            for path in write_report(report, args.out).values():
                print(path)
        return 0
    except (AnnotationError, EvaluationError, OSError) as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2


def _misuse(command: str, operand: Path | None, *, out: Path | None, dwell_s: float | None) -> str:
    """What is wrong with the arguments for `command`; empty when nothing is."""
    if command == "detector":
        if operand is not None:
            return f"expected one annotation file, got a second argument {str(operand)!r}"
    elif operand is None:
        what = "a folder" if command == "make-synthetic" else "an annotation file"
        return f"{command}: expected {what} after it, got none"
    if out is not None and command in ("make-synthetic", "check"):
        return f"{command}: --out applies to evaluations, got it with {command}"
    if dwell_s is not None and command != "make-synthetic":
        return "--dwell-s applies to make-synthetic only"
    return ""


def _run_detector(path: Path, out: Path, ctx: Context, backend: BackendFactory) -> int:
    """The configured detector (`pantau detect-file`'s pipeline) on every annotated clip."""
    try:
        annotations = load_annotations(path, ctx.environ)
        detector = backend(ctx.settings)
    except ValueError as exc:  # AnnotationError among them
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    try:
        report = evaluate(annotations, clip_runner(ctx.settings, detector))
    except EvaluationError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 1
    print(format_table(report))
    written = write_report(report, out)
    print(f"evaluate: written {', '.join(str(p) for p in written.values())}", file=sys.stderr)
    return 0
