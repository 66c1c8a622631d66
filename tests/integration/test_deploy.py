"""docker-compose.yml for deployers, checked without a Docker engine: Debian's docker-compose
validates it against the Compose schema, and the settings the services get through their
environment load."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from pantau.access import SECRETS as ACCESS_SECRETS
from pantau.settings import (
    CONSOLE_ROLE,
    MIN_SECRET_CHARS,
    Settings,
    load_settings,
    read_env_file,
)
from tests.conftest import REPO


def made_secrets(folder: Path) -> dict[str, str]:
    """What `pantau secrets init --file .env` writes for a deployment."""
    env_file = folder / ".env"
    subprocess.run(
        [sys.executable, "-m", "pantau.cli", "secrets", "init", "--file", str(env_file)],
        check=True,
        capture_output=True,
        cwd=REPO,
    )
    assert env_file.stat().st_mode & 0o077 == 0, "the .env file is readable by others"
    return read_env_file(env_file)


PANTAU_SERVICES = (
    "pantau-migrate",
    "pantau-ingest-camera",
    "pantau-ingest-sensors",
    "pantau-detect",
    "pantau-sink",
    "pantau-ingest-http",
    "pantau-streams",
    "pantau-notify",
    "pantau-console",
    "pantau-telegram",
    "pantau-maintain",
)
# The only services that get pantau_console's password: the one that sets it, and the console
# with its door on Telegram.
CONSOLE_DB_SECRET = "PANTAU_CONSOLE_DB_PASSWORD"
CONSOLE_DB_USERS = {"pantau-migrate", "pantau-console", "pantau-telegram"}


def compose(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.fail(
            "docker-compose (Debian package docker-compose) is not installed; "
            "scripts/test installs it",
            pytrace=False,
        )
    return subprocess.run(
        [binary, "-f", str(REPO / "docker-compose.yml"), *args],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", **env},
        cwd=REPO,
        timeout=60,
    )


@pytest.fixture(scope="module")
def secrets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return made_secrets(tmp_path_factory.mktemp("deploy"))


def resolve(env: dict[str, str]) -> dict[str, Any]:
    result = compose("config", env=env)
    assert result.returncode == 0, result.stderr
    config: dict[str, Any] = yaml.safe_load(result.stdout)
    return config


@pytest.fixture(scope="module")
def resolved(secrets: dict[str, str]) -> dict[str, Any]:
    return resolve(secrets)


def container_settings(svc: dict[str, Any], shared_data: Path) -> Settings:
    """The settings a Pantau service's container loads from its environment."""
    env = {k: str(v) for k, v in svc["environment"].items()}
    # Load the mounted config as the container would, with the data folder where it is here.
    env["PANTAU_SHARED_DATA"] = str(shared_data)
    # Only what the container gets: not the development secrets file of this checkout.
    env["PANTAU_SECRETS_FILE"] = str(REPO / "no-secrets-file-here")
    return load_settings(REPO / "configs" / "pantau.yaml", env)


def test_compose_file_is_valid_and_uses_the_official_images(resolved: dict[str, Any]) -> None:
    images = {name: svc.get("image") for name, svc in resolved["services"].items()}
    assert images["kafka"].startswith("apache/kafka:4.")
    assert images["timescaledb"].startswith("timescale/timescaledb:")
    assert images["grafana"].startswith("grafana/grafana-oss:")
    assert images["mosquitto"].startswith("eclipse-mosquitto:")
    for name in PANTAU_SERVICES:
        assert resolved["services"][name]["build"]["context"] == str(REPO)


def test_secrets_init_makes_every_secret_strong_and_keeps_what_is_there(tmp_path: Path) -> None:
    first = made_secrets(tmp_path)
    assert set(first) == {s.name for s in ACCESS_SECRETS}
    assert all(len(value) >= MIN_SECRET_CHARS for value in first.values())
    assert len(set(first.values())) == len(first), "two secrets are the same"
    # Run again: nothing changes (a rotation is deleting a line and running it again).
    assert made_secrets(tmp_path) == first


@pytest.mark.parametrize("missing", [s.name for s in ACCESS_SECRETS if not s.development])
def test_nothing_starts_without_each_of_its_secrets(secrets: dict[str, str], missing: str) -> None:
    result = compose("config", "-q", env={k: v for k, v in secrets.items() if k != missing})
    assert result.returncode != 0
    assert missing in result.stderr
    assert secrets[missing] not in (REPO / "docker-compose.yml").read_text()


@pytest.mark.parametrize("service", PANTAU_SERVICES)
def test_each_pantau_service_gets_valid_settings_from_its_environment(
    resolved: dict[str, Any], secrets: dict[str, str], service: str, shared_data: Path
) -> None:
    svc = resolved["services"][service]
    config_mount = next(v for v in svc["volumes"] if str(v).endswith("/etc/pantau:ro"))
    assert config_mount.startswith(str(REPO / "configs"))
    settings = container_settings(svc, shared_data)
    assert settings.kafka.bootstrap_servers == "kafka:9092"
    assert settings.postgres.host == "timescaledb"
    assert settings.postgres.password is not None
    assert settings.postgres.writer_password is not None
    assert settings.postgres.grafana_password is not None
    assert settings.mqtt.host == "mosquitto"
    assert svc["command"][0] in {"migrate", "ingest", "detect", "sink", "streams", "notify",
                                 "console", "telegram", "maintain"}  # fmt: skip
    if service == "pantau-migrate":
        # It sets every role's password: one it lacks would keep its old (or no) password.
        unset = [
            name
            for name in type(settings.postgres).model_fields
            if name.endswith("password") and getattr(settings.postgres, name) is None
        ]
        assert unset == []
    # pantau_console's password only where it is set (migrate) and used (the console).
    console_password = settings.postgres.console_password
    if service in CONSOLE_DB_USERS:
        assert console_password is not None
        assert console_password.get_secret_value() == secrets[CONSOLE_DB_SECRET]
    else:
        assert console_password is None
        assert secrets[CONSOLE_DB_SECRET] not in svc["environment"].values()


@pytest.mark.parametrize("service", [s for s in PANTAU_SERVICES if s != "pantau-console"])
def test_each_long_running_service_is_health_checked_by_its_supervisor_status(
    resolved: dict[str, Any], service: str
) -> None:
    from pantau.cli import build_parser

    svc = resolved["services"][service]
    args = build_parser().parse_args(svc["command"])
    component = getattr(args, "supervised_as", None)
    if component is None:
        # One-shot commands (migrate) have nothing to check.
        assert "healthcheck" not in svc
        return
    # The check asks about the very component this command's supervisor reports as.
    assert svc["healthcheck"]["test"] == ["CMD", "pantau", "health", component]
    assert svc["environment"]["PANTAU__RUNTIME__STATUS_DIR"].startswith("/var/lib/pantau/")


def test_dockerfile_copies_every_package_and_enters_through_pantau() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    for package in ("pantau", "ingest", "detectors", "streams", "storage", "dashboards", "console"):
        assert f"COPY {package} ./{package}" in dockerfile
    assert 'ENTRYPOINT ["pantau"]' in dockerfile
    mosquitto = (REPO / "configs" / "mosquitto" / "mosquitto.conf").read_text()
    assert "persistence true" in mosquitto


def test_grafana_mounts_the_provisioning_and_gets_every_variable_it_names(
    resolved: dict[str, Any],
    secrets: dict[str, str],
) -> None:
    grafana = resolved["services"]["grafana"]
    mounts = {}
    for volume in grafana["volumes"]:
        if isinstance(volume, dict):
            mounts[volume["target"]] = str(volume.get("source", ""))
        else:
            source, target = str(volume).split(":")[:2]
            mounts[target] = source
    provisioning = REPO / "dashboards" / "grafana" / "provisioning"
    assert mounts["/etc/grafana/provisioning"] == str(provisioning)
    provider = yaml.safe_load((provisioning / "dashboards" / "pantau.yaml").read_text())
    folder = provider["providers"][0]["options"]["path"]
    assert mounts[folder] == str(REPO / "dashboards" / "grafana" / "dashboards")
    assert sorted(p.name for p in Path(mounts[folder]).glob("*.json")) == [
        "dumping.json", "environment.json", "pipeline.json", "wall.json",
    ]  # fmt: skip
    # Grafana expands $NAME in provisioning files from its own environment: every name the
    # files use must be set there, or the datasource would point nowhere.
    used: set[str] = set()
    for path in provisioning.rglob("*.yaml"):
        text = path.read_text().replace("$$", "")
        used.update(re.findall(r"\$\{?([A-Z][A-Z0-9_]*)", text))
    assert used, "the provisioning names no environment variables"
    assert used <= set(grafana["environment"]), used - set(grafana["environment"])
    assert (
        grafana["environment"]["PANTAU_GRAFANA_DB_PASSWORD"]
        == (secrets["PANTAU_GRAFANA_DB_PASSWORD"])
    )


CONSOLE_URL = "https://konsol.dlh.example.id"


def published_port(entry: str | dict[str, Any]) -> tuple[str, int, int]:
    """(host address, published port, container port) of a resolved `ports` entry: the long
    form, or a "[ADDRESS:]PUBLISHED:TARGET[/tcp]" string (docker-compose writes one when an
    address is given); "" is every address."""
    if isinstance(entry, dict):
        return str(entry.get("host_ip", "")), int(entry["published"]), int(entry["target"])
    *address, published, target = entry.split("/")[0].rsplit(":", 2)
    return (address[0] if address else ""), int(published), int(target)


@pytest.fixture(scope="module")
def with_console_url(secrets: dict[str, str]) -> dict[str, Any]:
    return resolve({**secrets, "PANTAU_CONSOLE_URL": CONSOLE_URL})


def test_the_console_listens_for_people_and_keeps_their_photos_with_the_evidence(
    resolved: dict[str, Any], shared_data: Path
) -> None:
    console = resolved["services"]["pantau-console"]
    settings = container_settings(console, shared_data)
    assert console["command"] == ["console"]
    # Every interface inside its container, so the published port reaches it ...
    assert settings.console.host == "0.0.0.0"  # noqa: S104 - what is checked
    [port] = [published_port(p) for p in console["ports"]]
    assert port[1:] == (settings.console.port, settings.console.port)
    # ... bound on the host as Grafana's is (every address, unless told otherwise).
    [grafana_port] = [published_port(p) for p in resolved["services"]["grafana"]["ports"]]
    assert port[0] == grafana_port[0]
    # It logs in as its own role, after the migration set that role's password.
    assert settings.postgres.connect_kwargs("console")["user"] == CONSOLE_ROLE
    assert console["depends_on"]["pantau-migrate"]["condition"] == (
        "service_completed_successfully"
    )
    # The evidence store is on the shared state volume, writable: uploaded photos land there
    # beside the packs pantau-detect writes.
    evidence = settings.dumping.evidence.dir
    for name in ("pantau-console", "pantau-detect", "pantau-notify"):
        svc = resolved["services"][name]
        assert container_settings(svc, shared_data).dumping.evidence.dir == evidence
        [mount] = [v for v in svc["volumes"] if str(v).startswith("pantau-state:")]
        _, target, mode = str(mount).split(":")
        assert evidence.is_relative_to(target)
        assert mode != "ro"


def test_the_console_url_reaches_the_notifiers_links_and_the_console(
    with_console_url: dict[str, Any], shared_data: Path
) -> None:
    console = container_settings(with_console_url["services"]["pantau-console"], shared_data)
    notify = container_settings(with_console_url["services"]["pantau-notify"], shared_data)
    assert console.console.public_url == CONSOLE_URL
    # An https address: the session cookie is only ever sent over TLS.
    assert console.console.cookies_secure
    link = notify.notify.incident_url.format(alarm_id="a1")
    assert link == console.console.incident_url("a1") == f"{CONSOLE_URL}/incidents/a1"


class _Health(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        code = self.status if self.path == "/healthz" else 404
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def health_server() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def test_the_consoles_health_check_passes_only_while_healthz_answers_200(
    resolved: dict[str, Any], shared_data: Path, health_server: ThreadingHTTPServer
) -> None:
    console = resolved["services"]["pantau-console"]
    settings = container_settings(console, shared_data)
    test = console["healthcheck"]["test"]
    assert test[:2] == ["CMD", "python"]
    url = f"http://127.0.0.1:{settings.console.port}/healthz"
    assert url in test[-1]
    # The same command, pointed at a stand-in console on a free port of this machine.
    port = health_server.server_address[1]
    command = [
        sys.executable,
        *test[2:-1],
        test[-1].replace(url, f"http://127.0.0.1:{port}/healthz"),
    ]

    def check() -> int:
        return subprocess.run(command, capture_output=True, timeout=30).returncode

    _Health.status = 200
    assert check() == 0
    # 503: the database or the live feed is down.
    _Health.status = 503
    assert check() != 0
    health_server.shutdown()
    health_server.server_close()
    assert check() != 0, "passed with nothing listening"
