"""A source's state in the table's changelog: the wire format stays what the first release
wrote, so a worker of this version goes on from the states an older one left behind.

`data/states-v1.json` holds the states three stories leave, as the dict-based engine of the
first release wrote them to the changelog. The same stories run today must write the same
JSON, and those old bytes must load and carry on.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from streams.engine import DUMPING, State, mark_applied
from streams.state import SourceKind, dump_state, load_state, new_state
from tests.unit.streams.test_engine import (
    ENGINE,
    action,
    at,
    dumping,
    heartbeat,
    reading,
    view,
)

GOLDEN = Path(__file__).parent / "data" / "states-v1.json"


def _sensor_story(state: State) -> None:
    """Threshold raised, escalated, acknowledged; windows closed and one still open; a check."""
    levels = [(0, 2.5), (10, 3.1), (40, 3.2), (50, 4.1), (75, 3.6), (130, 2.9)]
    for offset, (seconds, level) in enumerate(levels):
        ENGINE.on_reading(
            state, reading("wl-lengkong", seconds, waterLevel=level), ts_rule=at(seconds + 2)
        )
        mark_applied(state, "pantau.readings.v1", offset)
    alarm_id = _alarm_id(state, "water-high")
    ENGINE.on_action(state, action("ack", 140, alarm_id=alarm_id), ts_rule=at(140))
    ENGINE.on_action(state, action("check", 200, "wl-lengkong"), ts_rule=at(200))
    ENGINE.on_reading(state, reading("wl-lengkong", 205, waterLevel=2.8), ts_rule=at(206))


def _rate_story(state: State) -> None:
    """A fast rise (history kept for the look-back), a late reading, a quiet fall."""
    for seconds, level in [(0, 1.0), (100, 1.2), (300, 1.6), (250, 1.3), (400, 1.1)]:
        ENGINE.on_reading(
            state, reading("wl-ploso", seconds, waterLevel=level), ts_rule=at(seconds)
        )


def _camera_story(state: State) -> None:
    """Online, covered, an object dumped and resolved while still in view, a repeated action."""
    ENGINE.on_heartbeat(state, heartbeat(0, "online"), ts_rule=at(0))
    ENGINE.on_view(state, view(5, "covered", "start"), ts_rule=at(5))
    ENGINE.on_dumping(state, dumping(20, "new", "alerted"), ts_rule=at(20))
    ENGINE.on_dumping(state, dumping(40, "update", "alerted"), ts_rule=at(40))
    alarm_id = _alarm_id(state, DUMPING)
    resolve = action("resolve", 60, "tps-gedeg", alarm_id=alarm_id, source_kind="dumping")
    ENGINE.on_action(state, resolve, ts_rule=at(60))
    ENGINE.on_action(state, resolve, ts_rule=at(61))
    ENGINE.on_heartbeat(state, heartbeat(90, "online"), ts_rule=at(90))


def _alarm_id(state: State, alarm_type: str) -> Any:
    """The id of the source's alarm of this type, read back from its changelog form."""
    return json.loads(dump_state(state))["alarms"][alarm_type]["alarm_id"]


STORIES: dict[str, tuple[SourceKind, str, Callable[[State], None]]] = {
    "sensor": ("sensor", "wl-lengkong", _sensor_story),
    "rate": ("sensor", "wl-ploso", _rate_story),
    "camera": ("camera", "tps-gedeg", _camera_story),
}


def story_state(name: str) -> State:
    kind, source_id, story = STORIES[name]
    state = new_state(kind, source_id)
    story(state)
    return state


def golden() -> dict[str, Any]:
    stored: dict[str, Any] = json.loads(GOLDEN.read_text())
    return stored


@pytest.mark.parametrize("name", sorted(STORIES))
def test_todays_engine_writes_the_first_releases_json(name: str) -> None:
    assert json.loads(dump_state(story_state(name))) == golden()[name]


@pytest.mark.parametrize("name", sorted(STORIES))
def test_old_changelog_bytes_load_and_are_written_back_unchanged(name: str) -> None:
    old = json.dumps(golden()[name]).encode()
    assert json.loads(dump_state(load_state(old))) == golden()[name]


def test_a_state_the_first_release_left_goes_on_as_if_never_stored() -> None:
    kept = story_state("camera")
    restored = load_state(json.dumps(golden()["camera"]).encode())
    after = [(660, "online"), (660, "check")]
    outs = []
    for state in (kept, restored):
        alerts = []
        for seconds, step in after:
            if step == "check":
                alerts += ENGINE.on_action(
                    state,
                    action("check", seconds, "tps-gedeg", source_kind="camera"),
                    ts_rule=at(seconds),
                ).alerts
            else:
                alerts += ENGINE.on_heartbeat(
                    state, heartbeat(seconds, "online"), ts_rule=at(seconds)
                ).alerts
        outs.append(alerts)
    assert outs[0] == outs[1]
    # The check after the camera's deadline takes the resolve back (its object is still live).
    assert [a.change for a in outs[0] if a.alarm_type == DUMPING] == ["reopened"]


def write_golden() -> None:
    """Regenerate the fixture (only ever from the first release's engine)."""
    GOLDEN.parent.mkdir(exist_ok=True)
    states = {name: json.loads(dump_state(story_state(name))) for name in sorted(STORIES)}
    GOLDEN.write_text(json.dumps(states, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    write_golden()
