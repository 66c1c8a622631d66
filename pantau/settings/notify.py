"""Notifications: routes, channels (Telegram, e-mail, webhooks) and retries."""

from __future__ import annotations

from typing import Literal, Self

from pydantic import (
    Field,
    SecretStr,
    model_validator,
)

from pantau.settings.base import Section, _section
from pantau.settings.streams import Severity


class Route(Section):
    """Who hears about which alarms, and how."""

    name: str = Field(description="shown in logs and the delivery log")
    alarm_types: tuple[str, ...] = Field((), description="only these alarm types (empty: all)")
    desa: tuple[str, ...] = Field((), description="only alarms in these desa (empty: all)")
    kecamatan: tuple[str, ...] = Field(
        (), description="only alarms in these kecamatan (empty: all)"
    )
    escalation_level: int = Field(
        0,
        ge=0,
        le=1,
        description="0: the alarms as they happen; 1: the next level (e.g. the kecamatan "
        "coordinator), which hears of an alarm only once nobody acknowledged it within "
        "streams.escalate_after_s, and of its later changes",
    )
    min_severity: Severity = "info"
    telegram_chat_ids: tuple[str, ...] = ()
    emails: tuple[str, ...] = ()
    webhooks: tuple[str, ...] = Field((), description="URLs that receive a JSON POST")
    quiet_hours: tuple[str, str] | None = Field(
        None,
        description='("22:00", "06:00") local time: nothing but critical alarms then',
    )


class TelegramSettings(Section):
    base_url: str = Field("https://api.telegram.org", description="Bot API base URL")
    token: SecretStr | None = Field(None, description="bot token (from the environment)")
    buttons: bool = Field(
        True,
        description="alarm messages carry buttons (Terima, Berangkat, Selesai, Alarm keliru) "
        "that `pantau telegram` answers",
    )
    updates: Literal["polling", "webhook"] = Field(
        "polling",
        description="how `pantau telegram` receives button presses: long polling (getUpdates, "
        "works behind NAT) or a webhook Telegram calls",
    )
    poll_timeout_s: int = Field(25, ge=1, le=50, description="long-polling wait per request")
    webhook_host: str = Field("127.0.0.1", description="webhook mode: listen address")
    webhook_port: int = Field(8443, ge=1, le=65535, description="webhook mode: listen port")
    webhook_secret: SecretStr | None = Field(
        None,
        description="webhook mode: the secret Telegram sends back in "
        "X-Telegram-Bot-Api-Secret-Token (setWebhook's secret_token); required there",
    )
    action_wait_s: float = Field(
        8.0,
        gt=0,
        le=14,
        description="how long a button press waits for the stream processor's decision "
        "before it is answered as sent (Telegram wants an answer within 15 s)",
    )
    photo_wait_s: float = Field(
        3600.0, gt=0, description="after Selesai, how long the bot waits for the photo"
    )
    link_code_ttl_s: float = Field(
        86400.0, gt=0, description="a one-time link code (`pantau users link`) lasts this long"
    )

    @model_validator(mode="after")
    def verify_webhook(self) -> Self:
        if self.updates == "webhook" and self.webhook_secret is None:
            raise ValueError(
                "notify.telegram.updates: webhook needs notify.telegram.webhook_secret (from "
                "the environment), or anyone could send the bot button presses"
            )
        return self


class EmailSettings(Section):
    host: str = "localhost"
    port: int = Field(25, ge=1, le=65535)
    starttls: bool = False
    username: str | None = None
    password: SecretStr | None = None
    sender: str = Field("pantau@localhost", description="From: address")


class NotifySettings(Section):
    group_id: str = Field("pantau-notify", description="Kafka consumer group of the notifier")
    language: Literal["id", "en"] = Field("id", description="Bahasa Indonesia or English")
    incident_url: str = Field(
        "http://localhost:8090/incidents/{alarm_id}",
        description="link in every message; {alarm_id} is replaced",
    )
    retry_initial_s: float = Field(2.0, gt=0)
    retry_max_s: float = Field(300.0, gt=0)
    max_attempts: int = Field(20, ge=1, description="then the delivery is marked failed")
    timeout_s: float = Field(10.0, gt=0, description="per delivery attempt")
    telegram: TelegramSettings = _section()
    email: EmailSettings = _section()
    routes: tuple[Route, ...] = ()
