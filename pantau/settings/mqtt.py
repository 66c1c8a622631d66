"""MQTT: the broker the sensors publish to, and the HTTP gateway for sensors that cannot."""

from __future__ import annotations

from typing import Annotated, Literal, Self

from pydantic import (
    BeforeValidator,
    Field,
    model_validator,
)

from pantau.settings.base import (
    ConfigPath,
    Section,
    SettingsError,
    SourceId,
    StrongSecret,
    _number_from_text,
)


class MqttSettings(Section):
    host: str = Field("localhost", description="MQTT broker host")
    port: int = Field(1883, ge=1, le=65535)
    username: str = Field(
        "pantau-ingest", min_length=1, description="the ingest's own user on the broker"
    )
    password: StrongSecret = Field(
        None, description="the ingest's password (from the environment: PANTAU_MQTT_PASSWORD)"
    )
    allow_anonymous: bool = Field(
        False,
        description="connect without a user, to a broker that allows it: an open door, "
        "logged as such at start-up; Pantau's own brokers refuse anonymous clients",
    )
    tls: bool = Field(False, description="connect with TLS (the broker's TLS listener)")
    ca_file: ConfigPath | None = Field(
        None, description="CA certificate that signed the broker's (default: the system's)"
    )
    topic_prefix: str = Field(
        "pantau/sensors", description="sensors publish readings on PREFIX/<sensor_id>"
    )
    qos: Annotated[Literal[0, 1, 2], BeforeValidator(_number_from_text)] = Field(
        1, description="1: the broker keeps readings while ingest is down"
    )
    client_id: str = Field(
        "pantau-ingest-sensors",
        description="start of the persistent session's client id; the host and a suffix only "
        "the password can make follow, so no other client can take the session over",
    )
    keepalive_s: int = Field(30, ge=5)
    shared_group: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9_-]{1,64}$",
        description="several sensor ingest processes share the readings: each subscribes as "
        "a member of this group ($share/GROUP/...) and the broker hands each reading to one "
        "of them; unset: one process takes every reading",
    )
    member: int = Field(
        0,
        ge=0,
        le=9999,
        description="with shared_group: this process's number in the group, so that each "
        "member keeps its own persistent session across restarts (`--member K`)",
    )

    def require_login(self) -> None:
        """SettingsError unless the ingest has a password or anonymity was chosen."""
        if self.password is None and not self.allow_anonymous:
            raise SettingsError(
                "mqtt.password is not set: the broker refuses anonymous clients. Set "
                "PANTAU_MQTT_PASSWORD (`pantau secrets init` makes one), or, for a broker that "
                "allows them, mqtt.allow_anonymous: true"
            )


class GatewaySettings(Section):
    """A device that sends readings: a sensor's own modem, or a gateway speaking for several.
    One secret is its MQTT password (its id is the user name) and its HTTP bearer token."""

    id: SourceId
    name: str = ""
    sensors: tuple[SourceId, ...] = Field(
        min_length=1, description="the only sensors it may send readings for"
    )
    secret_hash: str | None = Field(
        None,
        description="its secret's PBKDF2 hash in Mosquitto's format ($7$...), from "
        "`pantau gateways add`: the registry never holds the secret itself",
    )
    secret: StrongSecret = Field(
        None,
        description="its secret in plain text, from the environment (development and tests); "
        "hashed when the settings are loaded",
    )
    revoked: bool = Field(
        False, description="a stolen or retired device: refused by MQTT and HTTP alike"
    )

    @model_validator(mode="after")
    def verify_secret(self) -> Self:
        if self.secret_hash is not None and self.secret is not None:
            raise ValueError("set secret_hash or secret, not both")
        if self.secret_hash is not None:
            from pantau.credentials import CredentialError, parse_hash

            try:
                parse_hash(self.secret_hash)
            except CredentialError as exc:
                raise ValueError(f"secret_hash: {exc}") from exc
        return self

    @property
    def can_log_in(self) -> bool:
        return not self.revoked and (self.secret_hash is not None or self.secret is not None)
