"""What a stage needs to register its subcommands with `pantau`.

A stage's `cli.py` exposes `register(subparsers)`, declared in pyproject.toml under the
`pantau.commands` entry-point group; each subcommand sets `handler` to a function taking the
parsed arguments and a `Context` and returning the exit code.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeAlias

from pantau.settings import DEFAULT_CONFIG, Settings, load_settings

# argparse exposes no public name for it; a string keeps the subscript out of run time.
SubParsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


@dataclass
class Context:
    """Per-invocation state: where the config lives; settings are loaded on first use."""

    config_path: Path
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    _settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings(self.config_path, self.environ)
        return self._settings

    def reload(self) -> None:
        """Read the settings again on next use (the secrets file changed)."""
        self._settings = None


Handler = Callable[[argparse.Namespace, Context], int]
WorkerCount = Callable[[argparse.Namespace, Settings], int]


def supervised(
    parser: argparse.ArgumentParser, component: str, workers: WorkerCount | None = None
) -> None:
    """Mark a long-running subcommand: `pantau` runs it in worker processes under the
    supervisor (`pantau.supervisor`), `workers(args, settings)` of them (default one), unless
    `--no-supervise` or `runtime.supervise: false`. Inside a worker the handler runs as is."""
    parser.add_argument(
        "--supervise",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="restart the stage when it fails or stalls (default: runtime.supervise)",
    )
    parser.set_defaults(supervised_as=component, worker_count=workers)


def config_path_from(arg: Path | None, environ: Mapping[str, str]) -> Path:
    """--config, else $PANTAU_CONFIG, else configs/pantau.yaml."""
    if arg is not None:
        return arg
    if environ.get("PANTAU_CONFIG"):
        return Path(environ["PANTAU_CONFIG"])
    return DEFAULT_CONFIG
