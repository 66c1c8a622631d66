"""The buttons under an alarm's Telegram message, and the line that says where it stands.
Pure: the notifier puts them on the messages it sends, `pantau telegram` on those it edits."""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

from pantau.messages import ACTION_APPLIES_TO, FALSE_POSITIVE_REASON_WORDS, Alert

# Callback data (at most 64 bytes): a code and the alarm id.
_BUTTONS: tuple[tuple[str, str, str], ...] = (
    # (action, code, label)
    ("ack", "a", "✅ Terima"),
    ("dispatch", "d", "🚚 Berangkat"),
    ("resolve", "r", "🧹 Selesai"),
    ("false_positive", "f", "❎ Alarm keliru"),
)
BY_CODE = {code: action for action, code, _ in _BUTTONS}
REASONS: tuple[tuple[str, str, str], ...] = tuple(
    (reason, code, FALSE_POSITIVE_REASON_WORDS[reason])
    for reason, code in (
        ("not_rubbish", "nr"),
        ("belongs_there", "bt"),
        ("person_present", "pp"),
        ("camera_moved", "cm"),
        ("other", "ot"),
    )
)
REASON_BY_CODE = {code: reason for reason, code, _ in REASONS}
STATE_WORDS = {
    "OPEN": "Baru",
    "ACK": "Diterima",
    "DISPATCHED": "Petugas berangkat",
    "RESOLVED": "Selesai",
    "FALSE_POSITIVE": "Alarm keliru",
    "CLEARED": "Pulih",
}


def keyboard(alert: Alert) -> dict[str, Any] | None:
    """The buttons that fit the alarm's state (none once it is settled)."""
    rows = [
        [{"text": label, "callback_data": f"{code}:{alert.alarm_id}"}]
        for action, code, label in _BUTTONS
        if alert.state in ACTION_APPLIES_TO[action]
    ]
    if not rows:
        return None
    # Two buttons a row: big enough for a thumb.
    flat = [button for row in rows for button in row]
    return {"inline_keyboard": [flat[i : i + 2] for i in range(0, len(flat), 2)]}


def status_line(alert: Alert, tz: ZoneInfo) -> str:
    """Who moved the alarm last, and when, for the edited message."""
    state = STATE_WORDS.get(alert.state, alert.state)
    when = alert.updated_at.astimezone(tz).strftime("%H:%M %Z")
    who = f" oleh {alert.by}" if alert.by else ""
    extra = ""
    if alert.state == "DISPATCHED" and alert.dispatched_to:
        extra = f" ({alert.dispatched_to})"
    return f"<b>Status: {state}</b>{extra}{who}, {when}"
