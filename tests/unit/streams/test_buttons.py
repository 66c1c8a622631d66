from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from streams.buttons import REASON_BY_CODE, REASONS, keyboard, status_line
from tests.factories import SAMPLES

ALERT = SAMPLES["alert"]
WIB = ZoneInfo("Asia/Jakarta")


@pytest.mark.parametrize(
    ("state", "codes"),
    [
        ("OPEN", ["a", "d", "r", "f"]),
        ("ACK", ["d", "r", "f"]),
        ("DISPATCHED", ["r", "f"]),
        ("CLEARED", ["r", "f"]),
        ("RESOLVED", []),
        ("FALSE_POSITIVE", []),
    ],
)
def test_the_buttons_fit_the_alarms_state(state: str, codes: list[str]) -> None:
    markup = keyboard(ALERT.model_copy(update={"state": state}))
    shown = [b["callback_data"] for row in (markup or {}).get("inline_keyboard", []) for b in row]
    assert shown == [f"{c}:{ALERT.alarm_id}" for c in codes]
    # Two to a row, for a thumb.
    assert all(len(row) <= 2 for row in (markup or {}).get("inline_keyboard", []))


def test_every_callback_fits_telegrams_64_bytes() -> None:
    longest = f"fr:{max(REASON_BY_CODE, key=len)}:{ALERT.alarm_id}"
    assert len(longest.encode()) <= 64
    assert {reason for reason, _, _ in REASONS} == {
        "not_rubbish", "belongs_there", "person_present", "camera_moved", "other"
    }  # fmt: skip


def test_the_status_line_says_who_and_when_in_local_time() -> None:
    acked = ALERT.model_copy(
        update={
            "state": "DISPATCHED",
            "by": "budi",
            "dispatched_to": "Budi Santoso",
            "updated_at": datetime(2026, 12, 7, 3, 15, tzinfo=UTC),
        }
    )
    assert status_line(acked, WIB) == (
        "<b>Status: Petugas berangkat</b> (Budi Santoso) oleh budi, 10:15 WIB"
    )
