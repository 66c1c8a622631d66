"""`pantau`: one command, subcommands registered by the spine and by each stage."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from importlib.metadata import entry_points
from pathlib import Path

from pantau import __version__
from pantau.commands import Context, SubParsers, config_path_from
from pantau.kafka import KafkaUnavailable
from pantau.logs import configure_logging
from pantau.runtime import WORKER_ENV, exit_when_a_thread_dies
from pantau.settings import SettingsError

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "pantau.commands"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pantau",
        description="Pantau: cameras and sensors → Kafka → detectors and rules → PostgreSQL.",
    )
    parser.add_argument("--version", action="version", version=f"pantau {__version__}")
    parser.add_argument(
        "--config",
        type=Path,
        help="YAML settings (default: $PANTAU_CONFIG, else configs/pantau.yaml)",
    )
    parser.add_argument(
        "--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="override logging.level"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _register_spine(sub)
    for entry in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        entry.load()(sub)
    return parser


def _register_spine(sub: SubParsers) -> None:
    from pantau import access, demo, health, services

    check = sub.add_parser("check-config", help="validate the settings file and exit")
    check.set_defaults(handler=_check_config)
    services.register(sub)
    demo.register(sub)
    health.register(sub)
    access.register(sub)


def _runs_supervised(args: argparse.Namespace, ctx: Context) -> bool:
    """A long-running command, not already a worker, with supervision on."""
    if getattr(args, "supervised_as", None) is None or os.environ.get(WORKER_ENV):
        return False
    chosen: bool | None = args.supervise
    return ctx.settings.runtime.supervise if chosen is None else chosen


def _supervise(args: argparse.Namespace, ctx: Context, arguments: list[str]) -> int:
    """Run the command as worker processes (the same command line) under the supervisor."""
    from pantau.health import metrics_publisher
    from pantau.health_http import HealthServer, MetricsAccess, metrics_token, serve_health
    from pantau.runtime import stop_on_signals
    from pantau.settings import with_secrets
    from pantau.supervisor import Supervisor, WorkerSpec

    settings = ctx.settings
    runtime = settings.runtime
    count = args.worker_count(args, settings) if args.worker_count is not None else 1
    command = (sys.executable, "-m", "pantau.cli", *arguments)
    component: str = args.supervised_as
    workers = [
        WorkerSpec(component if count == 1 else f"{component}-{n}", command)
        for n in range(1, count + 1)
    ]
    publisher = metrics_publisher(settings)
    supervisor = Supervisor(component, workers, runtime, metrics=publisher)
    server: HealthServer | None = None
    if runtime.health_port is not None:
        # Like every secret: the environment, else the secrets file.
        access = MetricsAccess(
            token=metrics_token(with_secrets(ctx.config_path, ctx.environ)),
            open=runtime.metrics_open,
        )
        try:
            server = serve_health(
                component, runtime.health_host, runtime.health_port, supervisor.health, access
            )
        except OSError as exc:
            print(f"pantau {component}: {exc}", file=sys.stderr)
            return 1
    stop = stop_on_signals()
    try:
        return supervisor.run(stop)
    finally:
        if server is not None:
            server.close()
        publisher.close()


def _check_config(args: argparse.Namespace, ctx: Context) -> int:
    settings = ctx.settings
    problems = []
    if settings.detector is not None and not settings.detector.model.exists():
        problems.append(
            f"{ctx.config_path}: detector.model: {settings.detector.model} does not exist"
        )
    for camera in settings.cameras:
        url = camera.url.get_secret_value()
        if "://" not in url and not Path(url).exists():
            problems.append(
                f"{ctx.config_path}: camera {camera.id}: video file {url} does not exist"
            )
    if problems:
        print("\n".join(problems), file=sys.stderr)
        return 2
    detector = (
        f"{settings.detector.type} {settings.detector.model.name} @ {settings.detector.imgsz}"
        if settings.detector
        else "none"
    )
    print(
        f"{ctx.config_path}: OK — site {settings.site}, {len(settings.cameras)} camera(s), "
        f"{len(settings.sensors)} sensor(s), detector {detector}, "
        f"kafka {settings.kafka.bootstrap_servers}, "
        f"postgres {settings.postgres.host}:{settings.postgres.port}/{settings.postgres.dbname}"
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    arguments = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(arguments)
    ctx = Context(config_path=config_path_from(args.config, os.environ))
    configure_logging(args.log_level or "INFO")
    exit_when_a_thread_dies()
    try:
        if args.log_level is None and ctx.config_path.exists():
            configure_logging(ctx.settings.logging.level)
        if _runs_supervised(args, ctx):
            return _supervise(args, ctx, arguments)
        code: int = args.handler(args, ctx)
        return code
    except SettingsError as exc:
        print(f"pantau: invalid configuration\n{exc}", file=sys.stderr)
        return 2
    except KafkaUnavailable as exc:
        # Kafka away, or refusing the login: one clear line, not a traceback.
        print(f"pantau: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
