"""The import rules of the design: the spine imports no stage; stages import only the spine;
third-party SDKs stay out of the pure cores."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import REPO

STAGES = ("ingest", "detectors", "streams", "storage", "dashboards")
PURE_CORES = (
    "ingest/sampling.py",
    "ingest/validation.py",
    "storage/rows.py",
    "pantau/messages.py",
    "pantau/codec.py",
    "pantau/settings.py",
    "detectors/zones.py",
    "detectors/dumping.py",
    "dashboards/macros.py",
    "dashboards/queries.py",
)
SDKS = (
    "cv2", "ultralytics", "kafka", "aiokafka", "faust", "psycopg", "paho", "torch",
    "grafana_foundation_sdk", "grafana_client",
)  # fmt: skip


def imported_top_levels(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def python_files(package: str) -> list[Path]:
    return sorted((REPO / package).rglob("*.py"))


def test_spine_imports_no_stage() -> None:
    offenders = {
        str(path.relative_to(REPO)): sorted(imported_top_levels(path) & set(STAGES))
        for path in python_files("pantau")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


@pytest.mark.parametrize("stage", STAGES)
def test_stages_import_only_the_spine(stage: str) -> None:
    others = set(STAGES) - {stage}
    offenders = {
        str(path.relative_to(REPO)): sorted(imported_top_levels(path) & others)
        for path in python_files(stage)
    }
    assert {k: v for k, v in offenders.items() if v} == {}


@pytest.mark.parametrize("module", PURE_CORES)
def test_pure_cores_use_no_sdk(module: str) -> None:
    assert imported_top_levels(REPO / module) & set(SDKS) == set()
