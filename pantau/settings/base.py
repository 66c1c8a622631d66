"""The common ground of every section: the strict base model, ids, paths relative to the
settings file, secrets strong enough to guard a door, and the error every mistake raises."""

from __future__ import annotations

import os.path
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    model_validator,
)

# Role names are part of the schema (migrations grant to them), so they are not settings.
WRITER_ROLE = "pantau_writer"
CONSOLE_ROLE = "pantau_console"

_ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"


def _number_from_text(value: Any) -> Any:
    # Values from the environment (overrides, ${VAR}) are text; pydantic turns "320" into an
    # int for an int field, but not for a choice of numbers.
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return value


_SECRET_KEYS = frozenset(
    {
        "url", "password", "writer_password", "grafana_password", "analyst_password", "token",
        "webhooks", "secret", "secret_hash", "sasl_password", "ssl_key_password",
    }
)  # fmt: skip


class SettingsError(Exception):
    """The configuration is unusable; the message says where and why, one problem per line."""


def _resolve_path(value: Path, info: ValidationInfo) -> Path:
    base = (info.context or {}).get("base_dir")
    value = value.expanduser()
    if base is not None and not value.is_absolute():
        # normpath rather than resolve(): keep symlinks as the deployer wrote them.
        return Path(os.path.normpath(Path(base) / value))
    return value


ConfigPath = Annotated[Path, AfterValidator(_resolve_path)]
SourceId = Annotated[
    str, Field(pattern=_ID_PATTERN, description="lower-case id: a-z, 0-9, _ and -")
]


def _section() -> Any:
    """Default for a nested section: validated like file input, so relative paths in its
    defaults resolve against the config file's folder too."""
    return Field(default_factory=dict, validate_default=True)


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @classmethod
    def default_of(cls, name: str) -> Any:
        """The default of one field: a core's own config takes it from here, so each
        default is written once."""
        return cls.model_fields[name].get_default(call_default_factory=True)

    @classmethod
    def check_fields(cls, what: str, values: Mapping[str, Any]) -> None:
        """Refuse values the section would refuse (its bounds, written once), with a
        ValueError naming each field and its bound; the other fields take their defaults."""
        try:
            cls.model_validate(values)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}, got {e['input']!r}"
                for e in exc.errors()
            )
            raise ValueError(f"{what}: {problems}") from None


class Location(Section):
    lat: float = Field(ge=-90, le=90, description="latitude, WGS84 degrees")
    lon: float = Field(ge=-180, le=180, description="longitude, WGS84 degrees")
    desa: str | None = Field(None, description="desa / kelurahan (village) name")
    kecamatan: str | None = Field(None, description="kecamatan (district) name")
    river: str | None = Field(
        None,
        max_length=63,
        description="the river it stands on (a camera on the bank, a gauge): place rules "
        "join them along it",
    )
    river_km: float | None = Field(
        None, description="where on the river: kilometres from a point upstream, growing downstream"
    )

    @model_validator(mode="after")
    def verify_river(self) -> Self:
        if (self.river is None) != (self.river_km is None):
            raise ValueError("location: river and river_km go together")
        return self


# Shortest password, token or shared secret Pantau accepts for its own doors.
MIN_SECRET_CHARS = 16


def _strong_secret(value: SecretStr | None) -> SecretStr | None:
    # `password: ${PANTAU_MQTT_PASSWORD:-}` with the variable unset means "no password", not
    # the empty one.
    if value is None or not value.get_secret_value().strip():
        return None
    if len(value.get_secret_value()) < MIN_SECRET_CHARS:
        raise ValueError(
            f"a secret must have at least {MIN_SECRET_CHARS} characters "
            "(`pantau secrets init` makes strong ones)"
        )
    return value


# A secret of one of Pantau's own doors, from the environment: blank is none, short is refused.
StrongSecret = Annotated[SecretStr | None, AfterValidator(_strong_secret)]
