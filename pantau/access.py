"""`pantau secrets`, `pantau gateways`, `pantau mqtt broker-files`: the keys to every door.

- `secrets init` writes every secret the deployment needs, strong and random, into an env file
  (docker compose's `.env`, or the development secrets file), keeping values already there.
- `gateways add|rotate` makes a gateway's secret, shows it once, and prints the registry entry
  with its hash: the registry never holds a secret.
- `mqtt broker-files` writes Mosquitto's password and ACL files from the registry: the ingest
  reads the sensors' topics, each gateway writes only its own sensors' topics, nobody else
  logs in.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from pantau.commands import Context, SubParsers
from pantau.credentials import acl_file, hash_secret, new_secret, password_file, stable_salt
from pantau.settings import Settings, read_env_file, secrets_file

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Secret:
    name: str
    purpose: str
    development: bool = False


# Every secret `pantau secrets init` makes. `development` ones are what the development
# services need; a deployment's .env gets them all.
SECRETS: tuple[Secret, ...] = (
    Secret("PANTAU_MQTT_PASSWORD", "the MQTT ingest's password", development=True),
    Secret("PANTAU_DEV_GATEWAY_SECRET", "the development gateway (simulator, tests)", True),
    Secret("PANTAU_DB_PASSWORD", "PostgreSQL owner (runs migrations)"),
    Secret("PANTAU_WRITER_PASSWORD", "pantau_writer, the sink's role"),
    Secret("PANTAU_GRAFANA_DB_PASSWORD", "pantau_grafana, Grafana's read role"),
    Secret("PANTAU_ANALYST_PASSWORD", "pantau_analyst, read-only SQL for analysts"),
    Secret("PANTAU_CONSOLE_DB_PASSWORD", "pantau_console, the incident console's role"),
    Secret("GRAFANA_ADMIN_PASSWORD", "Grafana's admin user"),
    Secret("PANTAU_KAFKA_PASSWORD", "the Pantau services' SCRAM user on Kafka"),
    Secret("PANTAU_METRICS_TOKEN", "the bearer token of every stage's /metrics"),
)


def ensure_secrets(path: Path, wanted: Iterable[Secret]) -> list[str]:
    """Add to the env file at `path` every wanted secret it lacks (a new random value each),
    keeping what is there; the file is readable by its owner only. Returns the names added."""
    present = read_env_file(path) if path.is_file() else {}
    added = [s for s in wanted if not present.get(s.name)]
    if not added and path.is_file():
        return []
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = (
        path.read_text(encoding="utf-8").splitlines()
        if path.is_file()
        else [
            "# Secrets for Pantau, made by `pantau secrets init`. Keep this file out of version",
            "# control and readable by its owner only; rotate a value by deleting its line and",
            "# running the command again (then restart what uses it).",
        ]
    )
    lines += [f"# {s.purpose}\n{s.name}={new_secret()}" for s in added]
    # Created 0600 before anything is written to it.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write("\n".join(lines) + "\n")
    os.chmod(path, 0o600)
    return [s.name for s in added]


def broker_files(settings: Settings, *, any_prefix: bool = False) -> tuple[str, str]:
    """(password file, ACL file) for the MQTT broker, from the settings' registry.

    `any_prefix`: the first level of the topic prefix may be anything (development, where
    each test run keeps its own prefix, `<run>/sensors`); deployments grant their one prefix.
    """
    mqtt = settings.mqtt
    users: list[tuple[str, str]] = []
    if mqtt.password is not None:
        users.append((mqtt.username, _file_hash(mqtt.username, mqtt.password.get_secret_value())))
    writes: list[tuple[str, list[str]]] = []
    prefix = mqtt.topic_prefix.rstrip("/")
    if any_prefix and "/" in prefix:
        prefix = "+/" + prefix.split("/", 1)[1]
    for gateway in settings.gateways:
        if not gateway.can_log_in:
            continue
        if gateway.secret_hash is not None:
            hashed = gateway.secret_hash
        else:
            assert gateway.secret is not None
            hashed = _file_hash(gateway.id, gateway.secret.get_secret_value())
        users.append((gateway.id, hashed))
        writes.append((gateway.id, [f"{prefix}/{sensor}" for sensor in gateway.sensors]))
    return password_file(users), acl_file(mqtt.username, f"{prefix}/+", writes)


def _file_hash(user: str, secret: str) -> str:
    # A secret given in plain text is hashed with a salt of its own making, so the same secret
    # gives the same file and an unchanged registry does not make the broker reload.
    return hash_secret(secret, salt=stable_salt(user, secret))


def write_broker_files(
    settings: Settings, folder: Path, *, any_prefix: bool = False, mode: int = 0o600
) -> bool:
    """Write `passwd` and `acl` into `folder` (readable by their owner only, unless `mode`
    says otherwise); True when either changed."""
    passwd, acl = broker_files(settings, any_prefix=any_prefix)
    folder.mkdir(parents=True, exist_ok=True)
    changed = False
    for name, text in (("passwd", passwd), ("acl", acl)):
        target = folder / name
        old = target.read_text(encoding="utf-8") if target.is_file() else None
        if old == text:
            continue
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        os.chmod(target, mode)
        changed = True
    return changed


# --------------------------------------------------------------------------- commands


def register(sub: SubParsers) -> None:
    secrets_parser = sub.add_parser("secrets", help="make the deployment's secrets")
    what = secrets_parser.add_subparsers(dest="secrets_command", required=True, metavar="ACTION")
    init = what.add_parser("init", help="write missing secrets (random) into an env file")
    init.add_argument(
        "--file",
        type=Path,
        help="the env file (default: the development secrets file, .pantau/secrets.env); "
        "for docker compose: .env next to docker-compose.yml",
    )
    init.add_argument(
        "--development", action="store_true", help="only what the development services need"
    )
    init.set_defaults(handler=_secrets_init)

    gateways = sub.add_parser("gateways", help="the registry's gateways and their secrets")
    action = gateways.add_subparsers(dest="gateways_command", required=True, metavar="ACTION")
    add = action.add_parser("add", help="a new gateway: its secret (shown once) and entry")
    add.add_argument("id")
    add.add_argument("--sensor", action="append", required=True, dest="sensors", metavar="ID")
    add.add_argument("--name", default="")
    add.set_defaults(handler=_gateways_add)
    rotate = action.add_parser("rotate", help="a new secret for a gateway (shown once)")
    rotate.add_argument("id")
    rotate.set_defaults(handler=_gateways_rotate)
    listing = action.add_parser("list", help="the gateways, their sensors and state")
    listing.set_defaults(handler=_gateways_list)

    mqtt = sub.add_parser("mqtt", help="the MQTT broker's access files")
    mqtt_action = mqtt.add_subparsers(dest="mqtt_command", required=True, metavar="ACTION")
    files = mqtt_action.add_parser(
        "broker-files", help="write Mosquitto's password and ACL files from the registry"
    )
    files.add_argument("--out", type=Path, required=True, help="folder for passwd and acl")
    files.add_argument(
        "--any-prefix",
        action="store_true",
        help="grant any first topic level (development test runs keep their own prefix)",
    )
    files.add_argument(
        "--readable",
        action="store_true",
        help="readable by every user (a volume shared with a broker that runs as another "
        "user); the files hold hashes, never secrets",
    )
    files.set_defaults(handler=_broker_files)


def _secrets_init(args: argparse.Namespace, ctx: Context) -> int:
    path = args.file or secrets_file(ctx.config_path, ctx.environ)
    wanted = [s for s in SECRETS if s.development or not args.development]
    added = ensure_secrets(path, wanted)
    if added:
        print(f"{path}: added {', '.join(added)}")
    else:
        print(f"{path}: every secret is there already")
    return 0


def _gateway_entry(gateway_id: str, sensors: Iterable[str], name: str, hashed: str) -> str:
    listed = ", ".join(sensors)
    lines = [f"  - id: {gateway_id}"]
    if name:
        lines.append(f"    name: {name}")
    lines += [f"    sensors: [{listed}]", f'    secret_hash: "{hashed}"']
    return "\n".join(lines)


def _show_secret(gateway_id: str, secret: str) -> None:
    # The one time the secret is seen: on the terminal, not in any log.
    print(f"secret of {gateway_id} (shown once; put it on the device now):", file=sys.stderr)
    print(f"  MQTT:  user {gateway_id}, password {secret}", file=sys.stderr)
    print(f"  HTTP:  Authorization: Bearer {gateway_id}.{secret}", file=sys.stderr)


def _gateways_add(args: argparse.Namespace, ctx: Context) -> int:
    settings = ctx.settings
    if any(g.id == args.id for g in settings.gateways):
        print(f"pantau gateways: {args.id} is registered already (rotate it?)", file=sys.stderr)
        return 2
    known = {s.id for s in settings.sensors}
    unknown = [s for s in args.sensors if s not in known]
    if unknown:
        print(f"pantau gateways: not in the registry: {', '.join(unknown)}", file=sys.stderr)
        return 2
    secret = new_secret()
    _show_secret(args.id, secret)
    print("# add under `gateways:` in the settings, then restart the ingests and the broker:")
    print(_gateway_entry(args.id, args.sensors, args.name, hash_secret(secret)))
    return 0


def _gateways_rotate(args: argparse.Namespace, ctx: Context) -> int:
    gateway = next((g for g in ctx.settings.gateways if g.id == args.id), None)
    if gateway is None:
        print(f"pantau gateways: no gateway {args.id}", file=sys.stderr)
        return 2
    secret = new_secret()
    _show_secret(args.id, secret)
    print(f"# replace {args.id}'s secret_hash in the settings, then restart the ingests and")
    print("# the broker; the old secret stops working then:")
    print(f'    secret_hash: "{hash_secret(secret)}"')
    return 0


def _gateways_list(_args: argparse.Namespace, ctx: Context) -> int:
    for gateway in ctx.settings.gateways:
        state = "revoked" if gateway.revoked else "active" if gateway.can_log_in else "no secret"
        print(f"{gateway.id:<24} {state:<10} {', '.join(gateway.sensors)}")
    return 0


def _broker_files(args: argparse.Namespace, ctx: Context) -> int:
    settings = ctx.settings
    settings.mqtt.require_login()
    mode = 0o644 if args.readable else 0o600
    write_broker_files(settings, args.out, any_prefix=args.any_prefix, mode=mode)
    print(f"wrote {args.out / 'passwd'} and {args.out / 'acl'}")
    return 0
