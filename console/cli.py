"""Subcommands of the console stage: `console` (the web service) and
`users add|list|disable|password|token` (who may use it)."""

from __future__ import annotations

import argparse
import getpass
import logging
import sys

from pantau.commands import Context, SubParsers, supervised

log = logging.getLogger(__name__)


def register(sub: SubParsers) -> None:
    console = sub.add_parser(
        "console", help="the incident console: web pages and REST API for people who act"
    )
    console.add_argument("--host", help="listen address (default: console.host)")
    console.add_argument("--port", type=int, help="listen port (default: console.port)")
    supervised(console, "console")
    console.set_defaults(handler=_console)

    users = sub.add_parser("users", help="people who may use the incident console")
    which = users.add_subparsers(dest="users_command", required=True)
    add = which.add_parser("add", help="add a user (prints a new password unless given one)")
    add.add_argument("username")
    add.add_argument("--role", required=True, choices=("operator", "dlh_field", "viewer", "admin"))
    add.add_argument("--name", default="", help="display name")
    add.add_argument(
        "--kecamatan",
        action="append",
        default=[],
        help="for dlh_field: a kecamatan they work in (repeat for several)",
    )
    add.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input"
    )
    add.set_defaults(handler=_add)
    which.add_parser("list", help="users, roles, kecamatan").set_defaults(handler=_list)
    disable = which.add_parser("disable", help="lock a user out (sessions and tokens too)")
    disable.add_argument("username")
    disable.set_defaults(handler=_disable)
    password = which.add_parser("password", help="set a new password (prints it unless given)")
    password.add_argument("username")
    password.add_argument("--password-stdin", action="store_true")
    password.set_defaults(handler=_password)
    link = which.add_parser(
        "link", help="a one-time code that links the user's Telegram account (/start CODE)"
    )
    link.add_argument("username")
    link.set_defaults(handler=_link)
    token = which.add_parser("token", help="a new API token for an integration (shown once)")
    token.add_argument("username")
    token.add_argument("--name", default="", help="what the token is for")
    token.set_defaults(handler=_token)


def _console(args: argparse.Namespace, ctx: Context) -> int:
    import uvicorn

    from console.app import create_app
    from pantau.runtime import exit_when_a_thread_dies

    settings = ctx.settings
    c = settings.console
    host = args.host if args.host is not None else c.host
    port = args.port if args.port is not None else c.port
    if host not in ("127.0.0.1", "localhost", "::1") and c.tls_cert is None:
        log.warning(
            "console: listening on %s without TLS: passwords and sessions cross the network "
            "in clear text unless a TLS proxy is in front (set console.tls_cert/tls_key)",
            host,
        )
    failed: list[str] = []
    server: uvicorn.Server | None = None

    def fatal(reason: str) -> None:
        failed.append(reason)
        if server is not None:
            server.should_exit = True

    exit_when_a_thread_dies()
    config = uvicorn.Config(
        create_app(settings, on_fatal=fatal),
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        # Forwarded headers only from the proxies the settings name: anyone else could
        # claim any address and slip past the login limits.
        proxy_headers=bool(c.trusted_proxies),
        forwarded_allow_ips=list(c.trusted_proxies) or None,
        ssl_certfile=str(c.tls_cert) if c.tls_cert else None,
        ssl_keyfile=str(c.tls_key) if c.tls_key else None,
        timeout_graceful_shutdown=5,
    )
    server = uvicorn.Server(config)
    server.run()
    if failed or not server.started:
        print(
            f"pantau console: stopped: {failed[0] if failed else 'did not start'}", file=sys.stderr
        )
        return 1
    return 0


def _store(ctx: Context):  # type: ignore[no-untyped-def]
    from console.store import Store

    store = Store(ctx.settings, max_size=1)
    store.open()
    return store


def _read_password(from_stdin: bool) -> tuple[str, bool]:
    """(password, generated)."""
    from console.auth import new_password

    if from_stdin:
        return sys.stdin.readline().rstrip("\n"), False
    if sys.stdin.isatty():
        typed = getpass.getpass("password (empty: make one): ")
        if typed:
            return typed, False
    return new_password(), True


def _new_password(args: argparse.Namespace, command: str) -> tuple[str, str, bool] | None:
    """(password, its hash, whether it was made here); None after saying why it is refused."""
    from console.auth import PasswordTooWeak, hash_password

    password, generated = _read_password(args.password_stdin)
    try:
        return password, hash_password(password), generated
    except PasswordTooWeak as exc:
        print(f"pantau users {command}: {exc}", file=sys.stderr)
        return None


def _add(args: argparse.Namespace, ctx: Context) -> int:
    from console.store import UserExists

    if args.role == "dlh_field" and not args.kecamatan:
        print("pantau users add: a dlh_field user needs --kecamatan", file=sys.stderr)
        return 2
    made = _new_password(args, "add")
    if made is None:
        return 2
    password, hashed, generated = made
    store = _store(ctx)
    try:
        store.add_user(
            args.username.lower(),
            args.role,
            hashed,
            display_name=args.name,
            kecamatan=args.kecamatan,
        )
        store.audit(None, "user:add", args.username.lower(), "cli", role=args.role)
    except UserExists as exc:
        print(f"pantau users add: {exc}", file=sys.stderr)
        return 1
    finally:
        store.close()
    print(f"user {args.username.lower()} added ({args.role})")
    if generated:
        print(f"password: {password}")
    return 0


def _list(_args: argparse.Namespace, ctx: Context) -> int:
    store = _store(ctx)
    try:
        rows = store.users()
    finally:
        store.close()
    for r in rows:
        state = "disabled" if r["disabled"] else "active"
        where = ",".join(r["kecamatan"]) or "-"
        print(f"{r['username']:<20} {r['role']:<10} {state:<9} {where:<24} {r['display_name']}")
    return 0


def _disable(args: argparse.Namespace, ctx: Context) -> int:
    from console.store import NoSuchUser

    store = _store(ctx)
    try:
        store.disable_user(args.username.lower())
        store.audit(None, "user:disable", args.username.lower(), "cli")
    except NoSuchUser as exc:
        print(f"pantau users disable: {exc}", file=sys.stderr)
        return 1
    finally:
        store.close()
    print(f"user {args.username.lower()} disabled; their sessions and tokens are closed")
    return 0


def _password(args: argparse.Namespace, ctx: Context) -> int:
    from console.store import NoSuchUser

    made = _new_password(args, "password")
    if made is None:
        return 2
    password, hashed, generated = made
    store = _store(ctx)
    try:
        store.set_password(args.username.lower(), hashed)
        store.audit(None, "user:password", args.username.lower(), "cli")
    except NoSuchUser as exc:
        print(f"pantau users password: {exc}", file=sys.stderr)
        return 1
    finally:
        store.close()
    if generated:
        print(f"password: {password}")
    return 0


def _token(args: argparse.Namespace, ctx: Context) -> int:
    from console.auth import digest, new_token

    store = _store(ctx)
    try:
        if store.login_record(args.username.lower()) is None:
            print(f"pantau users token: no user {args.username!r}", file=sys.stderr)
            return 1
        token_id, secret, token = new_token()
        store.add_token(args.username.lower(), token_id, digest(secret), args.name)
        store.audit(None, "token:add", args.username.lower(), "cli", token_id=token_id)
    finally:
        store.close()
    print(token)
    return 0


def _link(args: argparse.Namespace, ctx: Context) -> int:
    store = _store(ctx)
    try:
        if store.login_record(args.username.lower()) is None:
            print(f"pantau users link: no user {args.username!r}", file=sys.stderr)
            return 1
        code = store.link_code(args.username.lower(), ctx.settings.notify.telegram.link_code_ttl_s)
        store.audit(None, "telegram:code", args.username.lower(), "cli")
    finally:
        store.close()
    hours = ctx.settings.notify.telegram.link_code_ttl_s / 3600
    print(f"send this to the Pantau bot on Telegram within {hours:g} h: /start {code}")
    return 0
