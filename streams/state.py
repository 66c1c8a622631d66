"""One source's state (a sensor or a camera), typed, and its form in the table's changelog.

The engine changes a `SourceState` in place for each input; the stream processor writes it
to a faust table, whose changelog topic keeps it as one compact JSON object. That JSON is
the first release's format, unchanged (`tests/unit/streams/data/states-v1.json` holds it):

    kind          "sensor" | "camera"
    source_id     the sensor's or camera's id
    offsets       {topic: last applied offset}   (inputs at or below are replays)
    last_ts       newest capture time seen (epoch seconds)
    windows       {window start: {quantity: [count, min, max, sum]}}
    closed        start of the newest window already emitted (absent until one is)
    hist          {quantity: [[t, value], ...]} for rate-of-change rules, sorted by t
    above         {rule id: bool}    edge detection: a crossing is a trigger, holding is not
    alarms        {alarm type: Alert as JSON}   the latest version of each alarm
    silent        {alarm type: bool}  re-opened within the cool-down without telling anyone
    online_ts     camera: last heartbeat that said online
    open_since    {alarm type: epoch}  when the alarm last became OPEN (escalation counts from it)
    action_ids    [action id, ...]     the newest actions decided, so a repeat changes nothing
    live          camera: {dumping event id: epoch last seen} events that have not ended
    alarm_events  camera: {alarm_id, events}: the dumping events the current alarm stands for
                  (absent until a dumping alarm opens)
    cleanup       camera: the resolved dumping alarm whose clean-up the camera has yet to
                  confirm: {alarm_id, resolved (epoch, None once re-opened), events, reopened}
    tamper        camera: the conditions ("covered", "blurred") the detector reported and has
                  not yet ended; the camera_tampered alarm clears once none is left
    nearby        sensor: {camera id: {ts, event_id, zone_id, alarm_id, evidence}} the latest
                  dumping each camera a place rule joins with this sensor saw (absent when none)
    since         sensor: {place rule id: epoch} when the sensor's side of a place rule began
                  (the rise, the container full); absent when none holds

Keys added after the first release are read with defaults, so a state an older worker left in
the changelog goes on where it was. A change of this format needs a version key and a
migration here, never a silent reinterpretation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from pantau.messages import Alert

SourceKind = Literal["sensor", "camera"]


@dataclass(slots=True)
class WindowAggregate:
    """One quantity's readings in one tumbling window so far."""

    count: int
    low: float
    high: float
    total: float

    def add(self, value: float) -> None:
        self.count += 1
        if value < self.low:
            self.low = value
        if value > self.high:
            self.high = value
        self.total += value


@dataclass(slots=True)
class AlarmEvents:
    """The dumping events the camera's current dumping alarm stands for."""

    alarm_id: str
    events: list[str]


@dataclass(slots=True)
class Cleanup:
    """A dumping alarm people resolved while the camera still followed its objects."""

    alarm_id: str
    resolved: float | None  # epoch of the resolve; None once the alarm was re-opened
    events: list[str]
    reopened: bool


@dataclass(slots=True)
class Nearby:
    """The latest dumping a camera near a sensor saw, as a place signal told the sensor."""

    ts: float  # when the object appeared (epoch)
    event_id: str
    zone_id: str | None
    alarm_id: str | None
    evidence: list[dict[str, str]]  # EvidenceRef as JSON

    def to_json(self) -> dict[str, Any]:
        return {
            "ts": self.ts,
            "event_id": self.event_id,
            "zone_id": self.zone_id,
            "alarm_id": self.alarm_id,
            "evidence": self.evidence,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Nearby:
        return cls(
            float(data["ts"]),
            str(data["event_id"]),
            data.get("zone_id"),
            data.get("alarm_id"),
            list(data.get("evidence") or []),
        )


@dataclass(slots=True)
class SourceState:
    kind: SourceKind
    source_id: str
    offsets: dict[str, int] = field(default_factory=dict)
    last_ts: float | None = None
    windows: dict[int, dict[str, WindowAggregate]] = field(default_factory=dict)
    closed: int | None = None
    hist: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    above: dict[str, bool] = field(default_factory=dict)
    alarms: dict[str, Alert] = field(default_factory=dict)
    silent: dict[str, bool] = field(default_factory=dict)
    online_ts: float | None = None
    open_since: dict[str, float] = field(default_factory=dict)
    action_ids: list[str] = field(default_factory=list)
    live: dict[str, float] = field(default_factory=dict)
    alarm_events: AlarmEvents | None = None
    cleanup: Cleanup | None = None
    tamper: list[str] = field(default_factory=list)
    nearby: dict[str, Nearby] = field(default_factory=dict)
    since: dict[str, float] = field(default_factory=dict)
    # Each alarm's JSON as last written, beside the Alert it was made from: an alarm that did
    # not change since is not serialised again.
    _wire: dict[str, tuple[Alert, dict[str, Any]]] = field(
        default_factory=dict, repr=False, compare=False
    )

    def to_json(self) -> dict[str, Any]:
        """The changelog's JSON object (see the module's docstring)."""
        # Written once per changed source and batch: kept to plain dict building.
        windows = self.windows
        alarms = self.alarms
        cleanup = self.cleanup
        data: dict[str, Any] = {
            "kind": self.kind,
            "source_id": self.source_id,
            "offsets": self.offsets,
            "last_ts": self.last_ts,
            "windows": {
                str(start): {q: [a.count, a.low, a.high, a.total] for q, a in window.items()}
                for start, window in windows.items()
            }
            if windows
            else {},
            "hist": self.hist,
            "above": self.above,
            "alarms": {t: self._alarm_json(t, a) for t, a in alarms.items()} if alarms else {},
            "silent": self.silent,
            "online_ts": self.online_ts,
            "open_since": self.open_since,
            "action_ids": self.action_ids,
            "live": self.live,
            "cleanup": None
            if cleanup is None
            else {
                "alarm_id": cleanup.alarm_id,
                "resolved": cleanup.resolved,
                "events": cleanup.events,
                "reopened": cleanup.reopened,
            },
            "tamper": self.tamper,
        }
        if self.closed is not None:
            data["closed"] = self.closed
        events = self.alarm_events
        if events is not None:
            data["alarm_events"] = {"alarm_id": events.alarm_id, "events": events.events}
        # Written only when held: most sources never join a place rule.
        if self.nearby:
            data["nearby"] = {camera: n.to_json() for camera, n in self.nearby.items()}
        if self.since:
            data["since"] = self.since
        return data

    def _alarm_json(self, alarm_type: str, alert: Alert) -> dict[str, Any]:
        cached = self._wire.get(alarm_type)
        if cached is not None and cached[0] is alert:
            return cached[1]
        as_json = alert.model_dump(mode="json")
        self._wire[alarm_type] = (alert, as_json)
        return as_json

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SourceState:
        """A state from its changelog JSON, of this release or an older one."""
        cleanup = data.get("cleanup")
        events = data.get("alarm_events")
        state = cls(
            kind=data["kind"],
            source_id=data["source_id"],
            offsets=data.get("offsets") or {},
            last_ts=data.get("last_ts"),
            windows={
                _window_start(start): {q: WindowAggregate(*agg) for q, agg in window.items()}
                for start, window in (data.get("windows") or {}).items()
            },
            closed=data.get("closed"),
            hist={
                q: [(t, v) for t, v in samples] for q, samples in (data.get("hist") or {}).items()
            },
            above=data.get("above") or {},
            silent=data.get("silent") or {},
            online_ts=data.get("online_ts"),
            open_since=data.get("open_since") or {},
            action_ids=data.get("action_ids") or [],
            live=data.get("live") or {},
            alarm_events=AlarmEvents(events["alarm_id"], list(events["events"]))
            if events
            else None,
            cleanup=Cleanup(
                cleanup["alarm_id"],
                cleanup["resolved"],
                list(cleanup["events"]),
                bool(cleanup["reopened"]),
            )
            if cleanup
            else None,
            tamper=data.get("tamper") or [],
            nearby={
                camera: Nearby.from_json(n) for camera, n in (data.get("nearby") or {}).items()
            },
            since=data.get("since") or {},
        )
        for alarm_type, as_json in (data.get("alarms") or {}).items():
            alert = Alert.model_validate(as_json)
            state.alarms[alarm_type] = alert
            state._wire[alarm_type] = (alert, as_json)
        return state


def _window_start(key: str) -> int:
    """A window's start from its changelog key: whole epoch seconds (window_s is whole)."""
    return int(float(key))


def new_state(kind: SourceKind, source_id: str) -> SourceState:
    return SourceState(kind=kind, source_id=source_id)


def dump_state(state: SourceState) -> bytes:
    """The bytes of a state in the table's changelog: one compact JSON object (UTF-8)."""
    # orjson: the state is written once per changed source and batch, and the standard
    # library's encoder was most of that cost.
    return orjson.dumps(state.to_json())


def load_state(data: bytes) -> SourceState:
    return SourceState.from_json(orjson.loads(data))
