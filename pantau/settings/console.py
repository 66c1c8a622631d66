"""The incident console."""

from __future__ import annotations

from typing import Literal, Self

from pydantic import (
    Field,
    model_validator,
)

from pantau.settings.base import ConfigPath, Section


class ConsoleSettings(Section):
    """The incident console (`pantau console`): web pages and the REST API for the people
    who act on alarms."""

    # This machine only, unless set: like the HTTP ingest, a listener on the network is a
    # choice, and without TLS one that start-up warns about (passwords cross the network).
    host: str = Field(
        "127.0.0.1",
        description="address the console listens on (0.0.0.0: every interface; then with "
        "tls_cert and tls_key, or behind a TLS proxy)",
    )
    port: int = Field(8090, ge=1, le=65535, description="port of `pantau console`")
    public_url: str = Field(
        "http://localhost:8090",
        description="the console as people reach it; links on the wall and in notifications",
    )
    tls_cert: ConfigPath | None = Field(
        None, description="certificate chain (PEM) served for HTTPS; set with tls_key"
    )
    tls_key: ConfigPath | None = Field(None, description="private key (PEM) of tls_cert")
    trusted_proxies: tuple[str, ...] = Field(
        (),
        description="addresses of the TLS proxies in front of the console, whose "
        "X-Forwarded-For and X-Forwarded-Proto are believed (the client's address then "
        "counts for login limits and the audit log); empty: the connection's own address",
    )
    session_hours: float = Field(
        12.0, gt=0, le=24 * 30, description="a login lasts this long without use"
    )
    secure_cookies: bool | None = Field(
        None,
        description="mark the session cookie Secure (only sent over HTTPS); default: when "
        "public_url is https",
    )
    login_attempts: int = Field(
        5, ge=1, le=1000, description="failed logins per user and per address per window"
    )
    login_window_s: float = Field(
        300.0, gt=0, description="the window of login_attempts; then it is refused (429)"
    )
    max_upload_bytes: int = Field(
        10 * 1024 * 1024,
        ge=64 * 1024,
        le=100 * 1024 * 1024,
        description="largest photo uploaded with an action",
    )
    language: Literal["id", "en"] = Field("id", description="default language of the pages")
    map_tiles_url: str | None = Field(
        None,
        description="map tile URL template ({z}/{x}/{y}) for the incident map, e.g. an "
        "offline tile server; none: coordinates are shown as text",
    )

    @model_validator(mode="after")
    def verify_tls(self) -> Self:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError(
                "console.tls_cert and console.tls_key go together: set both or neither"
            )
        if self.map_tiles_url is not None and not self.map_tiles_url.strip():
            # An empty environment variable in the YAML: no tile server.
            object.__setattr__(self, "map_tiles_url", None)
        return self

    @property
    def cookies_secure(self) -> bool:
        if self.secure_cookies is not None:
            return self.secure_cookies
        return self.public_url.startswith("https://")

    def incident_url(self, alarm_id: str) -> str:
        return f"{self.public_url.rstrip('/')}/incidents/{alarm_id}"
