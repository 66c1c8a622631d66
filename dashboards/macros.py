"""Grafana's PostgreSQL macros and template variables, expanded the way Grafana does it.

Grafana rewrites a panel's SQL before it reaches the database: template variables first
(`$desa`, `${desa:sqlstring}`; multi-value and "All" variables become a quoted,
comma-separated list), then the global `$__interval` / `$__interval_ms`, then the datasource's
macros (`$__timeFilter(col)`, `$__timeGroupAlias(col, 5m)`, ...). This module does the same
so that tests and benchmarks run exactly what Grafana would send. Anything it does not know
is an error: a misspelt macro or variable must fail a test, not reach the wall.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal


class MacroError(ValueError):
    """The SQL uses a macro or variable that Grafana would not expand."""


VariableValue = str | Sequence[str]


@dataclass(frozen=True)
class QueryContext:
    """What Grafana knows when it runs a panel: the range, the interval, the variables."""

    time_from: datetime
    time_to: datetime
    interval: timedelta
    variables: Mapping[str, VariableValue] = field(default_factory=dict)
    # Multi-value or include-All variables: Grafana quotes even a single value of these.
    quoted: frozenset[str] = frozenset()
    # The datasource's "TimescaleDB" switch: $__timeGroup becomes time_bucket().
    timescaledb: bool = False

    def __post_init__(self) -> None:
        for name, value in (("time_from", self.time_from), ("time_to", self.time_to)):
            if value.tzinfo is None:
                raise ValueError(f"{name} must be timezone-aware, got {value!r}")


# Grafana's table of "nice" intervals: (upper bound of the raw interval, interval), in ms.
_NICE_MS = (
    (15, 10),
    (35, 20),
    (75, 50),
    (150, 100),
    (350, 200),
    (750, 500),
    (1_500, 1_000),
    (3_500, 2_000),
    (7_500, 5_000),
    (12_500, 10_000),
    (17_500, 15_000),
    (25_000, 20_000),
    (45_000, 30_000),
    (90_000, 60_000),
    (210_000, 120_000),
    (450_000, 300_000),
    (780_000, 600_000),
    (1_350_000, 900_000),
    (2_700_000, 1_800_000),
    (5_400_000, 3_600_000),
    (9_000_000, 7_200_000),
    (16_200_000, 10_800_000),
    (32_400_000, 21_600_000),
    (86_400_000, 43_200_000),
    (604_800_000, 86_400_000),
    (1_814_400_000, 604_800_000),
    (3_628_800_000, 2_592_000_000),
)
_UNITS = (("y", 31_536_000), ("w", 604_800), ("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1))


def parse_interval(text: str) -> timedelta:
    """'30s', '5m', '1h', '1d', '1w' (optionally quoted) → timedelta."""
    match = re.fullmatch(r"\s*'?(\d+)(ms|s|m|h|d|w|y)'?\s*", text)
    if not match:
        raise MacroError(f"interval must look like 30s, 5m, 1h or 1d, got {text!r}")
    amount, unit = int(match.group(1)), match.group(2)
    if unit == "ms":
        return timedelta(milliseconds=amount)
    return timedelta(seconds=amount * dict(_UNITS)[unit])


def format_interval(interval: timedelta) -> str:
    """timedelta → Grafana's interval text ('1m', '12h', '1d', '500ms')."""
    ms = round(interval.total_seconds() * 1000)
    if ms % 1000:
        return f"{ms}ms"
    seconds = ms // 1000
    for unit, size in _UNITS:
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def panel_interval(
    time_from: datetime,
    time_to: datetime,
    *,
    max_data_points: int = 1000,
    min_interval: str | None = None,
) -> timedelta:
    """The `$__interval` Grafana computes for a panel: the range over the panel's data points,
    rounded to a nice value, and no shorter than the panel's minimum interval."""
    raw_ms = (time_to - time_from).total_seconds() * 1000 / max(max_data_points, 1)
    nice_ms = next((nice for bound, nice in _NICE_MS if raw_ms <= bound), 31_536_000_000)
    interval = timedelta(milliseconds=max(nice_ms, 1))
    if min_interval:
        interval = max(interval, parse_interval(min_interval))
    return interval


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _format_variable(name: str, value: VariableValue, fmt: str | None, quoted: bool) -> str:
    values = [value] if isinstance(value, str) else list(value)
    if fmt is None:
        if isinstance(value, str) and not quoted:
            # Grafana's SQL datasources double the quotes of a lone value, unquoted.
            return value.replace("'", "''")
        if not values:
            raise MacroError(f"variable ${name} has no value: Grafana would send IN ()")
        return ",".join(_quote(v) for v in values)
    if fmt == "sqlstring":
        return ",".join(_quote(v) for v in values)
    if fmt == "singlequote":
        return ",".join("'" + v.replace("'", "\\'") + "'" for v in values)
    if fmt == "doublequote":
        return ",".join('"' + v.replace('"', '\\"') + '"' for v in values)
    if fmt in ("csv", "raw"):
        return ",".join(values)
    raise MacroError(f"variable ${{{name}:{fmt}}}: unknown format {fmt!r}")


# As Grafana reads them: `$name`, `[[name]]` or `[[name:format]]`, `${name}` or
# `${name:format}`; a format is everything up to the closing bracket (`date:iso`).
_VARIABLE = re.compile(
    r"\$\{(?P<braced>\w+)(?::(?P<fmt>[^}]+))?\}"
    r"|\[\[(?P<bracket>\w+?)(?::(?P<bfmt>[^\]]+))?\]\]"
    r"|\$(?P<plain>\w+)"
)
_MACRO = re.compile(r"\$__(\w+)\(([^)]*)\)")


def _epoch_seconds(value: datetime) -> int:
    """Whole seconds since 1970, floored as Go's Time.Unix() does (also before 1970)."""
    return math.floor(value.timestamp())


def go_number(value: float) -> str:
    """A float as Go's `%v` writes it: the shortest digits that read back the same, in
    exponent form from 1e+06 up and below 1e-04 (300, 0.02, 1.5, 1e+06)."""
    if value == 0:
        return "0"
    text = repr(float(value))
    if text in ("inf", "-inf", "nan"):
        return {"inf": "+Inf", "-inf": "-Inf", "nan": "NaN"}[text]
    sign, digits, exponent = Decimal(text).normalize().as_tuple()
    assert isinstance(exponent, int)
    mantissa = "".join(str(d) for d in digits)
    power = len(mantissa) - 1 + exponent  # of the leading digit
    head = "-" if sign else ""
    if power < -4 or power >= 6:
        fraction = f".{mantissa[1:]}" if len(mantissa) > 1 else ""
        return f"{head}{mantissa[0]}{fraction}e{'-' if power < 0 else '+'}{abs(power):02d}"
    if exponent >= 0:
        return head + mantissa + "0" * exponent
    point = len(mantissa) + exponent
    if point > 0:
        return f"{head}{mantissa[:point]}.{mantissa[point:]}"
    return f"{head}0.{'0' * -point}{mantissa}"


def _date_variable(name: str, moment: datetime, fmt: str) -> str:
    """`${__from:date}` and its kin, for the formats this module knows."""
    if fmt in ("date", "date:iso"):
        utc = moment.astimezone(UTC)
        return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"
    if fmt == "date:seconds":
        return str(_epoch_seconds(moment))
    raise MacroError(f"variable ${{{name}:{fmt}}}: unknown format {fmt!r}")


def _grafana_time(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S") + (
        f".{value.astimezone(UTC).microsecond:06d}".rstrip("0").rstrip(".") + "Z"
    )


def expand(sql: str, ctx: QueryContext) -> str:
    """The SQL Grafana's PostgreSQL datasource would run for this panel query."""

    def variable(match: re.Match[str]) -> str:
        name = match.group("braced") or match.group("bracket") or match.group("plain")
        if name.startswith("__"):
            if name == "__interval":
                return format_interval(ctx.interval)
            if name == "__interval_ms":
                return str(round(ctx.interval.total_seconds() * 1000))
            fmt = match.group("fmt") or match.group("bfmt")
            if name in ("__from", "__to"):
                moment = ctx.time_from if name == "__from" else ctx.time_to
                if fmt is not None:
                    return _date_variable(name, moment, fmt)
                return str(math.floor(moment.timestamp() * 1000))
            return match.group(0)  # a datasource macro: expanded below
        if name not in ctx.variables:
            raise MacroError(f"unknown template variable ${name}")
        fmt = match.group("fmt") or match.group("bfmt")
        return _format_variable(name, ctx.variables[name], fmt, name in ctx.quoted)

    sql = _VARIABLE.sub(variable, sql)
    sql = _MACRO.sub(_macro_call(ctx), sql)
    leftover = re.search(r"\$__\w+", sql)
    if leftover:
        raise MacroError(f"unknown Grafana macro {leftover.group(0)}")
    return sql


def _macro_call(ctx: QueryContext) -> Callable[[re.Match[str]], str]:
    def call(match: re.Match[str]) -> str:
        name, after = match.group(1), match.string[match.end() : match.end() + 1]
        # Grafana keeps the pre-5.3 reading: $__timeGroup(...) right before a comma is a
        # select-list column, and gets the "time" alias.
        if name == "timeGroup" and after == ",":
            name = "timeGroupAlias"
        return _macro(name, _arguments(match.group(2)), ctx)

    return call


def _arguments(text: str) -> list[str]:
    return [part.strip() for part in text.split(",")] if text.strip() else []


def _macro(name: str, args: list[str], ctx: QueryContext) -> str:
    start, end = _grafana_time(ctx.time_from), _grafana_time(ctx.time_to)

    def need(count: int) -> None:
        if len(args) < count:
            raise MacroError(f"$__{name} needs {count} argument(s), got {args}")

    if name == "timeFilter":
        need(1)
        return f"{args[0]} BETWEEN '{start}' AND '{end}'"
    if name == "timeFrom":
        return f"'{start}'"
    if name == "timeTo":
        return f"'{end}'"
    if name in ("timeGroup", "timeGroupAlias"):
        need(2)
        if len(args) > 2:
            # Grafana fills the gaps of the result itself (NULL, previous, a value); the
            # queries here must not count on a fill this module would not reproduce.
            raise MacroError(f"$__{name}: a fill argument is not supported here, got {args[2:]}")
        seconds = parse_interval(args[1]).total_seconds()
        if ctx.timescaledb:
            group = f"time_bucket('{seconds:.3f}s',{args[0]})"
        else:
            step = go_number(seconds)
            group = f"floor(extract(epoch from {args[0]})/{step})*{step}"
        return group + (' AS "time"' if name == "timeGroupAlias" else "")
    if name == "time":
        need(1)
        return f'{args[0]} AS "time"'
    if name == "timeEpoch":
        need(1)
        return f'extract(epoch from {args[0]}) as "time"'
    if name == "unixEpochFilter":
        need(1)
        lo, hi = _epoch_seconds(ctx.time_from), _epoch_seconds(ctx.time_to)
        return f"{args[0]} >= {lo} AND {args[0]} <= {hi}"
    if name == "unixEpochFrom":
        return str(_epoch_seconds(ctx.time_from))
    if name == "unixEpochTo":
        return str(_epoch_seconds(ctx.time_to))
    raise MacroError(f"unknown Grafana macro $__{name}")
