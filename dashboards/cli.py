"""Subcommands of the dashboards stage: `dashboards export` and `dashboards push`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pantau.commands import Context, SubParsers


def register(sub: SubParsers) -> None:
    dashboards = sub.add_parser("dashboards", help="Grafana dashboards as code")
    what = dashboards.add_subparsers(dest="what", required=True, metavar="{export,push}")

    export = what.add_parser(
        "export", help="write the dashboards' JSON and Grafana's provisioning files"
    )
    export.add_argument(
        "--out", type=Path, default=Path("grafana"), help="folder to write into (default: grafana)"
    )
    export.set_defaults(handler=_export)

    push = what.add_parser(
        "push",
        help="create or update the folder, datasource and dashboards in a running Grafana "
        "(token from $PANTAU_GRAFANA_TOKEN)",
    )
    push.add_argument("--url", required=True, help="Grafana's base URL, e.g. http://grafana:3000")
    push.add_argument(
        "--db-host",
        help="host:port of the database as Grafana reaches it (default: from the settings)",
    )
    push.add_argument("--db-name", help="database name (default: from the settings)")
    push.add_argument("--timeout", type=float, default=10.0, help="seconds per request")
    push.set_defaults(handler=_push)


def _export(args: argparse.Namespace, ctx: Context) -> int:
    from dashboards.export import export

    written = export(ctx.settings, args.out)
    for path in written:
        print(path)
    print(f"dashboards: {len(written)} files written under {args.out}", file=sys.stderr)
    return 0


def _push(args: argparse.Namespace, ctx: Context) -> int:
    from grafana_client import GrafanaApi

    from dashboards.push import TOKEN_VARIABLE, PushError, Target, push

    token = ctx.environ.get(TOKEN_VARIABLE, "")
    if not token:
        print(
            f"pantau dashboards push: set {TOKEN_VARIABLE} to a Grafana service-account token",
            file=sys.stderr,
        )
        return 2
    settings = ctx.settings
    pg = settings.postgres
    password = pg.grafana_password.get_secret_value() if pg.grafana_password else None
    target = Target(
        db_host=args.db_host or f"{pg.host}:{pg.port}",
        db_name=args.db_name or pg.dbname,
        db_password=password,
    )
    api = GrafanaApi.from_url(args.url, credential=token, timeout=args.timeout)
    try:
        report = push(api, settings, target)
    except PushError as exc:
        print(f"pantau dashboards push: {exc}", file=sys.stderr)
        return 1
    for kind, uid, action in report.actions:
        print(f"{kind:<10} {uid:<20} {action}")
    return 0
