"""`pantau dashboards push` against a local server that answers like Grafana's HTTP API
(folders, datasources by uid, dashboards/db) and checks each request the way Grafana would:
authentication, paths, methods, payload shape and overwrite semantics."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.conftest import REPO

TOKEN = "glsa_test_token_4f2b"
DB_PASSWORD = "grafana-db-secret-91"


@dataclass
class FakeGrafana:
    """State of one Grafana organisation, and the requests it saw."""

    folders: dict[str, dict[str, Any]] = field(default_factory=dict)
    datasources: dict[str, dict[str, Any]] = field(default_factory=dict)
    dashboards: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # uid → versions
    requests: list[tuple[str, str]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def _handler(state: FakeGrafana) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _reply(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _body(self) -> dict[str, Any]:
            if self.headers.get("Content-Type", "").split(";")[0] != "application/json":
                state.problems.append(f"{self.command} {self.path}: not JSON")
            length = int(self.headers.get("Content-Length", 0))
            body: dict[str, Any] = json.loads(self.rfile.read(length) or b"{}")
            return body

        def _route(self) -> None:
            state.requests.append((self.command, self.path))
            if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                self._reply(401, {"message": "Unauthorized"})
                return
            method, path = self.command, self.path
            if m := re.fullmatch(r"/api/folders/([\w-]+)", path):
                uid = m.group(1)
                if method == "GET":
                    if uid in state.folders:
                        self._reply(200, state.folders[uid])
                    else:
                        self._reply(404, {"message": "folder not found"})
                    return
                if method == "PUT":
                    body = self._body()
                    if uid not in state.folders:
                        self._reply(404, {"message": "folder not found"})
                        return
                    folder = state.folders[uid]
                    if not body.get("overwrite") and body.get("version") != folder["version"]:
                        self._reply(412, {"message": "the folder has been changed by someone else"})
                        return
                    folder.update(title=body["title"], version=folder["version"] + 1)
                    self._reply(200, folder)
                    return
            if path == "/api/folders" and method == "POST":
                body = self._body()
                if not isinstance(body.get("title"), str) or not body.get("uid"):
                    self._reply(400, {"message": "title and uid required"})
                    return
                if body["uid"] in state.folders:
                    self._reply(409, {"message": "a folder with the same uid already exists"})
                    return
                state.folders[body["uid"]] = {
                    "uid": body["uid"],
                    "title": body["title"],
                    "version": 1,
                }
                self._reply(200, state.folders[body["uid"]])
                return
            if m := re.fullmatch(r"/api/datasources/uid/([\w-]+)", path):
                uid = m.group(1)
                if method == "GET":
                    if uid in state.datasources:
                        shown = {
                            k: v for k, v in state.datasources[uid].items() if k != "secureJsonData"
                        }
                        self._reply(200, shown)
                    else:
                        self._reply(404, {"message": "Data source not found"})
                    return
                if method == "PUT":
                    body = self._body()
                    if uid not in state.datasources or body.get("uid", uid) != uid:
                        self._reply(404, {"message": "Data source not found"})
                        return
                    self._check_datasource(body)
                    state.datasources[uid] = {
                        **body,
                        "version": state.datasources[uid]["version"] + 1,
                    }
                    self._reply(200, {"message": "Datasource updated", "datasource": body})
                    return
            if path == "/api/datasources" and method == "POST":
                body = self._body()
                self._check_datasource(body)
                if any(d["name"] == body.get("name") for d in state.datasources.values()):
                    self._reply(409, {"message": "data source with the same name already exists"})
                    return
                state.datasources[body["uid"]] = {**body, "version": 1}
                self._reply(200, {"message": "Datasource added", "name": body["name"]})
                return
            if path == "/api/dashboards/db" and method == "POST":
                body = self._body()
                dashboard = body.get("dashboard")
                if (
                    not isinstance(dashboard, dict)
                    or not dashboard.get("uid")
                    or not dashboard.get("title")
                ):
                    self._reply(400, {"message": "dashboard with uid and title required"})
                    return
                if dashboard.get("id") is not None:
                    self._reply(404, {"message": "Dashboard not found"})  # ids are per instance
                    return
                if body.get("folderUid") not in state.folders:
                    self._reply(400, {"message": "folder not found"})
                    return
                history = state.dashboards.setdefault(dashboard["uid"], [])
                current = history[-1]["version"] if history else 0
                if history and not body.get("overwrite") and dashboard.get("version") != current:
                    self._reply(
                        412, {"status": "version-mismatch", "message": "changed by someone else"}
                    )
                    return
                history.append({"version": current + 1, "dashboard": dashboard,
                                "folderUid": body["folderUid"], "message": body.get("message", "")})  # fmt: skip
                self._reply(200, {"id": len(state.dashboards), "uid": dashboard["uid"],
                                  "status": "success", "version": current + 1,
                                  "url": f"/d/{dashboard['uid']}/x", "slug": "x"})  # fmt: skip
                return
            self._reply(404, {"message": f"no route {method} {path}"})

        def _check_datasource(self, body: dict[str, Any]) -> None:
            for key in ("name", "type", "access", "url", "uid"):
                if not body.get(key):
                    state.problems.append(f"datasource payload lacks {key}")
            if body.get("access") not in ("proxy", "direct"):
                state.problems.append(f"datasource access {body.get('access')!r}")

        do_GET = do_POST = do_PUT = _route

    return Handler


@pytest.fixture
def grafana() -> Iterator[tuple[str, FakeGrafana]]:
    state = FakeGrafana()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", state
    server.shutdown()
    server.server_close()


def push(url: str, token: str | None) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "PANTAU__POSTGRES__GRAFANA_PASSWORD": DB_PASSWORD}
    if token is not None:
        env["PANTAU_GRAFANA_TOKEN"] = token
    return subprocess.run(
        [sys.executable, "-m", "pantau.cli", "--config", str(REPO / "configs" / "pantau.yaml"),
         "dashboards", "push", "--url", url, "--db-host", "timescaledb:5432"],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=120,
    )  # fmt: skip


def test_push_creates_then_updates_in_place_keeping_history(
    grafana: tuple[str, FakeGrafana],
) -> None:
    url, state = grafana
    first = push(url, TOKEN)
    assert first.returncode == 0, first.stderr
    assert state.folders == {"pantau": {"uid": "pantau", "title": "Pantau", "version": 1}}
    source = state.datasources["pantau-db"]
    assert source["type"] == "grafana-postgresql-datasource"
    assert source["url"] == "timescaledb:5432"
    assert source["user"] == "pantau_grafana"
    assert source["jsonData"]["database"] == "pantau"
    assert source["secureJsonData"] == {"password": DB_PASSWORD}
    assert sorted(state.dashboards) == [
        "pantau-dumping", "pantau-environment", "pantau-pipeline", "pantau-wall",
    ]  # fmt: skip
    assert all(h[-1]["folderUid"] == "pantau" for h in state.dashboards.values())
    assert ("POST", "/api/folders") in state.requests
    assert ("POST", "/api/datasources") in state.requests

    state.requests.clear()
    second = push(url, TOKEN)
    assert second.returncode == 0, second.stderr
    # Same uids: nothing created twice, the datasource edited in place, dashboards versioned.
    assert ("POST", "/api/folders") not in state.requests
    assert ("POST", "/api/datasources") not in state.requests
    assert ("PUT", "/api/datasources/uid/pantau-db") in state.requests
    assert state.datasources["pantau-db"]["version"] == 2
    assert len(state.dashboards) == 4
    for uid, history in state.dashboards.items():
        assert [v["version"] for v in history] == [1, 2], uid
        assert history[0]["dashboard"] == history[1]["dashboard"], uid
    assert "pantau-wall" in second.stdout and "version 2" in second.stdout
    assert state.problems == []
    for output in (first.stdout + first.stderr, second.stdout + second.stderr):
        assert TOKEN not in output and DB_PASSWORD not in output


def test_a_renamed_folder_is_renamed_back(grafana: tuple[str, FakeGrafana]) -> None:
    url, state = grafana
    state.folders["pantau"] = {"uid": "pantau", "title": "Somebody's", "version": 3}
    result = push(url, TOKEN)
    assert result.returncode == 0, result.stderr
    assert state.folders["pantau"] == {"uid": "pantau", "title": "Pantau", "version": 4}


def test_refused_token_is_reported_without_echoing_it(grafana: tuple[str, FakeGrafana]) -> None:
    url, state = grafana
    result = push(url, "wrong-token-123")
    assert result.returncode == 1
    assert "401" in result.stderr and "folder pantau" in result.stderr
    assert "wrong-token-123" not in result.stdout + result.stderr
    assert state.dashboards == {}


def test_missing_token_is_a_usage_error(grafana: tuple[str, FakeGrafana]) -> None:
    url, state = grafana
    result = push(url, None)
    assert result.returncode == 2
    assert "PANTAU_GRAFANA_TOKEN" in result.stderr
    assert state.requests == []
