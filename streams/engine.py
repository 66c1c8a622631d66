"""Alarm rules, reading windows and the alarm life-cycle, as plain functions over one
source's state.

The stream processor keeps one state per source (a sensor or a camera) in a faust table and
hands it here together with each input: a reading, a heartbeat, the detector's word on a
camera's view, a dumping event or an alarm action. Everything here is deterministic in its
inputs — times come from the messages, never from the clock — so replaying the same inputs
after a crash yields the same alarms with the same ids and versions, and downstream
de-duplication by (alarm_id, version) makes the effects idempotent.

State is a `SourceState` (streams/state.py), which faust writes to the table's changelog as
JSON; its fields are listed there.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field
from datetime import UTC, datetime
from operator import itemgetter
from typing import Any
from uuid import UUID

from pantau.ids import stable_id
from pantau.messages import (
    ACTION_APPLIES_TO,
    ACTIVE_STATES,
    SEVERITY_RANK,
    AlarmAction,
    AlarmChange,
    AlarmState,
    Alert,
    CameraHeartbeat,
    CameraView,
    DumpingEvent,
    EvidenceRef,
    Place,
    PlaceSignal,
    SensorReading,
    SensorWindow,
    Severity,
)
from pantau.poison import BadInput
from pantau.settings import (
    CameraSettings,
    Location,
    OpenBurningRule,
    PlaceRule,
    RateOfChangeRule,
    RiverDumpingRule,
    SensorSettings,
    Settings,
    StaleRule,
    ThresholdRule,
    TpsOverflowRule,
)
from streams.places import PlaceLink, place_links
from streams.state import AlarmEvents, Cleanup, Nearby, SourceState, WindowAggregate

State = SourceState

ACTIVE: frozenset[str] = ACTIVE_STATES
CAMERA_OFFLINE = "camera-offline"
# The detector's word on a camera's picture (CameraView): turned onto another view, whose
# zones a person must check, or covered / blurred, which clears when the picture is back.
CAMERA_VIEW_CHANGED = "camera_view_changed"
CAMERA_TAMPERED = "camera_tampered"
# What each condition measured, kept as the alarm's quantity and last value.
VIEW_QUANTITIES: dict[str, str] = {
    "moved": "changed_frac",
    "covered": "brightness_spread",
    "blurred": "sharpness_ratio",
}
DUMPING = "dumping"
# Dumping events that end with the object gone.
GONE: frozenset[str] = frozenset({"cleaned", "picked_up", "removed"})
# A repeated action (a bot or a console retrying a press) follows its original within
# moments, and the list travels to the changelog with every change of the source's state.
ACTION_IDS_KEPT = 32
# Dumping events a camera follows at once; an event whose end never came (a detector that
# restarted) must not grow the state for ever.
LIVE_EVENTS_KEPT = 32


@dataclass(frozen=True)
class _Transition:
    """An operator action: the states it may leave, where it leads, which time it stamps,
    and whether people hear of it."""

    allowed: frozenset[str]
    state: AlarmState
    change: AlarmChange
    stamp: str
    notify: bool


_ACTIONS: dict[str, _Transition] = {
    "ack": _Transition(ACTION_APPLIES_TO["ack"], "ACK", "acknowledged", "acknowledged_at", False),
    "dispatch": _Transition(
        ACTION_APPLIES_TO["dispatch"], "DISPATCHED", "dispatched", "dispatched_at", True
    ),
    "resolve": _Transition(
        ACTION_APPLIES_TO["resolve"], "RESOLVED", "resolved", "resolved_at", True
    ),
    "false_positive": _Transition(
        ACTION_APPLIES_TO["false_positive"],
        "FALSE_POSITIVE",
        "false_positive",
        "resolved_at",
        False,
    ),
}
# Actions that leave the state as it is.
_NOTES: dict[str, AlarmChange] = {"comment": "commented", "assign": "assigned"}

UNITS = {
    "pm25": "µg/m³",
    "pm10": "µg/m³",
    "waterLevel": "m",
    "fillingLevel": "",
    "temperature": "°C",
    "relativeHumidity": "",
    "noiseLevel": "dB(A)",
}


class ActionRejected(BadInput):
    """An operator action that does not fit the alarm's state; the reason says why."""


@dataclass
class Output:
    alerts: list[Alert] = field(default_factory=list)
    windows: list[SensorWindow] = field(default_factory=list)
    # A camera's dumping, for the sensors near it (see on_signal).
    signals: list[PlaceSignal] = field(default_factory=list)
    late: int = 0


@dataclass(frozen=True)
class _Threshold:
    rule: ThresholdRule
    raise_above: float
    clear_below: float


def _active(state: State, alarm_type: str) -> bool:
    current = state.alarms.get(alarm_type)
    return current is not None and current.state in ACTIVE


def is_replay(state: State, topic: str, offset: int) -> bool:
    """True when this input was applied before (a redelivery after a crash)."""
    last = state.offsets.get(topic)
    return last is not None and offset <= last


def mark_applied(state: State, topic: str, offset: int) -> None:
    state.offsets[topic] = offset


def _epoch(ts: datetime) -> float:
    return ts.timestamp()


def _utc(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def _place(location: Location | None, name: str) -> Place:
    if location is None:
        return Place(name=name)
    return Place(
        name=name,
        desa=location.desa,
        kecamatan=location.kecamatan,
        lat=location.lat,
        lon=location.lon,
    )


class Engine:
    def __init__(self, settings: Settings) -> None:
        streams = settings.streams
        self.window_s = streams.window_s
        self.grace_s = streams.window_grace_s
        self.cooldown_s = streams.cooldown_s
        self.offline_after_s = streams.camera_offline_after_s
        self.camera_severity: Severity = streams.camera_severity
        self.view_severity: Severity = streams.camera_view_severity
        self.tamper_severity: Severity = streams.camera_tamper_severity
        self.dumping_severity: Severity = streams.dumping_severity
        self.escalate_after_s: dict[str, float] = {
            str(severity): s for severity, s in streams.escalate_after_s.items()
        }
        self.cleanup_confirm_s = streams.cleanup_confirm_s
        self.sensors: dict[str, SensorSettings] = settings.sensor_registry()
        self.cameras: dict[str, CameraSettings] = {c.id: c for c in settings.cameras}
        self._thresholds: dict[str, list[_Threshold]] = {}
        self._rates: dict[str, list[RateOfChangeRule]] = {}
        self._stale: dict[str, list[StaleRule]] = {}
        self._place: dict[str, list[PlaceRule]] = {}
        for sensor in settings.sensors:
            thresholds: list[_Threshold] = []
            for rule in streams.rules:
                if not rule.applies_to(sensor):
                    continue
                if isinstance(rule, ThresholdRule):
                    own = sensor.thresholds.get(rule.quantity)
                    levels = (
                        (own.raise_above, own.clear_below)
                        if own is not None
                        else (rule.raise_above, rule.clear_below)
                    )
                    thresholds.append(_Threshold(rule, *levels))
                elif isinstance(rule, RateOfChangeRule):
                    self._rates.setdefault(sensor.id, []).append(rule)
                elif isinstance(rule, StaleRule):
                    self._stale.setdefault(sensor.id, []).append(rule)
                else:
                    self._place.setdefault(sensor.id, []).append(rule)
            self._thresholds[sensor.id] = thresholds
        # Place rules: camera -> the sensors its dumping is told to; (rule, sensor, camera) ->
        # how they are joined.
        self.links = place_links(
            [r for r in streams.rules if isinstance(r, PlaceRule)],
            settings.sensors,
            settings.cameras,
        )
        self._signal_to: dict[str, list[str]] = {}
        self._link: dict[tuple[str, str, str], PlaceLink] = {}
        for link in self.links:
            sensors = self._signal_to.setdefault(link.camera_id, [])
            if link.sensor_id not in sensors:
                sensors.append(link.sensor_id)
            self._link.setdefault((link.rule.id, link.sensor_id, link.camera_id), link)
        # A place rule joins a sensor only with cameras near it: a sensor with none keeps no
        # history for it and never looks.
        joined = {(link.rule.id, link.sensor_id) for link in self.links}
        self._place = {
            sid: kept
            for sid, rules in self._place.items()
            if (kept := [r for r in rules if (r.id, sid) in joined])
        }
        # The readings each sensor keeps for its rate rules and its place rules that look for
        # a rise: how far back, and of which quantities.
        risers: dict[str, list[RateOfChangeRule | OpenBurningRule | RiverDumpingRule]] = {
            sid: list(rules) for sid, rules in self._rates.items()
        }
        for sid, place in self._place.items():
            risers.setdefault(sid, []).extend(
                r for r in place if isinstance(r, OpenBurningRule | RiverDumpingRule)
            )
        self._rate_horizon = {
            sid: max(r.period_s for r in rules) for sid, rules in risers.items() if rules
        }
        self._rate_quantities = {
            sid: tuple(dict.fromkeys(r.quantity for r in rules))
            for sid, rules in risers.items()
            if rules
        }
        # The longest a sensor must remember a camera's dumping for any of its rules.
        self._nearby_horizon = {
            sid: max(_remembered_s(r) for r in rules) for sid, rules in self._place.items()
        }
        # One Place per source, shared by its alarms (Place is frozen): built once, not per input.
        self._places = {s.id: _place(s.location, s.name or s.id) for s in self.sensors.values()}

    # ------------------------------------------------------------------ sensors

    def on_reading(self, state: State, reading: SensorReading, *, ts_rule: datetime) -> Output:
        out = Output()
        sensor = self.sensors.get(reading.sensor_id)
        t = _epoch(reading.ts_capture)
        last = state.last_ts
        newest = t if last is None else max(last, t)
        state.last_ts = newest
        self._add_to_window(state, reading, t, newest, out)
        if sensor is None:
            return out
        ctx = _Trigger(
            trigger_id=reading.id,
            ts_capture=reading.ts_capture,
            ts_ingest=reading.ts_ingest,
            ts_rule=ts_rule,
            place=self._places[sensor.id],
        )
        for stale in self._stale.get(sensor.id, ()):
            self._clear(state, "sensor", sensor.id, stale.id, ctx, out)
        for th in self._thresholds.get(sensor.id, ()):
            value = reading.values.get(th.rule.quantity)
            if value is None:
                continue
            self._threshold(state, sensor, th, value, ctx, out)
        if sensor.id in self._rate_horizon:
            self._keep_history(state, sensor, reading, t)
        rates = self._rates.get(sensor.id)
        if rates:
            self._rate_rules(state, sensor, rates, reading, t, ctx, out)
        place = self._place.get(sensor.id)
        if place:
            for rule in place:
                self._place_reading(state, sensor, rule, reading, t, ctx, out)
        return out

    def _add_to_window(
        self, state: State, reading: SensorReading, t: float, newest: float, out: Output
    ) -> None:
        start = math.floor(t / self.window_s) * self.window_s
        closed = state.closed
        if start + self.window_s + self.grace_s <= newest or (
            closed is not None and start <= closed
        ):
            # Its window is closed and stored already; the raw reading is still stored.
            out.late += 1
        else:
            window = state.windows.get(start)
            if window is None:
                window = state.windows[start] = {}
            for quantity, value in reading.values.items():
                agg = window.get(quantity)
                if agg is None:
                    window[quantity] = WindowAggregate(1, value, value, value)
                else:
                    agg.add(value)
        self._close_windows(state, reading.sensor_id, newest, out)

    def _close_windows(self, state: State, sensor_id: str, watermark: float, out: Output) -> None:
        windows = state.windows
        # Windows that started at or before this have ended, grace included.
        last_start = watermark - self.window_s - self.grace_s
        # Most readings close nothing: one look at the oldest window says so.
        if not windows or min(windows) > last_start:
            return
        for start in sorted(windows):
            if start > last_start:
                break
            # Whatever arrives for this window or an earlier one from now on is late.
            state.closed = start if state.closed is None else max(start, state.closed)
            for quantity, agg in sorted(windows.pop(start).items()):
                count = agg.count
                out.windows.append(
                    SensorWindow(
                        id=stable_id("sensor_window", sensor_id, quantity, int(start)),
                        ts_capture=_utc(start),
                        seq=int(start),
                        sensor_id=sensor_id,
                        quantity=quantity,
                        window_s=self.window_s,
                        count=count,
                        min=agg.low,
                        max=agg.high,
                        mean=agg.total / count,
                    )
                )

    def _threshold(
        self,
        state: State,
        sensor: SensorSettings,
        th: _Threshold,
        value: float,
        ctx: _Trigger,
        out: Output,
    ) -> None:
        rule = th.rule
        above = state.above
        was_above = above.get(rule.id, False)
        if value >= th.raise_above:
            above[rule.id] = True
            severity: Severity = rule.severity
            if rule.critical_above is not None and value >= rule.critical_above:
                severity = "critical"
            escalates = _active(state, rule.id) and (
                SEVERITY_RANK[severity] > SEVERITY_RANK[state.alarms[rule.id].severity]
            )
            if not was_above or escalates:
                self._raise(
                    state, "sensor", sensor.id, rule.id, severity, ctx, out,
                    value=value, quantity=rule.quantity, threshold=th.raise_above,
                )  # fmt: skip
        elif value < th.clear_below:
            above[rule.id] = False
            self._clear(state, "sensor", sensor.id, rule.id, ctx, out, value=value)
        elif was_above and value < th.raise_above:
            # Between the levels: not a trigger any more, not yet clear (hysteresis).
            above[rule.id] = False

    def _keep_history(
        self, state: State, sensor: SensorSettings, reading: SensorReading, t: float
    ) -> None:
        horizon = self._rate_horizon[sensor.id]
        values = reading.values
        hists = state.hist
        # Each history stays sorted by time (a late reading is inserted after its equals), so
        # trimming and the look-back window are bisections instead of sorts and scans.
        for quantity in self._rate_quantities[sensor.id]:
            value = values.get(quantity)
            if value is None:
                continue
            hist = hists.setdefault(quantity, [])
            if not hist or hist[-1][0] <= t:
                hist.append((t, value))
            else:
                hist.insert(bisect_right(hist, t, key=_at), (t, value))
            old = bisect_left(hist, t - horizon, key=_at)
            if old:
                del hist[:old]

    def _rate_rules(
        self,
        state: State,
        sensor: SensorSettings,
        rules: list[RateOfChangeRule],
        reading: SensorReading,
        t: float,
        ctx: _Trigger,
        out: Output,
    ) -> None:
        values = reading.values
        for rule in rules:
            value = values.get(rule.quantity)
            if value is None:
                continue
            rise = _rise(state.hist[rule.quantity], value, t, rule.period_s)
            above = state.above.get(rule.id, False)
            if rise >= rule.rise:
                state.above[rule.id] = True
                if not above:
                    self._raise(
                        state, "sensor", sensor.id, rule.id, rule.severity, ctx, out,
                        value=rise, quantity=rule.quantity, threshold=rule.rise,
                    )  # fmt: skip
            elif rise < rule.rise / 2:
                state.above[rule.id] = False
                self._clear(state, "sensor", sensor.id, rule.id, ctx, out, value=rise)
            else:
                state.above[rule.id] = False

    # ------------------------------------------------------------------ places

    def _place_reading(
        self,
        state: State,
        sensor: SensorSettings,
        rule: PlaceRule,
        reading: SensorReading,
        t: float,
        ctx: _Trigger,
        out: Output,
    ) -> None:
        """The sensor's side of a place rule, on each of its readings: does its condition
        begin (then look for a camera's dumping that joins it), hold, or end (then clear)?"""
        value = reading.values.get(rule.quantity)
        if value is None:
            return
        since = state.since
        if isinstance(rule, TpsOverflowRule):
            holds, ends = value >= rule.raise_above, value < rule.clear_below
            measured = value
        else:
            measured = _rise(state.hist[rule.quantity], value, t, rule.period_s)
            holds, ends = measured >= rule.rise, measured < rule.rise / 2
        if holds:
            if rule.id not in since:
                since[rule.id] = t
            if not _active(state, rule.id):
                self._join(state, sensor, rule, ctx, out, measured=measured, at=t)
        elif ends and rule.id in since:
            del since[rule.id]
            self._clear(state, "sensor", sensor.id, rule.id, ctx, out, value=measured)

    def on_signal(self, state: State, signal: PlaceSignal, *, ts_rule: datetime) -> Output:
        """A camera near this sensor saw dumping: remember it (the sensor's place rules look
        back on it), and join it now with a condition of the sensor that already holds."""
        out = Output()
        sensor = self.sensors.get(signal.sensor_id)
        if sensor is None:
            raise BadInput(f"place signal for {signal.sensor_id!r}, which is no known sensor")
        appeared = _epoch(signal.appeared_at)
        nearby = state.nearby
        known = nearby.get(signal.camera_id)
        if known is None or known.ts <= appeared:
            nearby[signal.camera_id] = Nearby(
                appeared,
                str(signal.event_id),
                signal.zone_id,
                None if signal.alarm_id is None else str(signal.alarm_id),
                [ref.model_dump(mode="json") for ref in signal.evidence],
            )
        # Forget what no rule looks back on any more.
        newest = max(appeared, state.last_ts or appeared)
        horizon = self._nearby_horizon.get(sensor.id, 0.0)
        for camera in [c for c, n in nearby.items() if n.ts < newest - horizon]:
            del nearby[camera]
        for rule in self._place.get(sensor.id, ()):
            if (
                rule.id not in state.since
                or (rule.id, sensor.id, signal.camera_id) not in self._link
            ):
                continue
            ctx = _Trigger(
                trigger_id=signal.id,
                ts_capture=signal.ts_capture,
                ts_ingest=None,
                ts_rule=ts_rule,
                place=self._places[sensor.id],
            )
            alarm = state.alarms.get(rule.id)
            # The TPS alarm counts each new dumping beside the full container; the others
            # were raised once for the condition.
            counts = isinstance(rule, TpsOverflowRule) and (
                alarm is None or alarm.event_id != signal.event_id
            )
            if not _active(state, rule.id) or counts:
                latest = state.last_ts if state.last_ts is not None else appeared
                self._join(
                    state, sensor, rule, ctx, out,
                    measured=alarm.last_value if alarm and alarm.last_value is not None else None,
                    at=latest, only=signal.camera_id,
                )  # fmt: skip
        return out

    def _join(
        self,
        state: State,
        sensor: SensorSettings,
        rule: PlaceRule,
        ctx: _Trigger,
        out: Output,
        *,
        measured: float | None,
        at: float,
        only: str | None = None,
    ) -> None:
        """Raise the rule's alarm on the sensor if a camera it joins saw dumping in the rule's
        time window: the most recent such dumping, with its camera's evidence."""
        began = state.since[rule.id]
        best: tuple[str, Nearby] | None = None
        for camera, seen in state.nearby.items():
            if only is not None and camera != only:
                continue
            if (rule.id, sensor.id, camera) not in self._link:
                continue
            if not _in_window(rule, seen.ts, began, at):
                continue
            if best is None or seen.ts > best[1].ts:
                best = (camera, seen)
        if best is None:
            return
        camera_id, seen = best
        link = self._link[(rule.id, sensor.id, camera_id)]
        registered = self.cameras.get(camera_id)
        name = (registered.name or registered.id) if registered is not None else camera_id
        ago = _ago(max(0.0, at - seen.ts))
        unit = UNITS.get(rule.quantity, "")
        value = "" if measured is None else f"{measured:g}{' ' + unit if unit else ''}"
        if isinstance(rule, OpenBurningRule):
            message = (
                f"suspected open burning: {rule.quantity} rose {value} within "
                f"{_duration(rule.period_s)}, {link.how} from a dumping hotspot, camera "
                f"{name} (dumping seen {ago} before)"
            )
        elif isinstance(rule, TpsOverflowRule):
            message = (
                f"TPS container full ({rule.quantity} {value}) and dumping beside it, camera "
                f"{name} ({link.how}, {ago} before): one trip for the truck"
            )
        else:
            message = (
                f"dumping on the river bank, camera {name} ({link.how}), and the gauge "
                f"rose {value} within {_duration(rule.period_s)}: risk of a blocked drain"
            )
        ctx.evidence = tuple(EvidenceRef.model_validate(e) for e in seen.evidence)
        ctx.event_id = UUID(seen.event_id)
        self._raise(
            state, "sensor", sensor.id, rule.id, rule.severity, ctx, out,
            value=measured, quantity=rule.quantity,
            threshold=rule.raise_above if isinstance(rule, TpsOverflowRule) else rule.rise,
            message=message,
        )  # fmt: skip

    def _signals(self, event: DumpingEvent, alarm_id: UUID | None) -> list[PlaceSignal]:
        """A new dumping, for each sensor a place rule joins with its camera."""
        return [
            PlaceSignal(
                id=stable_id("place_signal", event.event_id, sensor_id),
                ts_capture=event.ts_capture,
                seq=event.version,
                sensor_id=sensor_id,
                camera_id=event.camera_id,
                event_id=event.event_id,
                appeared_at=event.appeared_at,
                zone_id=event.zone_id,
                alarm_id=alarm_id,
                evidence=event.evidence,
            )
            for sensor_id in self._signal_to.get(event.camera_id, ())
        ]

    # ------------------------------------------------------------------ cameras

    def on_heartbeat(self, state: State, beat: CameraHeartbeat, *, ts_rule: datetime) -> Output:
        out = Output()
        t = _epoch(beat.ts_capture)
        state.last_ts = t if state.last_ts is None else max(state.last_ts, t)
        if beat.status == "online":
            state.online_ts = t if state.online_ts is None else max(state.online_ts, t)
            ctx = self._camera_ctx(beat.camera_id, str(beat.id), beat.ts_capture, ts_rule)
            self._clear(state, "camera", beat.camera_id, CAMERA_OFFLINE, ctx, out)
        elif state.online_ts is None:
            # Never seen online: count from its first sign of life.
            state.online_ts = t
        return out

    def on_view(self, state: State, view: CameraView, *, ts_rule: datetime) -> Output:
        """The detector's word on the camera's picture.

        `moved` opens camera_view_changed and its end only notes, quietly, that detection
        resumed: the camera now watches another view, and a person must check its zones and
        resolve the alarm. `covered` and `blurred` open camera_tampered, which clears once
        every condition that opened it has ended.
        """
        out = Output()
        ctx = self._camera_ctx(view.camera_id, str(view.id), view.ts_capture, ts_rule)
        quantity = VIEW_QUANTITIES[view.condition]
        value = float(getattr(view, quantity))
        if view.condition == "moved":
            if view.phase == "start":
                relearn = f"; detection pauses {_duration(view.relearn_s)} to learn the new view"
                self._raise(
                    state, "camera", view.camera_id, CAMERA_VIEW_CHANGED, self.view_severity,
                    ctx, out, value=value, quantity=quantity,
                    message=f"view of {ctx.place.name} changed ({value:.0%} of the scene moved)"
                    f"{relearn if view.relearn_s else ''}: check that its zones still fit",
                )  # fmt: skip
            elif _active(state, CAMERA_VIEW_CHANGED):
                self._pipeline_version(
                    state, CAMERA_VIEW_CHANGED, view.ts_capture, ts_rule, out,
                    change="updated", notify=False,
                    message="detection resumed after learning the new view; "
                    "its zones still need checking",
                )  # fmt: skip
            return out
        tamper = state.tamper
        if view.phase == "start":
            if not _active(state, CAMERA_TAMPERED):
                # A new episode: a condition whose end never came (a person settled the alarm
                # meanwhile) must not keep this one open.
                tamper.clear()
            if view.condition not in tamper:
                tamper.append(view.condition)
            what = (
                "covered: the picture is near-uniform"
                if view.condition == "covered"
                else "blurred: the picture lost its detail"
            )
            self._raise(
                state, "camera", view.camera_id, CAMERA_TAMPERED, self.tamper_severity, ctx, out,
                value=value, quantity=quantity,
                message=f"view of {ctx.place.name} {what}; no dumping is seen meanwhile",
            )  # fmt: skip
            return out
        if view.condition in tamper:
            tamper.remove(view.condition)
        if not tamper:
            # The value measured its own condition: the alarm's last value only if it is that.
            current = state.alarms.get(CAMERA_TAMPERED)
            same = current is not None and current.quantity == quantity
            self._clear(
                state, "camera", view.camera_id, CAMERA_TAMPERED, ctx, out,
                value=value if same else None,
            )  # fmt: skip
        return out

    def _camera_ctx(
        self, camera_id: str, trigger_id: str, ts: datetime, ts_rule: datetime
    ) -> _Trigger:
        camera = self.cameras.get(camera_id)
        place = (
            _place(camera.location, camera.name or camera.id)
            if camera is not None
            else Place(name=camera_id)
        )
        return _Trigger(trigger_id, ts, None, ts_rule, place)

    def on_dumping(self, state: State, event: DumpingEvent, *, ts_rule: datetime) -> Output:
        out = Output()
        ctx = self._camera_ctx(event.camera_id, str(event.event_id), event.ts_capture, ts_rule)
        ctx.evidence = event.evidence
        ctx.event_id = event.event_id
        t = _epoch(event.ts_capture)
        key = str(event.event_id)
        live = state.live
        if event.phase == "end":
            live.pop(key, None)
        else:
            live[key] = max(t, live.get(key, t))
            if len(live) > LIVE_EVENTS_KEPT:
                del live[min(live, key=live.__getitem__)]
        if event.phase == "new":
            self._raise(
                state, "dumping", event.camera_id, DUMPING, self.dumping_severity, ctx, out,
                value=event.confidence, zone=event.zone_id,
            )  # fmt: skip
            # Which objects this alarm stands for: a clean-up is the camera's to confirm for
            # them, not for an older object of another (settled) alarm still in view.
            alarm_id = str(state.alarms[DUMPING].alarm_id)
            mine = state.alarm_events
            if mine is None or mine.alarm_id != alarm_id:
                mine = state.alarm_events = AlarmEvents(alarm_id, [])
            if key not in mine.events:
                mine.events = [*mine.events, key][-LIVE_EVENTS_KEPT:]
            out.signals.extend(self._signals(event, state.alarms[DUMPING].alarm_id))
        elif event.phase == "end" and event.state in GONE:
            self._clear(state, "dumping", event.camera_id, DUMPING, ctx, out)
        self._follow_cleanup(state, event, t, ts_rule, out)
        return out

    def _cleanup_alarm(self, state: State) -> Cleanup | None:
        """The resolved dumping alarm waiting for the camera's word, if there still is one
        (a newer alarm, or a re-open by hand, ends the wait)."""
        cleanup = state.cleanup
        if cleanup is None or cleanup.resolved is None:
            return None
        current = state.alarms.get(DUMPING)
        if (
            current is None
            or str(current.alarm_id) != cleanup.alarm_id
            or current.state != "RESOLVED"
        ):
            return None
        return cleanup

    def _follow_cleanup(
        self, state: State, event: DumpingEvent, t: float, ts_rule: datetime, out: Output
    ) -> None:
        """What a dumping event says about a clean-up people declared: gone confirms it; still
        there `cleanup_confirm_s` after the resolve re-opens the alarm."""
        cleanup = self._cleanup_alarm(state)
        key = str(event.event_id)
        if cleanup is None or cleanup.resolved is None or key not in cleanup.events:
            return
        if event.phase == "end" and event.state in GONE:
            cleanup.events.remove(key)
            if not cleanup.events:
                state.cleanup = None
                self._pipeline_version(
                    state, DUMPING, event.ts_capture, ts_rule, out,
                    change="confirmed", notify=False,
                    message=f"camera confirmed the clean-up: the object is gone ({event.state})",
                )  # fmt: skip
        elif t >= cleanup.resolved + self.cleanup_confirm_s:
            self._reopen_uncleaned(state, cleanup, event.ts_capture, ts_rule, out)
        elif event.phase == "end":
            # No longer followed (expired): the camera will say nothing more about it.
            cleanup.events.remove(key)
            if not cleanup.events:
                state.cleanup = None

    def _uncleaned_due(self, state: State, now: float) -> Cleanup | None:
        """The clean-up to take back at `now`: past its deadline, an object of it not reported
        gone, and the camera online since the deadline (it was watching)."""
        cleanup = self._cleanup_alarm(state)
        if cleanup is None or cleanup.reopened or cleanup.resolved is None:
            return None
        deadline = cleanup.resolved + self.cleanup_confirm_s
        online = state.online_ts
        if now < deadline or online is None or online < deadline:
            return None
        live = state.live
        if not any(key in live for key in cleanup.events):
            return None
        return cleanup

    def _reopen_uncleaned(
        self,
        state: State,
        cleanup: Cleanup,
        ts: datetime,
        ts_rule: datetime,
        out: Output,
    ) -> None:
        if cleanup.reopened or cleanup.resolved is None:
            return
        minutes = int((_epoch(ts) - cleanup.resolved) // 60)
        # Once per alarm: an object the detector lost track of must not re-open it after
        # every resolve.
        cleanup.reopened = True
        cleanup.resolved = None
        state.silent[DUMPING] = False
        state.open_since[DUMPING] = _epoch(ts)
        self._pipeline_version(
            state, DUMPING, ts, ts_rule, out,
            change="reopened", notify=True, alarm_state="OPEN", escalation=0,
            message=f"object still seen {minutes} min after it was marked resolved",
        )  # fmt: skip

    def _watch_cleanup(self, state: State, alert: Alert, now: float) -> None:
        """A dumping alarm resolved while the camera still follows its object: wait for the
        camera's word."""
        alarm_id = str(alert.alarm_id)
        mine = state.alarm_events
        events = set(mine.events) if mine is not None and mine.alarm_id == alarm_id else set()
        live = sorted(k for k in state.live if k in events)
        prior = state.cleanup
        reopened = prior is not None and prior.alarm_id == alarm_id and prior.reopened
        state.cleanup = Cleanup(alarm_id, now, live, reopened) if live else None

    # ------------------------------------------------------------------ silence and actions

    def due(self, state: State, now: float) -> bool:
        """Whether a silence check would change anything now (the timer asks, cheaply)."""
        windows = state.windows
        if windows and min(windows) + self.window_s + self.grace_s <= now:
            return True
        if self.escalate_after_s and self._unacknowledged(state, now):
            return True
        if state.kind == "camera":
            if self._uncleaned_due(state, now) is not None:
                return True
            return self._offline_for(state, now) is not None and not _active(state, CAMERA_OFFLINE)
        return self._stale_due(state, now) is not None

    def _unacknowledged(self, state: State, now: float) -> list[str]:
        """The alarms still OPEN past their severity's escalation delay, not yet passed on."""
        due: list[str] = []
        since_by_type = state.open_since
        for alarm_type, alarm in state.alarms.items():
            if alarm.state != "OPEN" or alarm.escalation >= 1:
                continue
            after = self.escalate_after_s.get(alarm.severity)
            if after is None:
                continue
            since = since_by_type.get(alarm_type)
            if since is None:
                since = _epoch(alarm.opened_at)
            if now - since >= after:
                due.append(alarm_type)
        return due

    def _offline_for(self, state: State, now: float) -> float | None:
        """How long a camera has not been online, once that is long enough for an alarm."""
        online = state.online_ts
        if online is None or now - online < self.offline_after_s:
            return None
        return float(now - online)

    def _stale_due(self, state: State, now: float) -> tuple[StaleRule, float] | None:
        """The stale rule a sensor now breaks, and for how long it has been silent."""
        last = state.last_ts
        if last is None:
            return None
        for rule in self._stale.get(state.source_id, ()):
            if not _active(state, rule.id) and now - last >= rule.after_s:
                return rule, now - last
        return None

    def on_action(self, state: State, action: AlarmAction, *, ts_rule: datetime) -> Output:
        out = Output()
        now = _epoch(action.ts_capture)
        if action.action == "check":
            self._close_windows(state, action.source_id, now, out)
            self._checked(state, action, now, ts_rule, out)
            if state.kind == "camera":
                offline_s = self._offline_for(state, now)
                if offline_s is not None:
                    ctx = self._camera_ctx(
                        action.source_id, str(action.id), action.ts_capture, ts_rule
                    )
                    self._raise(
                        state, "camera", action.source_id, CAMERA_OFFLINE,
                        self.camera_severity, ctx, out,
                        value=offline_s,
                    )  # fmt: skip
            else:
                sensor = self.sensors.get(action.source_id)
                if sensor is not None:
                    stale = self._stale_due(state, now)
                    if stale is not None:
                        rule, silent_s = stale
                        ctx = _Trigger(
                            str(action.id), action.ts_capture, None, ts_rule,
                            _place(sensor.location, sensor.name or sensor.id),
                        )  # fmt: skip
                        self._raise(
                            state, "sensor", sensor.id, rule.id, rule.severity, ctx, out,
                            value=silent_s,
                        )  # fmt: skip
            return out
        # The same action again (its id): a bot or a console that retried a press. Decided
        # once, refused or applied, and then never again.
        decided = state.action_ids
        action_id = str(action.id)
        if action_id in decided:
            return out
        decided.append(action_id)
        if len(decided) > ACTION_IDS_KEPT:
            del decided[:-ACTION_IDS_KEPT]
        self._operator(state, action, ts_rule, out)
        return out

    def _checked(
        self, state: State, action: AlarmAction, now: float, ts_rule: datetime, out: Output
    ) -> None:
        """What time alone changes on a check: alarms nobody acknowledged in time are passed
        on, and a clean-up the camera never saw is taken back."""
        if self.escalate_after_s:
            for alarm_type in self._unacknowledged(state, now):
                after = self.escalate_after_s[state.alarms[alarm_type].severity]
                self._pipeline_version(
                    state, alarm_type, action.ts_capture, ts_rule, out,
                    change="unacknowledged", notify=True, escalation=1,
                    message=f"not acknowledged within {_duration(after)}; "
                    "passed on to the next level",
                )  # fmt: skip
        if state.kind == "camera":
            cleanup = self._uncleaned_due(state, now)
            if cleanup is not None:
                self._reopen_uncleaned(state, cleanup, action.ts_capture, ts_rule, out)

    def _operator(self, state: State, action: AlarmAction, ts_rule: datetime, out: Output) -> None:
        alarm_type, alert = next(
            (
                (t, a)
                for t, a in state.alarms.items()
                if action.alarm_id is not None and a.alarm_id == action.alarm_id
            ),
            (None, None),
        )
        if alert is None or alarm_type is None:
            raise ActionRejected(
                f"{action.action}: no alarm {action.alarm_id} on {action.source_id} "
                "(unknown id, or a newer alarm replaced it)"
            )
        by = action.by or "operator"
        note = f" — {action.note}" if action.note else ""
        update: dict[str, Any]
        if action.action in _NOTES:
            change = _NOTES[action.action]
            self._refuse_unless(action, alert.state, ACTION_APPLIES_TO[action.action])
            update = {"change": change, "notify": False}
            if action.action == "assign":
                update["assignee"] = action.to
                update["message"] = f"assigned to {action.to} by {by}{note}"
            else:
                update["message"] = f"comment by {by}{note}"
        else:
            move = _ACTIONS[action.action]
            self._refuse_unless(action, alert.state, move.allowed)
            update = {
                "state": move.state,
                "change": move.change,
                "notify": move.notify,
                move.stamp: action.ts_capture,
                "message": f"{move.change} by {by}{note}",
            }
            if action.action == "dispatch":
                update["dispatched_to"] = action.to
            if action.action == "resolve" and alarm_type == DUMPING:
                self._watch_cleanup(state, alert, _epoch(action.ts_capture))
        update.update(
            {
                "version": alert.version + 1,
                "updated_at": action.ts_capture,
                "ts_rule": ts_rule,
                "ts_ingest": None,
                "ts_capture": action.ts_capture,
            }
        )
        self._emit(state, alarm_type, alert.model_copy(update=update), out, actor=action)

    @staticmethod
    def _refuse_unless(action: AlarmAction, current: str, allowed: frozenset[str]) -> None:
        if current not in allowed:
            raise ActionRejected(
                f"{action.action}: alarm {action.alarm_id} is {current}; "
                f"{action.action} applies to {', '.join(sorted(allowed))}"
            )

    # ------------------------------------------------------------------ life-cycle

    def _raise(
        self,
        state: State,
        source_kind: str,
        source_id: str,
        alarm_type: str,
        severity: Severity,
        ctx: _Trigger,
        out: Output,
        *,
        value: float | None = None,
        quantity: str | None = None,
        threshold: float | None = None,
        zone: str | None = None,
        message: str | None = None,
    ) -> None:
        """Open the alarm, or update (re-open) it; a `message` describes what triggered it,
        and a later trigger's message and quantity replace the earlier ones."""
        current = state.alarms.get(alarm_type)
        t = _epoch(ctx.ts_capture)
        common: dict[str, Any] = {
            "last_value": value,
            "updated_at": ctx.ts_capture,
            "ts_capture": ctx.ts_capture,
            "ts_ingest": ctx.ts_ingest,
            "ts_rule": ctx.ts_rule,
        }
        if message is not None:
            common["message"] = message
            common["quantity"] = quantity
        if ctx.evidence:
            common["evidence"] = ctx.evidence
        if ctx.event_id is not None:
            common["event_id"] = ctx.event_id
        if current is not None and current.state in ACTIVE:
            alert = current
            escalated = SEVERITY_RANK[severity] > SEVERITY_RANK[alert.severity]
            if escalated:
                # People hear of this one, so they must hear of its clear too.
                state.silent[alarm_type] = False
            update = {
                **common,
                "version": alert.version + 1,
                "count": alert.count + 1,
                "change": "escalated" if escalated else "updated",
                "notify": escalated,
                "severity": severity if escalated else alert.severity,
            }
            self._emit(state, alarm_type, alert.model_copy(update=update), out)
            return
        if (
            current is not None
            and current.state == "CLEARED"
            and current.cleared_at is not None
            and t - _epoch(current.cleared_at) < self.cooldown_s
        ):
            # Flapping: the same alarm again, quietly; its clear will be quiet too.
            alert = current
            state.silent[alarm_type] = True
            state.open_since[alarm_type] = t
            update = {
                **common,
                "version": alert.version + 1,
                "count": alert.count + 1,
                "state": "OPEN",
                "change": "reopened",
                "notify": False,
                "severity": severity,
                "cleared_at": None,
                # A re-open that carries `resolved_at` is the camera's (see templates).
                "resolved_at": None,
            }
            self._emit(state, alarm_type, alert.model_copy(update=update), out)
            return
        state.silent[alarm_type] = False
        state.open_since[alarm_type] = t
        alarm_id = stable_id("alarm", source_id, alarm_type, ctx.trigger_id)
        if message is None:
            common["message"] = f"{alarm_type} at {ctx.place.name}" + (
                f" (zone {zone})" if zone else ""
            )
            common["quantity"] = quantity
        alert = Alert(
            id=stable_id("alert", alarm_id, 0),
            seq=0,
            alarm_id=alarm_id,
            version=0,
            source_kind=source_kind,
            source_id=source_id,
            alarm_type=alarm_type,
            severity=severity,
            state="OPEN",
            change="opened",
            notify=True,
            count=1,
            threshold=threshold,
            place=ctx.place,
            opened_at=ctx.ts_capture,
            **common,
        )
        self._emit(state, alarm_type, alert, out)

    def _clear(
        self,
        state: State,
        source_kind: str,
        source_id: str,
        alarm_type: str,
        ctx: _Trigger,
        out: Output,
        *,
        value: float | None = None,
    ) -> None:
        if not _active(state, alarm_type):
            return
        alert = state.alarms[alarm_type]
        update = {
            "version": alert.version + 1,
            "state": "CLEARED",
            "change": "cleared",
            "notify": not state.silent.get(alarm_type, False),
            "cleared_at": ctx.ts_capture,
            "updated_at": ctx.ts_capture,
            "ts_capture": ctx.ts_capture,
            "ts_ingest": ctx.ts_ingest,
            "ts_rule": ctx.ts_rule,
        }
        if value is not None:
            update["last_value"] = value
        self._emit(state, alarm_type, alert.model_copy(update=update), out)

    def _pipeline_version(
        self,
        state: State,
        alarm_type: str,
        ts: datetime,
        ts_rule: datetime,
        out: Output,
        *,
        change: AlarmChange,
        notify: bool,
        message: str,
        alarm_state: AlarmState | None = None,
        escalation: int | None = None,
    ) -> None:
        """A new version of an alarm that time or the camera made, not a person."""
        alert = state.alarms[alarm_type]
        update: dict[str, Any] = {
            "version": alert.version + 1,
            "change": change,
            "notify": notify,
            "message": message,
            "updated_at": ts,
            "ts_capture": ts,
            "ts_ingest": None,
            "ts_rule": ts_rule,
        }
        if alarm_state is not None:
            update["state"] = alarm_state
        if escalation is not None:
            update["escalation"] = escalation
        self._emit(state, alarm_type, alert.model_copy(update=update), out)

    def _emit(
        self,
        state: State,
        alarm_type: str,
        alert: Alert,
        out: Output,
        *,
        actor: AlarmAction | None = None,
    ) -> None:
        # model_copy does not validate: give each version its own id and sequence number.
        # Who acted belongs to the version they made, not to the ones the pipeline makes after.
        alert = alert.model_copy(
            update={
                "id": stable_id("alert", alert.alarm_id, alert.version),
                "seq": alert.version,
                "schema_version": 2,
                "action_id": actor.id if actor else None,
                "by": actor.by if actor else "",
                "device": actor.device if actor else "",
                "note": actor.note if actor else "",
                "reason": actor.reason if actor else None,
                "photo": actor.photo if actor else None,
                "location": actor.location if actor else None,
            }
        )
        state.alarms[alarm_type] = alert
        out.alerts.append(alert)


_at = itemgetter(0)
_value = itemgetter(1)


def _rise(hist: list[tuple[float, float]], value: float, t: float, period_s: float) -> float:
    """How far `value` (at `t`) lies above the lowest of the history within `period_s`."""
    since = bisect_left(hist, t - period_s, key=_at)
    return value - min(map(_value, hist[since:]), default=value)


def _remembered_s(rule: PlaceRule) -> float:
    """How long a sensor remembers a camera's dumping for this rule."""
    if isinstance(rule, OpenBurningRule):
        return rule.hotspot_days * 86_400.0
    return rule.window_s


def _in_window(rule: PlaceRule, dumped: float, began: float, at: float) -> bool:
    """Whether dumping at `dumped` joins the sensor's condition, which began at `began` and
    holds at `at` (all epoch seconds, event time)."""
    if isinstance(rule, OpenBurningRule):
        # A hotspot: dumping before the rise, within hotspot_days of it.
        return began - rule.hotspot_days * 86_400.0 <= dumped <= at
    if isinstance(rule, TpsOverflowRule):
        # Beside the full container, or shortly before it filled up.
        return dumped >= began - rule.window_s
    # River: the dumping and the rise within window_s of each other, either first.
    return began - rule.window_s <= dumped <= at + rule.window_s


def _ago(seconds: float) -> str:
    """e.g. "3 min", "5 h", "2 days", for messages."""
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86_400:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86_400:.0f} days"


def _duration(seconds: float) -> str:
    """e.g. "10 min", "90 s", for the messages kept in the alarm's history."""
    if seconds >= 60 and seconds % 60 == 0:
        return f"{int(seconds // 60)} min"
    return f"{seconds:g} s"


@dataclass
class _Trigger:
    """What set a rule off: the input's id (seeds a new alarm's id) and its stage times."""

    trigger_id: UUID | str
    ts_capture: datetime
    ts_ingest: datetime | None
    ts_rule: datetime
    place: Place
    evidence: tuple[EvidenceRef, ...] = ()
    event_id: UUID | None = None
