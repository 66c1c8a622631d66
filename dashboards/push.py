"""Push the folder, the datasource and the dashboards to a running Grafana over its HTTP API.

Idempotent: the folder and the datasource are created when missing and updated in place
when present (same uid); dashboards are saved with `overwrite` under their fixed uid, so
Grafana updates them and keeps its version history, never duplicating one. The token (a
Grafana service-account token) comes from the environment and is never printed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from grafana_client import GrafanaApi
from grafana_client.client import GrafanaClientError, GrafanaException

from dashboards.common import (
    DATASOURCE_NAME,
    DATASOURCE_TYPE,
    DATASOURCE_UID,
    FOLDER_TITLE,
    FOLDER_UID,
)
from dashboards.export import datasource_json_data, render_dashboards
from pantau.settings import Settings

log = logging.getLogger(__name__)

TOKEN_VARIABLE = "PANTAU_GRAFANA_TOKEN"  # noqa: S105 (a variable name, not a secret)


class PushError(RuntimeError):
    """Grafana refused a request; the message says which object and why."""


@dataclass(frozen=True)
class Target:
    """Where the datasource points, as Grafana (not this machine) reaches the database."""

    db_host: str
    db_name: str
    db_password: str | None


@dataclass
class PushReport:
    actions: list[tuple[str, str, str]] = field(default_factory=list)  # (kind, uid, action)

    def add(self, kind: str, uid: str, action: str) -> None:
        self.actions.append((kind, uid, action))
        log.info("grafana %s %s: %s", kind, uid, action)


def _missing(exc: GrafanaException) -> bool:
    return isinstance(exc, GrafanaClientError) and exc.status_code == 404


def _call(what: str, request: Callable[[], Any]) -> Any:
    try:
        return request()
    except GrafanaException as exc:
        raise PushError(f"{what}: Grafana answered {exc.status_code}: {exc.message}") from exc


def datasource_payload(settings: Settings, target: Target) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "name": DATASOURCE_NAME,
        "uid": DATASOURCE_UID,
        "type": DATASOURCE_TYPE,
        "access": "proxy",
        "url": target.db_host,
        "user": "pantau_grafana",
        "isDefault": True,
        "jsonData": datasource_json_data(settings, database=target.db_name),
    }
    if target.db_password:
        payload["secureJsonData"] = {"password": target.db_password}
    return payload


def push(
    api: GrafanaApi, settings: Settings, target: Target, *, message: str = "pantau dashboards push"
) -> PushReport:
    report = PushReport()

    try:
        folder = api.folder.get_folder(FOLDER_UID)
    except GrafanaException as exc:
        if not _missing(exc):
            raise PushError(
                f"folder {FOLDER_UID}: Grafana answered {exc.status_code}: {exc.message}"
            ) from exc
        _call(
            f"create folder {FOLDER_UID}",
            lambda: api.folder.create_folder(FOLDER_TITLE, uid=FOLDER_UID),
        )
        report.add("folder", FOLDER_UID, "created")
    else:
        if folder.get("title") != FOLDER_TITLE:
            _call(
                f"update folder {FOLDER_UID}",
                lambda: api.folder.update_folder(
                    FOLDER_UID, title=FOLDER_TITLE, version=folder.get("version"), overwrite=True
                ),
            )
            report.add("folder", FOLDER_UID, "updated")
        else:
            report.add("folder", FOLDER_UID, "unchanged")

    payload = datasource_payload(settings, target)
    try:
        api.datasource.get_datasource_by_uid(DATASOURCE_UID)
    except GrafanaException as exc:
        if not _missing(exc):
            raise PushError(
                f"datasource {DATASOURCE_UID}: Grafana answered {exc.status_code}: {exc.message}"
            ) from exc
        _call(
            f"create datasource {DATASOURCE_UID}", lambda: api.datasource.create_datasource(payload)
        )
        report.add("datasource", DATASOURCE_UID, "created")
    else:
        _call(
            f"update datasource {DATASOURCE_UID}",
            lambda: api.datasource.update_datasource_by_uid(DATASOURCE_UID, payload),
        )
        report.add("datasource", DATASOURCE_UID, "updated")

    for name, model in render_dashboards(settings).items():
        uid = model["uid"]
        body = {"dashboard": model, "folderUid": FOLDER_UID, "overwrite": True, "message": message}
        saved = _call(
            f"save dashboard {uid} ({name})", partial(api.dashboard.update_dashboard, body)
        )
        version = saved.get("version") if isinstance(saved, dict) else None
        report.add("dashboard", uid, f"saved, version {version}")
    return report
