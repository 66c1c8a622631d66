"""Who hears about an alert: route filters, quiet hours, de-duplication, redaction."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from pantau.messages import Alert
from pantau.settings import NotifySettings
from streams.routing import Delivery, deliveries_for, redact_recipient
from tests.factories import SAMPLES

WIB = ZoneInfo("Asia/Jakarta")
# Mid-morning in Mojokerto: outside every quiet hours used here.
MORNING = datetime(2026, 11, 23, 10, 15, tzinfo=WIB)


def alert(**changes: Any) -> Alert:
    data = SAMPLES["alert"].model_dump()
    data.update(changes)
    return Alert.model_validate(data)


def place(desa: str | None) -> dict[str, Any]:
    return {"name": "TPS Sooko", "desa": desa, "kecamatan": "Sooko"}


TOKEN = "123:abc"


def notify(*routes: dict[str, Any], token: str | None = TOKEN) -> NotifySettings:
    return NotifySettings.model_validate(
        {"telegram": {"token": token}, "routes": [{"name": "r", **r} for r in routes]}
    )


def recipients(deliveries: list[Delivery]) -> list[str]:
    return [d.recipient for d in deliveries]


@pytest.mark.parametrize(
    ("min_severity", "severity", "delivered"),
    [
        ("info", "info", True),
        ("info", "critical", True),
        ("major", "minor", False),
        ("major", "major", True),
        ("major", "critical", True),
        ("warning", "info", False),
        ("critical", "major", False),
        ("critical", "critical", True),
    ],
)
def test_min_severity_admits_alerts_at_or_above_it(
    min_severity: str, severity: str, delivered: bool
) -> None:
    settings = notify({"min_severity": min_severity, "emails": ["dlh@localhost"]})
    got = deliveries_for(alert(severity=severity), settings, now=MORNING, tz=WIB)
    assert recipients(got) == (["dlh@localhost"] if delivered else [])


@pytest.mark.parametrize(
    ("route_desa", "alert_place", "delivered"),
    [
        ([], None, True),
        ([], place("Lengkong"), True),
        (["Sooko"], place("Sooko"), True),
        (["Sooko"], place("sooko"), True),
        (["sooko"], place("SOOKO "), True),
        (["Sooko", "Gedeg"], place("Gedeg"), True),
        (["Sooko"], place("Lengkong"), False),
        (["Sooko"], place(None), False),
        (["Sooko"], None, False),
    ],
)
def test_desa_filter_compares_names_case_insensitively(
    route_desa: list[str], alert_place: dict[str, Any] | None, delivered: bool
) -> None:
    settings = notify({"desa": route_desa, "emails": ["dlh@localhost"]})
    got = deliveries_for(alert(place=alert_place), settings, now=MORNING, tz=WIB)
    assert recipients(got) == (["dlh@localhost"] if delivered else [])


def in_kecamatan(kecamatan: str | None) -> dict[str, Any]:
    return {"name": "TPS Sooko", "desa": "Sooko", "kecamatan": kecamatan}


@pytest.mark.parametrize(
    ("route_kecamatan", "alert_place", "delivered"),
    [
        ([], None, True),
        ([], in_kecamatan("Gedeg"), True),
        (["Sooko"], in_kecamatan("Sooko"), True),
        (["prajurit kulon"], in_kecamatan(" Prajurit Kulon"), True),
        (["Sooko", "Gedeg"], in_kecamatan("Gedeg"), True),
        (["Sooko"], in_kecamatan("Gedeg"), False),
        (["Sooko"], in_kecamatan(None), False),
        (["Sooko"], None, False),
    ],
)
def test_kecamatan_filter_compares_names_case_insensitively(
    route_kecamatan: list[str], alert_place: dict[str, Any] | None, delivered: bool
) -> None:
    settings = notify({"kecamatan": route_kecamatan, "emails": ["camat@localhost"]})
    got = deliveries_for(alert(place=alert_place), settings, now=MORNING, tz=WIB)
    assert recipients(got) == (["camat@localhost"] if delivered else [])


def test_desa_and_kecamatan_must_both_match() -> None:
    settings = notify({"desa": ["Sooko"], "kecamatan": ["Gedeg"], "emails": ["x@localhost"]})
    got = deliveries_for(alert(place=in_kecamatan("Sooko")), settings, now=MORNING, tz=WIB)
    assert got == []


@pytest.mark.parametrize(
    ("route_level", "escalation", "change", "delivered"),
    [
        # As it happens: the first level only.
        (0, 0, "opened", True),
        (1, 0, "opened", False),
        (1, 0, "dispatched", False),
        # Nobody acknowledged it: the next level is told, the first is not told again.
        (0, 1, "unacknowledged", False),
        (1, 1, "unacknowledged", True),
        # From then on both hear of what people should hear about.
        (0, 1, "dispatched", True),
        (1, 1, "dispatched", True),
        (1, 1, "resolved", True),
        (1, 1, "reopened", True),
    ],
)
def test_escalation_level_decides_who_hears_of_an_alarm_nobody_took(
    route_level: int, escalation: int, change: str, delivered: bool
) -> None:
    settings = notify({"escalation_level": route_level, "emails": ["camat@localhost"]})
    passed_on = alert(escalation=escalation, change=change)
    got = deliveries_for(passed_on, settings, now=MORNING, tz=WIB)
    assert recipients(got) == (["camat@localhost"] if delivered else [])


def test_unacknowledged_alarm_reaches_the_coordinator_of_its_kecamatan_only() -> None:
    settings = notify(
        {"name": "command-center", "telegram_chat_ids": ["-1001"]},
        {"name": "dlh-sooko", "desa": ["Sooko"], "emails": ["dlh-sooko@localhost"]},
        {
            "name": "koordinator-sooko",
            "escalation_level": 1,
            "kecamatan": ["Sooko"],
            "telegram_chat_ids": ["-2002"],
        },
        {
            "name": "koordinator-gedeg",
            "escalation_level": 1,
            "kecamatan": ["Gedeg"],
            "emails": ["koordinator-gedeg@localhost"],
        },
    )
    sooko = in_kecamatan("Sooko")

    opened = deliveries_for(alert(place=sooko), settings, now=MORNING, tz=WIB)
    passed_on = deliveries_for(
        alert(place=sooko, change="unacknowledged", escalation=1), settings, now=MORNING, tz=WIB
    )

    assert [d.route for d in opened] == ["command-center", "dlh-sooko"]
    assert passed_on == [Delivery("koordinator-sooko", "telegram", "-2002")]


@pytest.mark.parametrize("level", [-1, 2])
def test_escalation_levels_beyond_the_one_there_is_are_refused(level: int) -> None:
    with pytest.raises(ValueError, match="escalation_level"):
        notify({"escalation_level": level})


@pytest.mark.parametrize(
    ("alarm_types", "alarm_type", "delivered"),
    [
        ([], "water-high", True),
        (["tps-full", "dumping"], "dumping", True),
        (["tps-full", "dumping"], "water-high", False),
    ],
)
def test_alarm_type_filter(alarm_types: list[str], alarm_type: str, delivered: bool) -> None:
    settings = notify({"alarm_types": alarm_types, "emails": ["dlh@localhost"]})
    got = deliveries_for(alert(alarm_type=alarm_type), settings, now=MORNING, tz=WIB)
    assert recipients(got) == (["dlh@localhost"] if delivered else [])


@pytest.mark.parametrize(
    ("quiet", "local", "severity", "delivered"),
    [
        # Across midnight: start inclusive, end exclusive.
        (("22:00", "06:00"), "21:59", "major", True),
        (("22:00", "06:00"), "22:00", "major", False),
        (("22:00", "06:00"), "23:30", "major", False),
        (("22:00", "06:00"), "00:00", "major", False),
        (("22:00", "06:00"), "05:59", "minor", False),
        (("22:00", "06:00"), "06:00", "major", True),
        (("22:00", "06:00"), "12:00", "info", True),
        # Critical alarms pass through quiet hours.
        (("22:00", "06:00"), "23:30", "critical", True),
        (("22:00", "06:00"), "03:00", "critical", True),
        # Within one day.
        (("12:00", "13:30"), "12:45", "major", False),
        (("12:00", "13:30"), "13:30", "major", True),
        (("12:00", "13:30"), "23:00", "major", True),
        # Equal start and end: no quiet hours at all.
        (("22:00", "22:00"), "22:00", "major", True),
        (None, "03:00", "info", True),
    ],
)
def test_quiet_hours_hold_back_all_but_critical_alarms(
    quiet: tuple[str, str] | None, local: str, severity: str, delivered: bool
) -> None:
    settings = notify({"quiet_hours": quiet, "emails": ["dlh@localhost"]})
    hour, minute = (int(p) for p in local.split(":"))
    now = datetime(2026, 11, 23, hour, minute, 30, tzinfo=WIB)
    got = deliveries_for(alert(severity=severity), settings, now=now, tz=WIB)
    assert recipients(got) == (["dlh@localhost"] if delivered else [])


def test_quiet_hours_are_local_time_whatever_zone_now_is_given_in() -> None:
    settings = notify({"quiet_hours": ("22:00", "06:00"), "emails": ["dlh@localhost"]})
    # 16:00 UTC is 23:00 WIB.
    at_night = datetime(2026, 11, 23, 16, 0, tzinfo=UTC)
    assert deliveries_for(alert(severity="major"), settings, now=at_night, tz=WIB) == []
    # 03:00 UTC is 10:00 WIB.
    by_day = datetime(2026, 11, 23, 3, 0, tzinfo=UTC)
    assert deliveries_for(alert(severity="major"), settings, now=by_day, tz=WIB) != []


def test_quiet_hours_apply_per_route() -> None:
    settings = notify(
        {"name": "command-center", "telegram_chat_ids": ["-1001"]},
        {"name": "dlh-sooko", "quiet_hours": ("22:00", "06:00"), "emails": ["dlh@localhost"]},
    )
    night = datetime(2026, 11, 23, 23, 0, tzinfo=WIB)
    got = deliveries_for(alert(severity="major"), settings, now=night, tz=WIB)
    assert got == [Delivery("command-center", "telegram", "-1001")]


def test_each_recipient_hears_once_under_the_first_route_in_a_stable_order() -> None:
    settings = notify(
        {
            "name": "command-center",
            "telegram_chat_ids": ["-1001"],
            "emails": ["cc@localhost"],
            "webhooks": ["https://hooks.example/a"],
        },
        {
            "name": "dlh",
            "webhooks": ["https://hooks.example/a", "https://hooks.example/b"],
            "emails": ["CC@localhost", "dlh@localhost"],
            "telegram_chat_ids": ["-1002", "-1001"],
        },
    )
    got = deliveries_for(alert(), settings, now=MORNING, tz=WIB)
    assert got == [
        Delivery("command-center", "telegram", "-1001"),
        Delivery("command-center", "email", "cc@localhost"),
        Delivery("command-center", "webhook", "https://hooks.example/a"),
        Delivery("dlh", "telegram", "-1002"),
        Delivery("dlh", "email", "dlh@localhost"),
        Delivery("dlh", "webhook", "https://hooks.example/b"),
    ]
    assert deliveries_for(alert(), settings, now=MORNING, tz=WIB) == got


def test_the_same_recipient_on_two_channels_gets_both() -> None:
    settings = notify({"telegram_chat_ids": ["42"], "webhooks": ["42"]})
    got = deliveries_for(alert(), settings, now=MORNING, tz=WIB)
    assert [(d.channel, d.recipient) for d in got] == [("telegram", "42"), ("webhook", "42")]


@pytest.mark.parametrize("token", [None, "", "  "])
def test_telegram_only_with_a_bot_token(token: str | None) -> None:
    settings = notify({"telegram_chat_ids": ["-1001"], "emails": ["cc@localhost"]}, token=token)
    got = deliveries_for(alert(), settings, now=MORNING, tz=WIB)
    assert got == [Delivery("r", "email", "cc@localhost")]


def test_an_empty_recipient_from_an_unset_variable_is_skipped() -> None:
    settings = notify({"telegram_chat_ids": [""], "emails": [" ", "cc@localhost"]})
    got = deliveries_for(alert(), settings, now=MORNING, tz=WIB)
    assert got == [Delivery("r", "email", "cc@localhost")]


def test_alerts_not_meant_for_people_go_nowhere() -> None:
    settings = notify({"telegram_chat_ids": ["-1001"], "emails": ["cc@localhost"]})
    assert deliveries_for(alert(notify=False), settings, now=MORNING, tz=WIB) == []


def test_no_routes_no_deliveries() -> None:
    assert deliveries_for(alert(), NotifySettings(), now=MORNING, tz=WIB) == []


def test_a_naive_time_is_refused() -> None:
    settings = notify({"emails": ["cc@localhost"]})
    with pytest.raises(ValueError, match="timezone-aware"):
        deliveries_for(alert(), settings, now=datetime(2026, 11, 23, 10, 0), tz=WIB)


@pytest.mark.parametrize("quiet", [("22", "06:00"), ("22:00", "6 pagi"), ("25:00", "06:00")])
def test_malformed_quiet_hours_name_the_route(quiet: tuple[str, str]) -> None:
    settings = notify({"name": "dlh-sooko", "quiet_hours": quiet, "emails": ["dlh@localhost"]})
    with pytest.raises(ValueError, match=r"route 'dlh-sooko': quiet_hours expects HH:MM"):
        deliveries_for(alert(), settings, now=MORNING, tz=WIB)


@pytest.mark.parametrize(
    ("channel", "recipient", "shown"),
    [
        ("webhook", "https://hooks.example/pantau", "https://hooks.example/pantau"),
        (
            "webhook",
            "https://user:s3cret@hooks.example:8443/in/pantau?token=abc#x",
            "https://hooks.example:8443/in/pantau",
        ),
        ("webhook", "http://[::1]:8080/hook?key=1", "http://[::1]:8080/hook"),
        ("webhook", "http://user:pw@host:notaport/p?key=1", "http://***@host:notaport/p"),
        ("telegram", "-1001234", "-1001234"),
        ("email", "dlh@mojokertokab.go.id", "dlh@mojokertokab.go.id"),
    ],
)
def test_recipients_are_shown_without_credentials(channel: Any, recipient: str, shown: str) -> None:
    assert redact_recipient(Delivery("r", channel, recipient)) == shown
