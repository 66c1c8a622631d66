"""How every process runs: supervision, logging, debugging aids."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BeforeValidator,
    Field,
)

from pantau.settings.base import ConfigPath, Section


def _blank_is_none(value: Any) -> Any:
    # `PANTAU__RUNTIME__HEALTH_PORT=` (set, but empty) means "no server", like leaving it out.
    if isinstance(value, str) and not value.strip():
        return None
    return value


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
    # This machine only, unless set: a pod's kubelet probes the pod's own address, so a
    # deployment sets 0.0.0.0 on purpose.
    health_host: str = Field(
        "127.0.0.1",
        min_length=1,
        description="address the supervisor's /healthz, /readyz and /metrics listen on",
    )
    health_port: Annotated[int | None, BeforeValidator(_blank_is_none)] = Field(
        None,
        ge=1,
        le=65535,
        description="port of /healthz, /readyz and /metrics (none: no HTTP server); one "
        "port per supervised command on a machine",
    )
    metrics_open: bool = Field(
        False,
        description="serve /metrics without a token (logged as a warning at start); "
        "otherwise it needs `Authorization: Bearer $PANTAU_METRICS_TOKEN`",
    )


class LoggingSettings(Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


class DebugSettings(Section):
    failpoints: tuple[str, ...] = Field(
        (), description="named points where a process exits abruptly (crash-recovery tests)"
    )
