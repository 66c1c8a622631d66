"""Who hears about an alert: the configured routes turned into concrete deliveries.

Pure functions of the alert, the notify settings and the current time; the notifier's
outbox calls `deliveries_for` once per alert state and stores one notification per result.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time
from typing import Literal
from urllib.parse import urlsplit, urlunsplit
from zoneinfo import ZoneInfo

from pantau.logs import scrub
from pantau.messages import SEVERITY_RANK, Alert
from pantau.settings import NotifySettings, Route

Channel = Literal["webhook", "telegram", "email"]


@dataclass(frozen=True)
class Delivery:
    """One message to send: the route that asked for it, the channel and the recipient
    (a Telegram chat id, an e-mail address or a webhook URL, which may carry credentials)."""

    route: str
    channel: Channel
    recipient: str


def deliveries_for(
    alert: Alert, notify: NotifySettings, *, now: datetime, tz: ZoneInfo
) -> list[Delivery]:
    """Every delivery the routes ask for, once per channel and recipient, in route order
    (then Telegram, e-mail, webhooks within a route); empty when the alert is not for people."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError(f"now must be timezone-aware, got naive {now.isoformat()}")
    if not alert.notify:
        return []
    token = notify.telegram.token
    telegram_ready = token is not None and token.get_secret_value().strip() != ""
    local_time = now.astimezone(tz).time()

    deliveries: list[Delivery] = []
    seen: set[tuple[Channel, str]] = set()
    for route in notify.routes:
        if not route_matches(route, alert) or _held_back(route, alert, local_time):
            continue
        wanted: list[tuple[Channel, str]] = []
        if telegram_ready:
            wanted += [("telegram", chat_id) for chat_id in route.telegram_chat_ids]
        wanted += [("email", address) for address in route.emails]
        wanted += [("webhook", url) for url in route.webhooks]
        for channel, raw in wanted:
            recipient = raw.strip()
            if not recipient:
                # An unset `${VAR:-}` in the YAML leaves an empty entry; nobody to send to.
                continue
            # Mail servers treat addresses case-insensitively in practice, so
            # "DLH@..." and "dlh@..." are one mailbox and one notification.
            key = (channel, recipient.casefold() if channel == "email" else recipient)
            if key in seen:
                continue
            seen.add(key)
            deliveries.append(Delivery(route=route.name, channel=channel, recipient=recipient))
    return deliveries


def route_matches(route: Route, alert: Alert) -> bool:
    """The route's filters (escalation level, alarm types, desa, kecamatan, minimum severity)
    admit the alert.

    A route of escalation level N hears of an alarm once it was passed on to level N (its
    `unacknowledged` version) and of every change people should hear about after that; the
    routes below N were told when it opened and are not told again that nobody answered.
    """
    if route.escalation_level > alert.escalation:
        return False
    if alert.change == "unacknowledged" and route.escalation_level != alert.escalation:
        return False
    if route.alarm_types and alert.alarm_type not in route.alarm_types:
        return False
    place = alert.place
    if route.desa and not _named_in(place.desa if place else None, route.desa):
        return False
    if route.kecamatan and not _named_in(place.kecamatan if place else None, route.kecamatan):
        return False
    return SEVERITY_RANK[alert.severity] >= SEVERITY_RANK[route.min_severity]


def _named_in(name: str | None, names: tuple[str, ...]) -> bool:
    """Place names compare without case and surrounding blanks (YAML written by hand)."""
    if name is None:
        return False
    return name.strip().casefold() in {n.strip().casefold() for n in names}


def in_quiet_hours(route: Route, local_time: time) -> bool:
    """`local_time` falls in the route's quiet hours: start inclusive, end exclusive; a
    start after the end spans midnight, and equal start and end mean no quiet hours."""
    if route.quiet_hours is None:
        return False
    start, end = (_clock(route, text) for text in route.quiet_hours)
    at = local_time.replace(second=0, microsecond=0, tzinfo=None)
    if start <= end:
        return start <= at < end
    return at >= start or at < end


def _held_back(route: Route, alert: Alert, local_time: time) -> bool:
    # Quiet hours are read even for critical alarms, so a malformed setting shows at once.
    return in_quiet_hours(route, local_time) and alert.severity != "critical"


def _clock(route: Route, text: str) -> time:
    try:
        hours, minutes = (int(part) for part in text.strip().split(":"))
        return time(hours, minutes)
    except ValueError:
        raise ValueError(
            f"notify route {route.name!r}: quiet_hours expects HH:MM local times, got {text!r}"
        ) from None


def redact_recipient(delivery: Delivery) -> str:
    """The recipient without credentials, for logs and the delivery log: a webhook URL
    keeps scheme, host, port and path (no user:password, query or fragment)."""
    if delivery.channel != "webhook":
        return delivery.recipient
    try:
        parts = urlsplit(delivery.recipient)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        # Unparseable (a bad port, an unclosed IPv6 bracket): drop whatever follows the
        # path, where tokens usually sit, and any user:password.
        return scrub(delivery.recipient.split("?", 1)[0].split("#", 1)[0])
    if ":" in host:
        host = f"[{host}]"
    netloc = host if port is None else f"{host}:{port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))
