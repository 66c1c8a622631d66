"""The weekly hotspot-risk summary for the head of the DLH: `pantau risk summary [--send]`.

Reads the coming week's risk as the analysts' `hotspot_risk_at` functions compute it
(migration 0016), words it in Bahasa Indonesia (the places most at risk, their likeliest days
and hours WIB, the desa most at risk) and, with `--send`, delivers it through the notifier's
channels (Telegram, e-mail, webhook) to the recipients of one route of `notify.routes`
(default `kepala-dlh`). Without `--send` it prints the message. A cron job or systemd timer
runs it weekly, e.g. Monday 06:00 WIB:

    0 6 * * 1  pantau --config /etc/pantau/pantau.yaml risk summary --send

Each run sends once; a run repeated by hand sends again.
"""

from __future__ import annotations

import argparse
import html
import logging
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from pantau.commands import Context, SubParsers
from pantau.settings import NotifySettings, Route, Settings
from streams.channels import Channels, DeliveryError
from streams.routing import Channel, Delivery, redact_recipient
from streams.templates import Rendered

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger(__name__)

WIB = ZoneInfo("Asia/Jakarta")
DEFAULT_ROUTE = "kepala-dlh"
WEEKDAYS = ("Senin", "Selasa", "Rabu", "Kamis", "Jumat", "Sabtu", "Minggu")
MONTHS = ("Jan", "Feb", "Mar", "Apr", "Mei", "Jun", "Jul", "Agu", "Sep", "Okt", "Nov", "Des")


@dataclass(frozen=True)
class RiskPlace:
    """A place (camera and zone) in the summary: dumping expected in the coming week, its
    likeliest WIB days (0 Monday) and hours, most likely first."""

    camera: str
    zone: str | None
    desa: str | None
    expected_week: float
    weekdays: tuple[int, ...]
    hours: tuple[int, ...]


@dataclass(frozen=True)
class RiskDesa:
    desa: str
    expected_week: float
    weekday: int
    hour: int


def _number(value: float) -> str:
    # Indonesian writes a decimal comma.
    return f"{value:.1f}".replace(".", ",")


def _date(day: datetime) -> str:
    return f"{day.day} {MONTHS[day.month - 1]} {day.year}"


def _days(weekdays: Sequence[int]) -> str:
    names = [WEEKDAYS[d] for d in weekdays]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " dan " + names[-1]


def _hours(hours: Sequence[int]) -> str:
    return ", ".join(f"{h:02d}.00" for h in sorted(hours))


def render_summary(
    places: Sequence[RiskPlace], desas: Sequence[RiskDesa], *, start: datetime
) -> Rendered:
    """The message for the 7 days from `start` (WIB)."""
    first = start.astimezone(WIB)
    last = first + timedelta(days=6)
    period = f"{_date(first)} s.d. {_date(last)}"
    title = f"Risiko pembuangan sampah liar, {period}"
    intro = (
        "Perkiraan dari riwayat 120 hari terakhir (alarm keliru tidak dihitung; kejadian "
        "terbaru berbobot lebih besar). Angka: perkiraan jumlah kejadian dalam 7 hari."
    )
    lines_text = [title, "", intro, ""]
    lines_html = [f"<b>{html.escape(title)}</b>", "", html.escape(intro), ""]
    if not places:
        quiet = "Tidak ada kejadian pembuangan sampah dalam 120 hari terakhir."
        lines_text.append(quiet)
        lines_html.append(html.escape(quiet))
    else:
        lines_text.append("Titik paling rawan:")
        lines_html.append("<b>Titik paling rawan:</b>")
        for n, place in enumerate(places, 1):
            where = place.camera + (f" / {place.zone}" if place.zone else "")
            desa = f" (Desa {place.desa})" if place.desa else ""
            when = f"paling sering {_days(place.weekdays)}, sekitar pukul {_hours(place.hours)}"
            lines_text.append(f"{n}. {where}{desa}: ±{_number(place.expected_week)}; {when}")
            lines_html.append(
                f"{n}. <b>{html.escape(where)}</b>{html.escape(desa)}: "
                f"±{_number(place.expected_week)}; {html.escape(when)}"
            )
    if desas:
        listed = "; ".join(
            f"{d.desa} ±{_number(d.expected_week)} ({WEEKDAYS[d.weekday]}, {d.hour:02d}.00)"
            for d in desas
        )
        lines_text += ["", f"Desa paling rawan: {listed}"]
        lines_html += ["", f"<b>Desa paling rawan:</b> {html.escape(listed)}"]
    return Rendered(
        subject=f"Pantau: {title}",
        text="\n".join(lines_text),
        html="\n".join(lines_html),
    )


# ---------------------------------------------------------------------- reading the risk


def read_risk(
    conn: psycopg.Connection[Any], as_of: datetime, *, top: int, top_desa: int = 3
) -> tuple[list[RiskPlace], list[RiskDesa]]:
    """The `top` places and `top_desa` desa most at risk as of `as_of`, from the database."""
    rows = conn.execute(
        "SELECT camera_id, zone_id, camera_name, zone_name, desa, expected_week "
        "FROM hotspot_risk_at(%s) ORDER BY rank LIMIT %s",
        (as_of, top),
    ).fetchall()
    profile: dict[tuple[str, str | None], dict[str, list[tuple[float, int]]]] = {}
    if rows:
        for camera, zone, part, slot, share in conn.execute(
            "SELECT camera_id, zone_id, part, slot, share FROM hotspot_risk_profile_at(%s) "
            "WHERE camera_id = ANY(%s)",
            (as_of, sorted({r[0] for r in rows})),
        ).fetchall():
            profile.setdefault((camera, zone), {}).setdefault(part, []).append((share, slot))

    def likeliest(key: tuple[str, str | None], part: str, n: int) -> tuple[int, ...]:
        ranked = sorted(profile.get(key, {}).get(part, []), key=lambda s: (-s[0], s[1]))
        return tuple(slot for _, slot in ranked[:n])

    places = [
        RiskPlace(
            camera=camera_name,
            zone=zone_name,
            desa=desa,
            expected_week=float(expected),
            # ISO weekdays in SQL, Monday 0 here.
            weekdays=tuple(d - 1 for d in likeliest((camera, zone), "weekday", 2)),
            hours=likeliest((camera, zone), "hour", 2),
        )
        for camera, zone, camera_name, zone_name, desa, expected in rows
    ]
    desas = [
        RiskDesa(desa=d, expected_week=float(e), weekday=wd - 1, hour=h)
        for d, e, wd, h in conn.execute(
            "SELECT desa, expected_week, likely_weekday, likely_hour "
            "FROM hotspot_risk_desa_at(%s) ORDER BY rank LIMIT %s",
            (as_of, top_desa),
        ).fetchall()
    ]
    return places, desas


# ---------------------------------------------------------------------- sending


def route_deliveries(notify: NotifySettings, route_name: str) -> list[Delivery]:
    """Every recipient of the named route, once each (Telegram only with a bot token)."""
    route: Route | None = next((r for r in notify.routes if r.name == route_name), None)
    if route is None:
        names = ", ".join(r.name for r in notify.routes) or "none"
        raise LookupError(f"no notify route named {route_name!r} (routes: {names})")
    token = notify.telegram.token
    telegram_ready = token is not None and token.get_secret_value().strip() != ""
    wanted: list[tuple[Channel, str]] = [
        ("telegram", c) for c in route.telegram_chat_ids if telegram_ready
    ]
    wanted += [("email", a) for a in route.emails]
    wanted += [("webhook", u) for u in route.webhooks]
    deliveries: list[Delivery] = []
    for channel, raw in wanted:
        # An unset `${VAR:-}` in the YAML leaves an empty entry; nobody to send to.
        if raw.strip() and all(d.recipient != raw.strip() for d in deliveries):
            deliveries.append(Delivery(route=route.name, channel=channel, recipient=raw.strip()))
    return deliveries


def send(
    settings: Settings,
    deliveries: Sequence[Delivery],
    rendered: Rendered,
    *,
    attempts: int = 3,
    sleep: Callable[[float], None] = time.sleep,
) -> list[tuple[Delivery, str | None]]:
    """Send to each; (delivery, None) when it arrived, else the reason. A retryable failure
    is tried again after the wait the server asked for (or 2, 4, ... seconds, at most 60)."""
    channels = Channels(settings.notify)
    results: list[tuple[Delivery, str | None]] = []
    for delivery in deliveries:
        # One id per delivery for all its attempts: receivers drop a repeat.
        notification_id = uuid.uuid4()
        error: str | None = None
        for attempt in range(1, attempts + 1):
            try:
                channels.send_text(delivery, rendered, notification_id=notification_id)
                error = None
                break
            except DeliveryError as exc:
                error = str(exc)
                if not exc.retryable or attempt == attempts:
                    break
                wait = min(exc.retry_after_s or 2.0**attempt, 60.0)
                log.warning("%s; trying again in %.0f s", exc, wait)
                sleep(wait)
        results.append((delivery, error))
    return results


# ---------------------------------------------------------------------- command


def register(sub: SubParsers) -> None:
    risk = sub.add_parser("risk", help="hotspot risk for patrols")
    what = risk.add_subparsers(dest="risk_command", required=True, metavar="TOOL")
    summary = what.add_parser(
        "summary",
        help="the coming week's places and times most at risk, for the head of the DLH",
    )
    summary.add_argument(
        "--send",
        action="store_true",
        help="deliver it to the route's recipients (default: print it)",
    )
    summary.add_argument(
        "--route",
        default=DEFAULT_ROUTE,
        help=f"the notify route whose recipients get it (default {DEFAULT_ROUTE})",
    )
    summary.add_argument("--top", type=int, default=5, help="places listed (default 5)")
    summary.add_argument(
        "--at",
        type=datetime.fromisoformat,
        help="the week's start, ISO with its offset (default: now)",
    )
    summary.set_defaults(handler=_summary)


def _summary(args: argparse.Namespace, ctx: Context) -> int:
    import psycopg

    settings = ctx.settings
    start: datetime = args.at or datetime.now(WIB)
    if start.tzinfo is None:
        print("pantau risk summary: --at needs a UTC offset, e.g. +07:00", file=sys.stderr)
        return 2
    deliveries: list[Delivery] = []
    if args.send:
        try:
            deliveries = route_deliveries(settings.notify, args.route)
        except LookupError as exc:
            print(f"pantau risk summary: {exc}", file=sys.stderr)
            return 2
        if not deliveries:
            print(f"pantau risk summary: route {args.route} has no recipient", file=sys.stderr)
            return 2
    pg = settings.postgres
    try:
        with psycopg.connect(**pg.connect_kwargs("owner")) as conn:  # type: ignore[arg-type]
            places, desas = read_risk(conn, start, top=args.top)
    except psycopg.OperationalError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(
            f"pantau risk summary: cannot read PostgreSQL at {pg.host}:{pg.port}/{pg.dbname}: "
            f"{first}",
            file=sys.stderr,
        )
        return 1
    rendered = render_summary(places, desas, start=start)
    if not args.send:
        print(rendered.text)
        return 0
    failed = 0
    for delivery, error in send(settings, deliveries, rendered):
        if error is None:
            print(f"sent by {delivery.channel} to {redact_recipient(delivery)}")
        else:
            failed += 1
            print(f"pantau risk summary: not sent: {error}", file=sys.stderr)
    return 1 if failed else 0
