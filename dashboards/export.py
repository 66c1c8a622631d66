"""Render the dashboards and Grafana's provisioning files, deterministically.

`pantau dashboards export --out DIR` writes:

    DIR/dashboards/<name>.json                  the four dashboards (mounted for provisioning)
    DIR/provisioning/datasources/pantau.yaml    the PostgreSQL/TimescaleDB datasource
    DIR/provisioning/dashboards/pantau.yaml     the file provider for DIR/dashboards
    DIR/provisioning/alerting/pantau.yaml       alert rules, contact point, policy

The repository keeps one export in `dashboards/grafana/` (what docker-compose mounts); a
test checks that it is what the code renders today.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.cog.encoder import JSONEncoder

from dashboards import alerting, dumping, environment, pipeline, wall
from dashboards.common import (
    DATASOURCE_NAME,
    DATASOURCE_TYPE,
    DATASOURCE_UID,
    FOLDER_TITLE,
    FOLDER_UID,
)
from pantau.settings import Settings

# File name → builder. The order is the order of the folder in Grafana's list.
BUILDERS: dict[str, Callable[[Settings], db.Dashboard]] = {
    "wall": wall.build,
    "environment": environment.build,
    "dumping": dumping.build,
    "pipeline": pipeline.build,
}

# Where Grafana finds the dashboards inside its container (see docker-compose.yml).
CONTAINER_DASHBOARDS = "/var/lib/grafana/dashboards/pantau"


def render_dashboards(settings: Settings) -> dict[str, dict[str, Any]]:
    """Every dashboard as the JSON object Grafana stores, keyed by file name."""
    rendered: dict[str, dict[str, Any]] = {}
    for name, build in BUILDERS.items():
        model = json.loads(json.dumps(build(settings).build(), cls=JSONEncoder))
        # Stable panel ids: Grafana keys links and panel state by them.
        for number, panel in enumerate(model.get("panels", []), start=1):
            panel["id"] = number
        model.pop("id", None)
        rendered[name] = model
    return rendered


def datasource_provisioning(settings: Settings) -> dict[str, Any]:
    """The datasource as Grafana's provisioning reads it; the password comes from
    Grafana's environment ($PANTAU_GRAFANA_DB_PASSWORD), never from this file."""
    return {
        "apiVersion": 1,
        "datasources": [
            {
                "name": DATASOURCE_NAME,
                "uid": DATASOURCE_UID,
                "type": DATASOURCE_TYPE,
                "access": "proxy",
                "url": "$PANTAU_GRAFANA_DB_HOST",
                "user": "pantau_grafana",
                "isDefault": True,
                "editable": False,
                "jsonData": datasource_json_data(settings, database="$PANTAU_GRAFANA_DB_NAME"),
                "secureJsonData": {"password": "$PANTAU_GRAFANA_DB_PASSWORD"},
            }
        ],
    }


def datasource_json_data(settings: Settings, *, database: str) -> dict[str, Any]:
    return {
        "database": database,
        "sslmode": _grafana_sslmode(settings.postgres.sslmode),
        "postgresVersion": 1500,
        # The deployment runs TimescaleDB: $__timeGroup uses time_bucket().
        "timescaledb": settings.storage.timescale != "off",
        "timeInterval": "1m",
        # Grafana's PostgreSQL datasource has no query timeout: the wall's queries run under
        # pantau_grafana's 15 s statement_timeout, a default any query may change for its
        # session (SET statement_timeout = 0, from Explore or an edited panel). The pool
        # bounds what that can do: at most 10 sessions at once, and a session is replaced
        # after 5 minutes, so a lifted limit does not stay on a pooled connection for hours.
        "maxOpenConns": 10,
        "maxIdleConns": 10,
        "connMaxLifetime": 300,
    }


def _grafana_sslmode(mode: str) -> str:
    # Grafana offers disable, require, verify-ca and verify-full; libpq's "try TLS first"
    # modes become disable, as the compose network's database serves plain connections.
    return mode if mode in ("require", "verify-ca", "verify-full") else "disable"


def dashboard_provisioning() -> dict[str, Any]:
    return {
        "apiVersion": 1,
        "providers": [
            {
                "name": "pantau",
                "orgId": 1,
                "folder": FOLDER_TITLE,
                "folderUid": FOLDER_UID,
                "type": "file",
                "disableDeletion": True,
                # The files are the source of truth: edits in the UI cannot be saved over them.
                "allowUiUpdates": False,
                "updateIntervalSeconds": 60,
                "options": {"path": CONTAINER_DASHBOARDS, "foldersFromFilesStructure": False},
            }
        ],
    }


def dump_json(model: dict[str, Any]) -> str:
    return json.dumps(model, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (SQL) as literal blocks, so the files read like the code."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def dump_yaml(model: dict[str, Any]) -> str:
    header = "# Generated by `pantau dashboards export`; edit the dashboards package instead.\n"
    body = yaml.dump(model, Dumper=_Dumper, sort_keys=True, allow_unicode=True, width=100)
    return header + body


def render_files(settings: Settings) -> dict[str, str]:
    """Relative path → file content, for everything the export writes."""
    files = {
        f"dashboards/{name}.json": dump_json(model)
        for name, model in render_dashboards(settings).items()
    }
    files["provisioning/datasources/pantau.yaml"] = dump_yaml(datasource_provisioning(settings))
    files["provisioning/dashboards/pantau.yaml"] = dump_yaml(dashboard_provisioning())
    files["provisioning/alerting/pantau.yaml"] = dump_yaml(alerting.provisioning())
    return files


def export(settings: Settings, out: Path) -> list[Path]:
    """Write the rendered files under `out`; returns their paths."""
    written = []
    for relative, content in render_files(settings).items():
        path = out / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, encoding="utf-8")
        written.append(path)
    return written
