"""`pantau evaluate` as a user runs it: the annotation file form and its subcommands."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import yaml

from detectors import cli
from pantau.commands import Context
from pantau.settings import settings_from_mapping
from tests.unit.detectors.evaluation.factories import clip_entry


def pantau_evaluate(*argv: str, tmp_path: Path | None = None) -> int:
    """`pantau evaluate ARGV...` as the detector stage registers it; settings without a
    detector."""
    parser = argparse.ArgumentParser(prog="pantau")
    cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["evaluate", *argv])
    base = tmp_path or Path()
    ctx = Context(
        config_path=base / "absent.yaml",
        environ={},
        _settings=settings_from_mapping({}, base),
    )
    code: int = args.handler(args, ctx)
    return code


def test_main_checks_a_file_and_reports_mistakes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "clip.mp4").write_bytes(b"")
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump({"clips": [clip_entry()]}), encoding="utf-8")
    assert pantau_evaluate("check", str(good)) == 0
    assert "street-1: 1 events" in capsys.readouterr().out
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"clips": [clip_entry(video="nope.mp4")]}), encoding="utf-8")
    assert pantau_evaluate("check", str(bad)) == 2
    assert "clip 'street-1': expected a video file" in capsys.readouterr().err


def test_an_annotation_file_is_scored_with_the_configured_detector(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "clip.mp4").write_bytes(b"")
    annotations = tmp_path / "clips.yaml"
    annotations.write_text(yaml.safe_dump({"clips": [clip_entry()]}), encoding="utf-8")
    # The file loads; what stops the run is the detector the settings lack.
    assert pantau_evaluate(str(annotations), "--out", str(tmp_path / "out"), tmp_path=tmp_path) == 2
    assert "pantau evaluate: no detector configured" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_the_stand_in_scores_the_synthetic_set_and_writes_the_report(
    small_set: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "report"
    assert pantau_evaluate("run-stand-in", str(small_set), "--out", str(out)) == 0
    printed = capsys.readouterr().out
    total = next(line for line in printed.splitlines() if line.startswith("TOTAL"))
    assert total.split()[5:11] == ["1", "0", "0", "1.00", "1.00", "1.00"]
    assert {p.name for p in out.iterdir()} == {
        "evaluation.txt",
        "evaluation.json",
        "evaluation.png",
    }
    assert str(out / "evaluation.json") in printed


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["make-synthetic"], "make-synthetic: expected a folder after it, got none"),
        (["run-stand-in"], "run-stand-in: expected an annotation file after it, got none"),
        (["a.yaml", "b.yaml"], "expected one annotation file, got a second argument 'b.yaml'"),
        (["check", "a.yaml", "--out", "x"], "check: --out applies to evaluations"),
        (["run-stand-in", "a.yaml", "--dwell-s", "5"], "--dwell-s applies to make-synthetic only"),
    ],
)
def test_misuse_is_refused_with_what_was_expected(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert pantau_evaluate(*argv) == 2
    assert f"pantau evaluate: {message}" in capsys.readouterr().err


def test_a_missing_annotation_file_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert pantau_evaluate("run-stand-in", str(tmp_path / "gone.yaml")) == 2
    assert "gone.yaml: cannot read it" in capsys.readouterr().err
