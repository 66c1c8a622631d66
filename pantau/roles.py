"""Who may see and do what with alarms (in the console, on Telegram). Pure: no database, no
HTTP.

- operator: sees every alarm and acts on every alarm.
- dlh_field: DLH field staff; sees and acts on dumping alarms and waste-container (TPS)
  alarms in their own kecamatan, nothing else.
- viewer: the wall; sees every alarm, acts on none.
- admin: an operator who also manages users and tokens.

Unblurred originals are for operators and admins only: field staff and the wall see what
is shared (bystanders pixelated).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

Role = Literal["operator", "dlh_field", "viewer", "admin"]
ROLES: tuple[str, ...] = get_args(Role)
ActionName = Literal["ack", "dispatch", "resolve", "false_positive", "comment", "assign"]
ACTIONS: tuple[str, ...] = get_args(ActionName)
# In the URL an action is written with a dash.
ACTION_PATHS: dict[str, str] = {a.replace("_", "-"): a for a in ACTIONS}

# Sensor types whose alarms are DLH field work (a full or overflowing TPS container).
FIELD_SENSOR_TYPES = frozenset({"waste_container"})
FIELD_SOURCE_KINDS = frozenset({"dumping"})


@dataclass(frozen=True)
class User:
    username: str
    role: Role
    display_name: str = ""
    kecamatan: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return self.display_name or self.username


@dataclass(frozen=True)
class AlarmScope:
    """What decides who sees an alarm: its kind, its sensor's type and its kecamatan."""

    source_kind: str
    sensor_type: str | None
    kecamatan: str | None


def is_field_work(alarm: AlarmScope) -> bool:
    return alarm.source_kind in FIELD_SOURCE_KINDS or (
        alarm.source_kind == "sensor" and alarm.sensor_type in FIELD_SENSOR_TYPES
    )


def can_see(user: User, alarm: AlarmScope) -> bool:
    if user.role in ("operator", "admin", "viewer"):
        return True
    return (
        is_field_work(alarm)
        and alarm.kecamatan is not None
        and alarm.kecamatan.casefold() in {k.casefold() for k in user.kecamatan}
    )


def can_act(user: User, alarm: AlarmScope) -> bool:
    return user.role != "viewer" and can_see(user, alarm)


def can_see_originals(user: User) -> bool:
    return user.role in ("operator", "admin")


def can_manage_users(user: User) -> bool:
    return user.role == "admin"


def sees_everything(user: User) -> bool:
    return user.role in ("operator", "admin", "viewer")
