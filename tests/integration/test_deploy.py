"""docker-compose.yml for deployers, checked without a Docker engine: Debian's docker-compose
validates it against the Compose schema, and the settings the services get through their
environment load."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from pantau.access import SECRETS as ACCESS_SECRETS
from pantau.settings import MIN_SECRET_CHARS, load_settings, read_env_file
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
    "pantau-maintain",
)


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


@pytest.fixture(scope="module")
def resolved(secrets: dict[str, str]) -> dict[str, Any]:
    result = compose("config", env=secrets)
    assert result.returncode == 0, result.stderr
    config: dict[str, Any] = yaml.safe_load(result.stdout)
    return config


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
    resolved: dict[str, Any], service: str, shared_data: Path
) -> None:
    svc = resolved["services"][service]
    env = {k: str(v) for k, v in svc["environment"].items()}
    config_mount = next(v for v in svc["volumes"] if str(v).endswith("/etc/pantau:ro"))
    assert config_mount.startswith(str(REPO / "configs"))
    # Load the mounted config as the container would, with the data folder where it is here.
    env["PANTAU_SHARED_DATA"] = str(shared_data)
    # Only what the container gets: not the development secrets file of this checkout.
    env["PANTAU_SECRETS_FILE"] = str(REPO / "no-secrets-file-here")
    settings = load_settings(REPO / "configs" / "pantau.yaml", env)
    assert settings.kafka.bootstrap_servers == "kafka:9092"
    assert settings.postgres.host == "timescaledb"
    assert settings.postgres.password is not None
    assert settings.postgres.writer_password is not None
    assert settings.postgres.grafana_password is not None
    assert settings.mqtt.host == "mosquitto"
    assert svc["command"][0] in {"migrate", "ingest", "detect", "sink", "streams", "notify",
                                 "maintain"}  # fmt: skip


@pytest.mark.parametrize("service", PANTAU_SERVICES)
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
    for package in ("pantau", "ingest", "detectors", "streams", "storage", "dashboards"):
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
