"""Property: a message that decodes becomes rows the database can hold, column by column.

The checks model what PostgreSQL (and psycopg's binary COPY) accept for each column type; the
integration tests run the same kinds of rows through the real database.
"""

from __future__ import annotations

import json
import math
from datetime import datetime
from typing import Any
from uuid import UUID

import pytest
from hypothesis import HealthCheck, given, settings

from pantau.codec import DecodeError, decode_as
from pantau.messages import Message
from storage.rows import Row, Table, rows_for
from tests.factories import SAMPLES
from tests.strategies import mutated_records

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
INT_RANGES = {"int2": 2**15, "int4": 2**31, "int8": 2**63}
FLOAT4_MAX = 3.4028234663852886e38


def text_problem(value: str) -> str | None:
    if "\x00" in value:
        return "NUL in text"
    try:
        value.encode()
    except UnicodeEncodeError:
        return "lone surrogate in text"
    return None


def json_problem(value: Any) -> str | None:
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN or Infinity in jsonb"
    if isinstance(value, str):
        return text_problem(value)
    if isinstance(value, dict):
        for key, item in value.items():
            problem = text_problem(key) or json_problem(item)
            if problem:
                return problem
    if isinstance(value, list | tuple):
        for item in value:
            problem = json_problem(item)
            if problem:
                return problem
    return None


def column_problem(kind: str, value: Any) -> str | None:
    if value is None:
        return None
    if kind in INT_RANGES:
        limit = INT_RANGES[kind]
        if not isinstance(value, int) or isinstance(value, bool):
            return f"{type(value).__name__} in {kind}"
        return None if -limit <= value < limit else f"{value} does not fit {kind}"
    if kind == "float4":
        if not isinstance(value, int | float):
            return f"{type(value).__name__} in float4"
        return None if not math.isfinite(value) or abs(value) <= FLOAT4_MAX else "float4 overflow"
    if kind == "float8":
        return None if isinstance(value, int | float) else f"{type(value).__name__} in float8"
    if kind == "text":
        return text_problem(value) if isinstance(value, str) else f"{type(value)} in text"
    if kind == "uuid":
        return None if isinstance(value, UUID) else f"{type(value)} in uuid"
    if kind == "timestamptz":
        if not isinstance(value, datetime) or value.tzinfo is None:
            return f"{value!r} is not an aware datetime"
        return None
    if kind == "jsonb":
        return json_problem(value)
    if kind == "bytea":
        return None if isinstance(value, bytes) else f"{type(value)} in bytea"
    return f"unknown column type {kind}"


def unstorable(table: Table, row: Row) -> str | None:
    assert len(row) == len(table.columns)
    for column, kind, value in zip(table.columns, table.types, row, strict=True):
        problem = column_problem(kind, value)
        if problem:
            return f"{table.name}.{column}: {problem}"
    return None


# Frames and place signals are never stored; actions have tests of their own.
@pytest.mark.parametrize(
    "kind", sorted(k for k in SAMPLES if k not in ("frame", "alarm_action", "place_signal"))
)
def test_whatever_decodes_is_storable(kind: str) -> None:
    sample = SAMPLES[kind]
    cls = type(sample)
    table, rows = rows_for(sample)
    assert all(unstorable(table, row) is None for row in rows)

    @FUZZ
    @given(mutated_records(sample))
    def check(record: tuple[dict[str, object], bytes]) -> None:
        changed, data = record
        try:
            message: Message = decode_as(data, cls)
        except DecodeError:
            return
        table, rows = rows_for(message)
        for row in rows:
            assert unstorable(table, row) is None, json.dumps(changed, default=str)[:500]

    check()
