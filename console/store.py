"""The console's database side: alarms, their history and evidence references, sources, and
the console's own users, sessions, tokens and audit log. Connects as pantau_console, which
reads the pipeline's tables and writes only the console's own.

The stream processor remains the only writer of alarm state: nothing here changes an alarm.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from pantau.credentials import link_code_digest, new_link_code
from pantau.ids import utcnow
from pantau.roles import FIELD_SENSOR_TYPES, FIELD_SOURCE_KINDS, User
from pantau.settings import Settings

log = logging.getLogger(__name__)

Record = dict[str, Any]

ALARM_STATES = ("OPEN", "ACK", "DISPATCHED", "RESOLVED", "FALSE_POSITIVE", "CLEARED")
ACTIVE_STATES = ("OPEN", "ACK", "DISPATCHED")


class UserExists(ValueError):
    pass


class NoSuchUser(LookupError):
    pass


@dataclass(frozen=True)
class AlarmFilter:
    """The incident list's filters; None or empty: any."""

    state: tuple[str, ...] = ()
    alarm_type: tuple[str, ...] = ()
    desa: tuple[str, ...] = ()
    kecamatan: tuple[str, ...] = ()
    source: tuple[str, ...] = ()
    since: datetime | None = None
    until: datetime | None = None
    limit: int = 50
    offset: int = 0


# One alarm with its place: cameras and sensors carry desa, kecamatan and coordinates.
_ALARM_SELECT = """
SELECT a.alarm_id, a.version, a.source_kind, a.source_id, a.alarm_type, a.severity, a.state,
       a.change, a.count, a.last_value, a.quantity, a.threshold, a.message, a.event_id,
       a.opened_at, a.updated_at, a.acknowledged_at, a.dispatched_at, a.resolved_at,
       a.cleared_at, a.ts_notified, a.assignee, a.dispatched_to,
       coalesce(c.name, s.name, a.source_id) AS place_name,
       coalesce(c.desa, s.desa) AS desa,
       coalesce(c.kecamatan, s.kecamatan) AS kecamatan,
       coalesce(c.lat, s.lat) AS lat,
       coalesce(c.lon, s.lon) AS lon,
       s.type AS sensor_type
FROM alerts a
LEFT JOIN cameras c ON a.source_kind IN ('camera', 'dumping') AND c.camera_id = a.source_id
LEFT JOIN sensors s ON a.source_kind = 'sensor' AND s.sensor_id = a.source_id
"""


def _scope_condition(user: User) -> tuple[sql.Composable, list[Any]]:
    """Field staff see their kecamatan's field work only; everyone else sees everything."""
    if user.role != "dlh_field":
        return sql.SQL("TRUE"), []
    return (
        sql.SQL(
            "(a.source_kind = ANY(%s) OR (a.source_kind = 'sensor' AND s.type = ANY(%s))) "
            "AND lower(coalesce(c.kecamatan, s.kecamatan)) = ANY(%s)"
        ),
        [
            sorted(FIELD_SOURCE_KINDS),
            sorted(FIELD_SENSOR_TYPES),
            [k.casefold() for k in user.kecamatan],
        ],
    )


class Store:
    def __init__(self, settings: Settings, *, min_size: int = 1, max_size: int = 8) -> None:
        self._settings = settings
        self._pool = ConnectionPool(
            kwargs={**settings.postgres.connect_kwargs("console"), "row_factory": dict_row},
            min_size=min_size,
            max_size=max_size,
            open=False,
            name="console",
            check=ConnectionPool.check_connection,
        )

    def open(self, timeout_s: float = 30.0) -> None:
        self._pool.open(wait=True, timeout=timeout_s)

    def close(self) -> None:
        self._pool.close()

    @contextmanager
    def _conn(self) -> Iterator[psycopg.Connection[Record]]:
        with self._pool.connection() as conn:
            yield conn  # type: ignore[misc]

    def _all(self, query: str | sql.Composable, params: Sequence[Any] = ()) -> list[Record]:
        with self._conn() as conn:
            return conn.execute(query, params).fetchall()  # type: ignore[arg-type]

    def _one(self, query: str | sql.Composable, params: Sequence[Any] = ()) -> Record | None:
        with self._conn() as conn:
            return conn.execute(query, params).fetchone()  # type: ignore[arg-type]

    def ping(self) -> bool:
        return self._one("SELECT 1 AS ok") is not None

    # ------------------------------------------------------------------ alarms

    def alarms(self, user: User, f: AlarmFilter) -> list[Record]:
        """A page of alarms `user` may see, newest first; one more than `f.limit` when there
        is a next page."""
        conditions: list[sql.Composable] = []
        params: list[Any] = []
        scope, scope_params = _scope_condition(user)
        conditions.append(scope)
        params += scope_params
        for column, values in (
            ("a.state", f.state),
            ("a.alarm_type", f.alarm_type),
            ("a.source_id", f.source),
        ):
            if values:
                conditions.append(sql.SQL(f"{column} = ANY(%s)"))
                params.append(list(values))
        for column, values in (
            ("coalesce(c.desa, s.desa)", f.desa),
            ("coalesce(c.kecamatan, s.kecamatan)", f.kecamatan),
        ):
            if values:
                conditions.append(sql.SQL(f"lower({column}) = ANY(%s)"))
                params.append([v.casefold() for v in values])
        if f.since is not None:
            conditions.append(sql.SQL("a.opened_at >= %s"))
            params.append(f.since)
        if f.until is not None:
            conditions.append(sql.SQL("a.opened_at < %s"))
            params.append(f.until)
        query = sql.SQL(_ALARM_SELECT) + sql.SQL(
            " WHERE {} ORDER BY a.opened_at DESC, a.alarm_id LIMIT %s OFFSET %s"
        ).format(sql.SQL(" AND ").join(conditions))
        params += [f.limit + 1, f.offset]
        return self._all(query, params)

    def alarm(self, alarm_id: UUID) -> Record | None:
        return self._one(
            # A replayed source can raise an alarm id again: the latest opening is the alarm.
            sql.SQL(_ALARM_SELECT)
            + sql.SQL(" WHERE a.alarm_id = %s ORDER BY a.opened_at DESC, a.version DESC LIMIT 1"),
            [alarm_id],
        )

    def history(self, alarm_id: UUID, opened_at: datetime) -> list[Record]:
        """Every version of the alarm, and every action on it the stream processor refused,
        oldest first."""
        return self._all(
            """
            SELECT 'version' AS entry, time, version, state, change, severity, count,
                   last_value, message, assignee, dispatched_to, action_id, by, device, note,
                   reason, photo, NULL::text AS action, NULL::text AS refused, lat, lon
            FROM alarm_history WHERE alarm_id = %s AND opened_at = %s
            UNION ALL
            SELECT 'refused', time, NULL, NULL, NULL, NULL, NULL, NULL, '', NULL, NULL,
                   action_id, by, device, note, reason, photo, action, refused, lat, lon
            FROM alarm_actions WHERE alarm_id = %s AND refused IS NOT NULL AND time >= %s
            ORDER BY time, version NULLS LAST
            """,
            [alarm_id, opened_at, alarm_id, opened_at],
        )

    def action_outcome(self, action_id: UUID) -> Record | None:
        """How the stream processor decided an action, once stored: the version it made,
        or its refusal."""
        return self._one(
            """
            SELECT 'applied' AS status, version, NULL::text AS reason FROM alarm_history
            WHERE action_id = %s
            UNION ALL
            SELECT 'refused', NULL, refused FROM alarm_actions
            WHERE action_id = %s AND refused IS NOT NULL
            LIMIT 1
            """,
            [action_id, action_id],
        )

    def photo_of(self, alarm_id: UUID, action_id: UUID) -> Record | None:
        return self._one(
            "SELECT photo FROM alarm_history WHERE alarm_id = %s AND action_id = %s "
            "AND photo IS NOT NULL",
            [alarm_id, action_id],
        )

    # ------------------------------------------------------------------ dumping events

    def event(self, event_id: UUID) -> Record | None:
        return self._one(
            """
            SELECT e.event_id, e.camera_id, e.zone_id, e.state, e.phase, e.version,
                   e.appeared_at, e.owner_left_at, e.alerted_at, e.ended_at,
                   e.x1, e.y1, e.x2, e.y2, e.label, e.confidence, e.evidence,
                   e.evidence_error, e.updated_at,
                   c.name AS camera_name, c.desa, c.kecamatan, c.lat, c.lon
            FROM dumping_events e LEFT JOIN cameras c USING (camera_id)
            WHERE e.event_id = %s ORDER BY e.version DESC LIMIT 1
            """,
            [event_id],
        )

    def events(self, user: User, since: datetime | None, limit: int, offset: int) -> list[Record]:
        conditions: list[sql.Composable] = [sql.SQL("TRUE")]
        params: list[Any] = []
        if user.role == "dlh_field":
            conditions.append(sql.SQL("lower(c.kecamatan) = ANY(%s)"))
            params.append([k.casefold() for k in user.kecamatan])
        if since is not None:
            conditions.append(sql.SQL("e.appeared_at >= %s"))
            params.append(since)
        params += [limit + 1, offset]
        query = sql.SQL(
            """
            SELECT e.event_id, e.camera_id, e.zone_id, e.state, e.phase, e.version,
                   e.appeared_at, e.alerted_at, e.ended_at, e.confidence, e.evidence,
                   e.evidence_error, c.name AS camera_name, c.desa, c.kecamatan,
                   (SELECT a.alarm_id FROM alerts a WHERE a.event_id = e.event_id
                    ORDER BY a.opened_at DESC LIMIT 1) AS alarm_id
            FROM dumping_events e LEFT JOIN cameras c USING (camera_id)
            WHERE {}
            ORDER BY e.appeared_at DESC LIMIT %s OFFSET %s
            """
        ).format(sql.SQL(" AND ").join(conditions))
        return self._all(query, params)

    # ------------------------------------------------------------------ sources

    def sources(self) -> list[Record]:
        """Every camera and sensor with its latest status (last heartbeat, last reading)."""
        return self._all(
            """
            SELECT 'camera' AS kind, c.camera_id AS id, c.name, c.desa, c.kecamatan, c.lat, c.lon,
                   NULL::text AS type, h.time AS last_seen, h.status, h.fps,
                   (SELECT count(*) FROM alerts a WHERE a.source_id = c.camera_id
                    AND a.state IN ('OPEN', 'ACK', 'DISPATCHED')) AS open_alarms
            FROM cameras c
            LEFT JOIN LATERAL (
                SELECT time, status, fps FROM camera_health
                WHERE camera_id = c.camera_id ORDER BY time DESC LIMIT 1
            ) h ON TRUE
            WHERE c.active
            UNION ALL
            SELECT 'sensor', s.sensor_id, s.name, s.desa, s.kecamatan, s.lat, s.lon, s.type,
                   r.time, NULL, NULL,
                   (SELECT count(*) FROM alerts a WHERE a.source_id = s.sensor_id
                    AND a.state IN ('OPEN', 'ACK', 'DISPATCHED'))
            FROM sensors s
            LEFT JOIN LATERAL (
                SELECT time FROM sensor_readings
                WHERE sensor_id = s.sensor_id ORDER BY time DESC LIMIT 1
            ) r ON TRUE
            WHERE s.active
            ORDER BY 1, 2
            """
        )

    def registry(self) -> list[Record]:
        """Every camera and sensor's place (for the live feed's filtering)."""
        return self._all(
            "SELECT 'camera' AS kind, camera_id AS id, name, desa, kecamatan, lat, lon, "
            "NULL::text AS type FROM cameras UNION ALL "
            "SELECT 'sensor', sensor_id, name, desa, kecamatan, lat, lon, type FROM sensors"
        )

    def readings(
        self, sensor_id: str, quantity: str, since: datetime, until: datetime
    ) -> list[Record]:
        return self._all(
            """
            SELECT time, value FROM sensor_readings
            WHERE sensor_id = %s AND quantity = %s AND time >= %s AND time < %s
            ORDER BY time LIMIT 5000
            """,
            [sensor_id, quantity, since, until],
        )

    def kecamatan_of(self, source_kind: str, source_id: str) -> Record | None:
        if source_kind == "sensor":
            return self._one(
                "SELECT kecamatan, desa, type AS sensor_type, name FROM sensors "
                "WHERE sensor_id = %s",
                [source_id],
            )
        return self._one(
            "SELECT kecamatan, desa, NULL::text AS sensor_type, name FROM cameras "
            "WHERE camera_id = %s",
            [source_id],
        )

    # ------------------------------------------------------------------ users

    def add_user(
        self,
        username: str,
        role: str,
        password_hash: str | None,
        *,
        display_name: str = "",
        kecamatan: Sequence[str] = (),
    ) -> None:
        try:
            with self._conn() as conn:
                conn.execute(
                    "INSERT INTO console_users (username, display_name, role, kecamatan, "
                    "password_hash) VALUES (%s, %s, %s, %s, %s)",
                    [username, display_name, role, list(kecamatan), password_hash],
                )
        except psycopg.errors.UniqueViolation as exc:
            raise UserExists(f"user {username!r} exists already") from exc

    def set_password(self, username: str, password_hash: str) -> None:
        with self._conn() as conn:
            done = conn.execute(
                "UPDATE console_users SET password_hash = %s, updated_at = now() "
                "WHERE username = %s",
                [password_hash, username],
            ).rowcount
        if not done:
            raise NoSuchUser(f"no user {username!r}")

    def disable_user(self, username: str) -> None:
        with self._conn() as conn, conn.transaction():
            done = conn.execute(
                "UPDATE console_users SET disabled = true, updated_at = now() WHERE username = %s",
                [username],
            ).rowcount
            if not done:
                raise NoSuchUser(f"no user {username!r}")
            # A disabled user is logged out everywhere and their tokens stop working.
            conn.execute("DELETE FROM console_sessions WHERE username = %s", [username])
            conn.execute("UPDATE console_tokens SET revoked = true WHERE username = %s", [username])

    def users(self) -> list[Record]:
        return self._all(
            "SELECT u.username, u.display_name, u.role, u.kecamatan, u.disabled, u.created_at, "
            "(SELECT count(*) FROM console_tokens t WHERE t.username = u.username "
            "AND NOT t.revoked) AS tokens FROM console_users u ORDER BY u.username"
        )

    def login_record(self, username: str) -> Record | None:
        return self._one(
            "SELECT username, display_name, role, kecamatan, password_hash, disabled "
            "FROM console_users WHERE username = %s",
            [username],
        )

    # ------------------------------------------------------------------ sessions and tokens

    def create_session(
        self,
        username: str,
        session_hash: str,
        csrf_token: str,
        lifetime: timedelta,
        address: str | None,
        user_agent: str | None,
    ) -> None:
        with self._conn() as conn:
            conn.execute(
                "INSERT INTO console_sessions (session_hash, username, csrf_token, expires_at, "
                "address, user_agent) VALUES (%s, %s, %s, %s, %s, %s)",
                [
                    session_hash,
                    username,
                    csrf_token,
                    utcnow() + lifetime,
                    address,
                    (user_agent or "")[:300],
                ],
            )

    def session(self, session_hash: str, lifetime: timedelta) -> tuple[User, str] | None:
        """The user and CSRF token of a live session; each use extends it (a login lasts
        `lifetime` without use). Expired sessions are removed when met."""
        now = utcnow()
        with self._conn() as conn:
            row = conn.execute(
                "SELECT s.csrf_token, s.expires_at, s.last_seen_at, u.username, u.display_name, "
                "u.role, u.kecamatan, u.disabled FROM console_sessions s "
                "JOIN console_users u USING (username) WHERE s.session_hash = %s",
                [session_hash],
            ).fetchone()
            if row is None:
                return None
            if row["expires_at"] <= now or row["disabled"]:
                conn.execute("DELETE FROM console_sessions WHERE session_hash = %s", [session_hash])
                return None
            # Extending at most once a minute keeps a busy page from writing on every request.
            if now - row["last_seen_at"] > timedelta(minutes=1):
                conn.execute(
                    "UPDATE console_sessions SET last_seen_at = %s, expires_at = %s "
                    "WHERE session_hash = %s",
                    [now, now + lifetime, session_hash],
                )
        return _user(row), row["csrf_token"]

    def end_session(self, session_hash: str) -> None:
        with self._conn() as conn:
            conn.execute("DELETE FROM console_sessions WHERE session_hash = %s", [session_hash])

    def add_token(self, username: str, token_id: str, token_hash: str, name: str) -> None:
        with self._conn() as conn:
            conn.execute(
                "INSERT INTO console_tokens (token_id, username, token_hash, name) "
                "VALUES (%s, %s, %s, %s)",
                [token_id, username, token_hash, name],
            )

    def token_user(self, token_id: str) -> tuple[User, str] | None:
        """The user behind a token id and the token's stored digest (to compare)."""
        with self._conn() as conn:
            row = conn.execute(
                "SELECT t.token_hash, u.username, u.display_name, u.role, u.kecamatan "
                "FROM console_tokens t JOIN console_users u USING (username) "
                "WHERE t.token_id = %s AND NOT t.revoked AND NOT u.disabled",
                [token_id],
            ).fetchone()
            if row is not None:
                conn.execute(
                    "UPDATE console_tokens SET last_used_at = now() WHERE token_id = %s "
                    "AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')",
                    [token_id],
                )
        return None if row is None else (_user(row), row["token_hash"])

    def link_code(self, username: str, ttl_s: float) -> str:
        """A one-time code that links `username`'s Telegram account (/start CODE)."""
        code = new_link_code()
        with self._conn() as conn:
            conn.execute(
                "INSERT INTO telegram_link_codes (code_hash, username, expires_at) "
                "VALUES (%s, %s, %s)",
                [link_code_digest(code), username, utcnow() + timedelta(seconds=ttl_s)],
            )
        return code

    # ------------------------------------------------------------------ audit

    def audit(
        self,
        username: str | None,
        event: str,
        target: str | None = None,
        address: str | None = None,
        **detail: Any,
    ) -> None:
        with self._conn() as conn:
            conn.execute(
                "INSERT INTO console_audit (username, event, target, address, detail) "
                "VALUES (%s, %s, %s, %s, %s)",
                [username, event, target, address, Jsonb(detail)],
            )

    def audit_log(self, limit: int = 100) -> list[Record]:
        return self._all(
            "SELECT time, username, event, target, address, detail FROM console_audit "
            "ORDER BY time DESC LIMIT %s",
            [limit],
        )


def _user(row: Record) -> User:
    return User(
        username=row["username"],
        role=row["role"],
        display_name=row["display_name"] or "",
        kecamatan=tuple(row["kecamatan"] or ()),
    )
