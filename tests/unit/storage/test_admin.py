"""Maintenance decisions without PostgreSQL: how long each class of data is kept, which
withheld column a setting opens to whom, and how DDL waits for a lock that an open
transaction holds (a few short tries, then left for the next run, saying who held it)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import psycopg.errors
import pytest

import storage.admin as admin
from pantau.settings import Settings, StorageSettings


class _Result:
    def __init__(self, rows: list[tuple[Any, ...]]) -> None:
        self._rows = rows

    def fetchall(self) -> list[tuple[Any, ...]]:
        return self._rows


class _Conn:
    """A connection on which the work's lock is refused `refusals` times."""

    def __init__(self, refusals: int) -> None:
        self.refusals = refusals
        self.lock_timeouts: list[str] = []
        self.transactions = 0

    @contextmanager
    def transaction(self) -> Iterator[None]:
        self.transactions += 1
        yield

    def execute(self, query: str, params: tuple[Any, ...] | None = None) -> _Result:
        if "set_config('lock_timeout'" in query:
            assert params is not None
            self.lock_timeouts.append(params[0])
            return _Result([])
        if "pg_locks" in query:
            return _Result([("pantau_analyst", 4242)])
        raise AssertionError(f"unexpected query {query!r}")

    def work(self) -> str:
        if self.refusals > 0:
            self.refusals -= 1
            raise psycopg.errors.LockNotAvailable("canceling statement due to lock timeout")
        return "dropped 3"


@pytest.fixture
def pauses(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    taken: list[float] = []
    monkeypatch.setattr(admin, "_pause", taken.append)
    monkeypatch.setattr(admin, "alive", lambda: None)
    return taken


PATIENCE = admin.LockPatience(lock_timeout_s=2.5, tries=3, pause_s=7.0)


def test_a_lock_that_comes_on_a_later_try_lets_the_work_run(pauses: list[float]) -> None:
    conn, report = _Conn(refusals=2), admin.MaintenanceReport()
    done = admin._patiently(conn, PATIENCE, report, "drop partitions", "t", conn.work)
    assert done == "dropped 3"
    assert conn.lock_timeouts == ["2500ms"] * 3
    assert pauses == [7.0, 7.0]
    assert report.notes == []


def test_a_lock_held_throughout_leaves_the_table_for_the_next_run(pauses: list[float]) -> None:
    conn, report = _Conn(refusals=10), admin.MaintenanceReport()
    done = admin._patiently(conn, PATIENCE, report, "drop partitions", "t", conn.work)
    assert done is None
    assert conn.transactions == 3 and pauses == [7.0, 7.0]
    (note,) = report.notes
    assert "could not drop partitions" in note
    assert "pantau_analyst (pid 4242)" in note and "3 tries of 2.5 s" in note


def test_each_class_of_data_is_kept_as_long_as_the_settings_say() -> None:
    storage = StorageSettings.model_validate(
        {"retention": {"raw_days": 30, "rollup_days": 400, "incident_days": 1825}}
    )
    assert admin.retention_by_class(storage) == {
        "raw": timedelta(days=30),
        "rollup": timedelta(days=400),
        "incident": timedelta(days=1825),
    }


@pytest.mark.parametrize(
    ("role", "table", "allowed", "opened"),
    [
        (admin.ANALYST_ROLE, "dumping_events", True, {admin.EVIDENCE_COLUMN}),
        (admin.ANALYST_ROLE, "dumping_events", False, set()),
        # The wall never reads evidence references, whatever the setting.
        (admin.GRAFANA_ROLE, "dumping_events", True, set()),
        (admin.ANALYST_ROLE, "alerts", True, set()),
    ],
)
def test_the_evidence_setting_opens_the_column_to_analysts_only(
    role: str, table: str, allowed: bool, opened: set[str]
) -> None:
    settings = Settings.model_validate({"storage": {"analyst_evidence_access": allowed}})
    assert admin._opened_by_setting(role, table, settings) == opened
