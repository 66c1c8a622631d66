"""Hypothesis strategies for hostile input: JSON of every shape, with the values that break
programs (huge integers, NaN, NUL, lone surrogates, years 1 and 9999, deep nesting)."""

from __future__ import annotations

import json
import struct
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import strategies as st

from pantau.codec import FORMAT, MAGIC
from pantau.messages import Message

NASTY_INTEGERS = [0, -1, 1, 2**15, 2**31, 2**31 - 1, 2**53 + 1, 2**63 - 1, 2**63, 2**64, 10**30]
NASTY_FLOATS = [float("nan"), float("inf"), float("-inf"), 1e39, -1e39, 3.5e38, 1e308, -0.0]
NASTY_TEXT = [
    "",
    "\x00",
    "a\x00b",
    "\ud800",
    "x\udfffy",
    "😀",
    "'; DROP TABLE alerts; --",
    "é" * 300,
]
NASTY_TIMES = [
    "0001-01-01T00:00:00+07:00",
    "0001-01-01T00:00:00Z",
    "9999-12-31T23:59:59-07:00",
    "1969-12-31T23:59:59Z",
    "2200-01-01T00:00:00Z",
    "2026-11-23T03:15:00",
    "not a time",
]

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.sampled_from(NASTY_INTEGERS)
    | st.floats()
    | st.sampled_from(NASTY_FLOATS)
    | st.text(max_size=20)
    | st.sampled_from(NASTY_TEXT)
    | st.sampled_from(NASTY_TIMES)
    | st.datetimes(
        min_value=datetime(1, 1, 2),
        max_value=datetime(9999, 12, 30),
        timezones=st.sampled_from(
            [UTC, timezone(timedelta(hours=7)), timezone(-timedelta(hours=7))]
        ),
    ).map(datetime.isoformat)
)

json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(max_size=8) | st.sampled_from(NASTY_TEXT), children, max_size=4)
    ),
    max_leaves=16,
)


def deeply_nested(levels: int) -> bytes:
    return b"[" * levels + b"]" * levels


def to_json(value: Any) -> bytes:
    """JSON text the way a careless producer writes it: NaN and Infinity allowed, lone
    surrogates escaped."""
    return json.dumps(value, allow_nan=True).encode()


def binary_layout(header: bytes, blob: bytes) -> bytes:
    return struct.pack(">4sBI", MAGIC, FORMAT, len(header)) + header + blob


@st.composite
def mutated(draw: st.DrawFn, sample: dict[str, Any]) -> dict[str, Any]:
    """`sample` (a message as JSON) with one field, top-level or nested, replaced by anything,
    or removed, or an unknown field added."""
    document: dict[str, Any] = json.loads(json.dumps(sample))
    paths: list[tuple[Any, Any]] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key in node:
                paths.append((node, key))
                walk(node[key])
        elif isinstance(node, list):
            for index in range(len(node)):
                paths.append((node, index))
                walk(node[index])

    walk(document)
    container, key = draw(st.sampled_from(paths))
    action = draw(st.sampled_from(["replace", "replace", "replace", "remove", "add"]))
    if action == "replace":
        container[key] = draw(json_values)
    elif action == "remove" and isinstance(container, dict):
        del container[key]
    elif isinstance(container, dict):
        container[draw(st.text(max_size=8))] = draw(json_values)
    return document


def as_document(sample: Message) -> dict[str, Any]:
    """A message as the JSON its record carries (its blob, if any, travels apart)."""
    blob_field = type(sample).BLOB_FIELD
    return sample.model_dump(mode="json", exclude={blob_field} if blob_field else None)


def mutated_records(sample: Message) -> st.SearchStrategy[tuple[dict[str, Any], bytes]]:
    """(the changed document, the record's bytes) for `sample` changed by `mutated`, in the
    layout its kind travels in."""
    blob_field = type(sample).BLOB_FIELD

    def record(changed: dict[str, Any]) -> tuple[dict[str, Any], bytes]:
        data = to_json(changed)
        if blob_field is not None:
            data = binary_layout(data, getattr(sample, blob_field))
        return changed, data

    return mutated(as_document(sample)).map(record)
