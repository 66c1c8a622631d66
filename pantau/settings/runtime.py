"""How every process runs: supervision, logging, debugging aids."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import (
    Field,
)

from pantau.settings.base import ConfigPath, Section


class RuntimeSettings(Section):
    """How long-running commands are kept alive (`pantau sink`, `pantau detect`, ...): each
    runs its stage in worker processes under a supervisor that restarts a worker that exits
    with an error or stops making progress, with back-off."""

    supervise: bool = Field(
        True, description="run the stage under the supervisor (off: one bare process)"
    )
    restart_initial_s: float = Field(1.0, gt=0, description="first wait before a restart")
    restart_max_s: float = Field(60.0, gt=0, description="longest wait between restarts")
    restart_reset_after_s: float = Field(
        60.0, gt=0, description="a worker that ran this long starts the back-off afresh"
    )
    stall_after_s: float = Field(
        120.0,
        ge=0,
        description="a worker whose loop has not come round for this long is restarted (0: never)",
    )
    status_dir: ConfigPath = Field(
        Path("../.pantau/health"),
        validate_default=True,
        description="where each supervisor writes its status (`pantau health` reads it)",
    )
    status_interval_s: float = Field(
        10.0, gt=0, description="how often status and `up` metrics are written"
    )


class LoggingSettings(Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


class DebugSettings(Section):
    failpoints: tuple[str, ...] = Field(
        (), description="named points where a process exits abruptly (crash-recovery tests)"
    )
