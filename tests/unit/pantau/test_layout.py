"""The import rules of the design: the spine imports no stage; stages import only the spine;
third-party SDKs stay out of the pure cores; the runtime never loads the evaluation harness."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import REPO

STAGES = ("ingest", "detectors", "streams", "storage", "dashboards")
PURE_CORES = (
    *(f"pantau/settings/{p.name}" for p in sorted((REPO / "pantau" / "settings").glob("*.py"))),
    "ingest/sampling.py",
    "ingest/validation.py",
    "storage/rows.py",
    "pantau/messages.py",
    "pantau/codec.py",
    "detectors/zones.py",
    "detectors/dumping.py",
    "detectors/regions.py",
    "dashboards/macros.py",
    "dashboards/queries.py",
    "streams/engine.py",
    "streams/routing.py",
    "streams/templates.py",
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


EVALUATION = "detectors.evaluation"
RUNTIME = ("ingest", "streams", "storage", "dashboards", "pantau", "detectors")
# `pantau evaluate` is the one way in: its handler loads the harness when it runs.
LAZY_EVALUATION = ("detectors/filecommands.py", "evaluate")


def imported_modules(node: ast.AST, package: str) -> set[str]:
    """Every module an import under `node` names, relative imports resolved against
    `package`; `from a import b` counts as `a` and `a.b`."""
    names: set[str] = set()
    for child in ast.walk(node):
        if isinstance(child, ast.Import):
            names.update(alias.name for alias in child.names)
        elif isinstance(child, ast.ImportFrom):
            base = child.module or ""
            if child.level:
                parent = package.split(".")[: len(package.split(".")) - child.level + 1]
                base = ".".join([*parent, base] if base else parent)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in child.names)
    return names


def loads_evaluation(node: ast.AST, package: str) -> bool:
    return any(
        m == EVALUATION or m.startswith(EVALUATION + ".") for m in imported_modules(node, package)
    )


def package_of(path: Path) -> str:
    return ".".join(path.relative_to(REPO).parts[:-1])


def test_the_runtime_never_imports_the_evaluation_harness() -> None:
    lazy_file, lazy_function = LAZY_EVALUATION
    offenders = []
    for stage in RUNTIME:
        for path in python_files(stage):
            name = path.relative_to(REPO).as_posix()
            if name.startswith("detectors/evaluation/"):
                continue
            tree = ast.parse(path.read_text(), filename=str(path))
            nodes: list[ast.stmt] = tree.body
            if name == lazy_file:
                handler = [
                    n for n in nodes if isinstance(n, ast.FunctionDef) and n.name == lazy_function
                ]
                # The check must see the import it allows, or it sees nothing at all.
                assert [loads_evaluation(n, package_of(path)) for n in handler] == [True]
                nodes = [n for n in nodes if n not in handler]
            if any(loads_evaluation(n, package_of(path)) for n in nodes):
                offenders.append(name)
    assert offenders == []
