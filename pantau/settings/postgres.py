"""PostgreSQL: where the database is and the passwords of its roles."""

from __future__ import annotations

from typing import Literal

from pydantic import (
    Field,
)

from pantau.settings.base import CONSOLE_ROLE, WRITER_ROLE, Section, StrongSecret


class PostgresSettings(Section):
    host: str = Field("localhost", description="database host")
    port: int = Field(5432, ge=1, le=65535)
    dbname: str = Field("pantau", description="database name")
    user: str = Field("pantau", description="owner role: runs migrations")
    password: StrongSecret = Field(None, description="owner password (from the environment)")
    writer_password: StrongSecret = Field(
        None, description="password of the pantau_writer role the sink writes as"
    )
    grafana_password: StrongSecret = Field(
        None, description="password of the pantau_grafana role Grafana reads as"
    )
    analyst_password: StrongSecret = Field(
        None, description="password of the pantau_analyst role (read-only SQL)"
    )
    console_password: StrongSecret = Field(
        None, description="password of the pantau_console role the incident console uses"
    )
    sslmode: Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"] = "prefer"
    connect_timeout_s: int = Field(5, ge=1, le=120)

    def connect_kwargs(
        self, role: Literal["owner", "writer", "console"] = "owner"
    ) -> dict[str, str | int]:
        """Keyword arguments for a libpq connection as the given role."""
        user, password = {
            "owner": (self.user, self.password),
            "writer": (WRITER_ROLE, self.writer_password),
            "console": (CONSOLE_ROLE, self.console_password),
        }[role]
        kwargs: dict[str, str | int] = {
            "host": self.host,
            "port": self.port,
            "dbname": self.dbname,
            "user": user,
            "sslmode": self.sslmode,
            "connect_timeout": self.connect_timeout_s,
            "application_name": f"pantau-{role}",
        }
        if password is not None:
            kwargs["password"] = password.get_secret_value()
        return kwargs
