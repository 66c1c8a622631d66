"""`pantau services up|down|status`: the native development services.

The native work (Debian packages, Kafka jars from Maven Central, starting and stopping
processes) lives in `scripts/services.sh`; this module passes it the ports from the settings,
then checks from the client side that Kafka answers metadata requests and creates the topics.
Deployments use docker-compose instead.
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from pantau import kafka
from pantau.access import SECRETS, ensure_secrets, write_broker_files
from pantau.commands import Context, SubParsers
from pantau.settings import Settings, secrets_file
from pantau.topics import Topics

log = logging.getLogger(__name__)

SERVICES = ("kafka", "postgres", "mosquitto")


class ServicesError(RuntimeError):
    pass


def repo_root() -> Path:
    """The source checkout this package runs from (services are a development feature)."""
    root = Path(__file__).resolve().parent.parent
    if not (root / "scripts" / "services.sh").is_file():
        raise ServicesError(
            "`pantau services` manages development services from a source checkout "
            f"(scripts/services.sh not found under {root}); deployments use docker-compose"
        )
    return root


def broker_access_dir(settings: Settings) -> Path:
    """Where the development MQTT broker's password and ACL files are made."""
    return settings.services.state_dir / "mosquitto" / "access"


def script_env(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    access = broker_access_dir(settings)
    if settings.services.kafka_brokers is not None:
        env["PANTAU_KAFKA_BROKERS"] = str(settings.services.kafka_brokers)
    env.update(
        {
            "PANTAU_STATE_DIR": str(settings.services.state_dir),
            "PANTAU_KAFKA_PORT": str(settings.kafka.first_port),
            "PANTAU_KAFKA_CONTROLLER_PORT": str(settings.services.kafka_controller_port),
            "PANTAU_PG_PORT": str(settings.postgres.port),
            "PANTAU_DB_NAME": settings.postgres.dbname,
            "PANTAU_DB_OWNER": settings.postgres.user,
            "PANTAU_MQTT_PORT": str(settings.mqtt.port),
            "PANTAU_MQTT_PASSWORD_FILE": str(access / "passwd"),
            "PANTAU_MQTT_ACL_FILE": str(access / "acl"),
        }
    )
    return env


def prepare_broker_access(settings: Settings) -> bool:
    """The development broker's password and ACL files, from the registry (any first topic
    level: each test run keeps its own prefix); True when they changed."""
    settings.mqtt.require_login()
    return write_broker_files(settings, broker_access_dir(settings), any_prefix=True)


def run_script(settings: Settings, command: str, services: Sequence[str]) -> int:
    script = repo_root() / "scripts" / "services.sh"
    return subprocess.call(["bash", str(script), command, *services], env=script_env(settings))


def up(settings: Settings, services: Sequence[str] = SERVICES) -> None:
    started = time.monotonic()
    changed = "mosquitto" in services and prepare_broker_access(settings)
    code = run_script(settings, "up", services)
    if code != 0:
        raise ServicesError(f"starting {', '.join(services)} failed (exit code {code})")
    if changed:
        # A broker that was running already reads the new files on SIGHUP (a no-op for one
        # that has just started with them).
        run_script(settings, "reload", ["mosquitto"])
    if "kafka" in services:
        kafka.wait_until_ready(settings.kafka, timeout_s=90)
        created = kafka.ensure_topics(settings.kafka, Topics(settings.kafka).specs())
        if created:
            print(f"kafka: created {len(created)} topics", file=sys.stderr)
    print(f"services up in {time.monotonic() - started:.1f} s", file=sys.stderr)


def register(sub: SubParsers) -> None:
    parser = sub.add_parser("services", help="start, stop or show the development services")
    parser.add_argument("action", choices=["up", "down", "status"])
    parser.add_argument(
        "service", nargs="*", help="any of " + ", ".join(SERVICES) + " (default: all)"
    )
    parser.add_argument(
        "--brokers",
        type=int,
        choices=range(1, 10),
        metavar="N",
        help="up: a Kafka cluster of N nodes on this machine (services.kafka_brokers; node i "
        "on the first port + 100 x (i - 1)); the count is fixed when the cluster is formatted",
    )
    parser.set_defaults(handler=_handle)


def _handle(args: argparse.Namespace, ctx: Context) -> int:
    services = tuple(args.service) or SERVICES
    if args.brokers is not None:
        ctx.environ = {**ctx.environ, "PANTAU__SERVICES__KAFKA_BROKERS": str(args.brokers)}
        ctx.reload()
    unknown = [s for s in services if s not in SERVICES]
    if unknown:
        print(f"pantau services: unknown service {', '.join(unknown)}", file=sys.stderr)
        return 2
    try:
        if args.action == "up":
            # Development secrets first (the broker's users need them), then the settings
            # read again with them.
            added = ensure_secrets(
                secrets_file(ctx.config_path, ctx.environ), [s for s in SECRETS if s.development]
            )
            if added:
                print(f"services: made development secrets {', '.join(added)}", file=sys.stderr)
                ctx.reload()
            up(ctx.settings, services)
            return run_script(ctx.settings, "status", services)
        return run_script(ctx.settings, args.action, services)
    except (ServicesError, kafka.KafkaUnavailable) as exc:
        print(f"pantau services: {exc}", file=sys.stderr)
        return 1
