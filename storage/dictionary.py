"""Reads the analysts' data dictionary (docs/data-dictionary.md) so that tests and benchmarks
can check it against the database: its tables, their columns and its example queries."""

from __future__ import annotations

import re
from pathlib import Path

_HEADING = re.compile(r"^### (?P<table>[a-z_0-9]+)\s*$")
_ROW = re.compile(r"^\|\s*(?P<names>[a-z_0-9, ]+?)\s*\|")
_QUERY = re.compile(r"<!-- query: (?P<name>[a-z_0-9]+) -->.*?```sql\n(?P<sql>.*?)```", re.S)


def documented_columns(path: Path) -> dict[str, set[str]]:
    """Table → the column names its section lists."""
    tables: dict[str, set[str]] = {}
    current: str | None = None
    for line in path.read_text(encoding="utf-8").splitlines():
        heading = _HEADING.match(line)
        if heading:
            current = heading["table"]
            tables[current] = set()
            continue
        if line.startswith("## "):
            current = None
        row = _ROW.match(line)
        if current is not None and row and row["names"].strip() != "column":
            tables[current].update(n.strip() for n in row["names"].split(","))
    return tables


def example_queries(path: Path) -> dict[str, str]:
    """Name → SQL of every example query."""
    return {m["name"]: m["sql"].strip() for m in _QUERY.finditer(path.read_text(encoding="utf-8"))}
