"""Live alarms for open pages: alarm states and refused actions, read from Kafka as the
stream processor publishes them, handed to every page (Server-Sent Events) whose user may
see them.

One reader thread per console process, outside any consumer group: each process sees every
partition from the moment it starts (what happened before, the page loads from the
database). Nothing is committed; a page that reconnects reloads its list.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from kafka import TopicPartition

from pantau import kafka
from pantau.codec import DecodeError, decode_as
from pantau.messages import AlarmAction, Alert, DeadLetter
from pantau.poison import guard
from pantau.roles import AlarmScope, User, can_see
from pantau.settings import Settings
from pantau.topics import Topics

log = logging.getLogger(__name__)

# Events a slow page may fall behind by before it is dropped (its EventSource reconnects and
# reloads): the reader thread never waits for a page.
_PAGE_QUEUE = 1000
# Outcomes of recent actions kept for GET /api/v1/actions/{id}; older ones come from the
# database once the sink stored them.
_OUTCOMES = 10_000


@dataclass(frozen=True)
class Place:
    name: str
    desa: str | None
    kecamatan: str | None
    lat: float | None
    lon: float | None
    sensor_type: str | None


@dataclass
class LiveEvent:
    kind: str  # "alarm" or "refused"
    data: dict[str, Any]
    scope: AlarmScope

    def sse(self) -> str:
        return f"event: {self.kind}\ndata: {json.dumps(self.data, default=str)}\n\n"


@dataclass
class _Page:
    user: User
    queue: asyncio.Queue[LiveEvent | None]
    dropped: bool = False


@dataclass
class Hub:
    """Open pages and the recent outcome of each action."""

    loop: asyncio.AbstractEventLoop
    _pages: dict[int, _Page] = field(default_factory=dict)
    outcomes: OrderedDict[UUID, dict[str, Any]] = field(default_factory=OrderedDict)
    events_sent: int = 0

    def subscribe(self, user: User) -> tuple[int, asyncio.Queue[LiveEvent | None]]:
        page = _Page(user, asyncio.Queue(maxsize=_PAGE_QUEUE))
        key = id(page)
        self._pages[key] = page
        return key, page.queue

    def unsubscribe(self, key: int) -> None:
        self._pages.pop(key, None)

    @property
    def open_pages(self) -> int:
        return len(self._pages)

    def publish(self, event: LiveEvent) -> None:
        """On the event loop: hand `event` to every page whose user may see it."""
        if event.kind in ("alarm", "refused"):
            action_id = event.data.get("action_id")
            if action_id:
                self.remember(UUID(str(action_id)), event)
        for key, page in list(self._pages.items()):
            if not can_see(page.user, event.scope):
                continue
            try:
                page.queue.put_nowait(event)
                self.events_sent += 1
            except asyncio.QueueFull:
                # Too far behind: end its stream; the browser reconnects and reloads.
                log.warning("a live page fell %d events behind; dropping it", _PAGE_QUEUE)
                self._pages.pop(key, None)
                with contextlib.suppress(asyncio.QueueFull):
                    page.queue.get_nowait()
                page.queue.put_nowait(None)

    def remember(self, action_id: UUID, event: LiveEvent) -> None:
        if event.kind == "alarm":
            outcome = {"status": "applied", "version": event.data["version"], "reason": None}
        else:
            outcome = {"status": "refused", "version": None, "reason": event.data["reason"]}
        self.outcomes[action_id] = outcome
        self.outcomes.move_to_end(action_id)
        while len(self.outcomes) > _OUTCOMES:
            self.outcomes.popitem(last=False)


def alarm_data(alert: Alert, place: Place | None) -> dict[str, Any]:
    """What a page needs of an alarm state to show or update its row."""
    return {
        "alarm_id": str(alert.alarm_id),
        "version": alert.version,
        "source_kind": alert.source_kind,
        "source_id": alert.source_id,
        "alarm_type": alert.alarm_type,
        "severity": alert.severity,
        "state": alert.state,
        "change": alert.change,
        "count": alert.count,
        "last_value": alert.last_value,
        "quantity": alert.quantity,
        "message": alert.message,
        "opened_at": alert.opened_at.isoformat(),
        "updated_at": alert.updated_at.isoformat(),
        "assignee": alert.assignee,
        "dispatched_to": alert.dispatched_to,
        "action_id": str(alert.action_id) if alert.action_id else None,
        "by": alert.by,
        "note": alert.note,
        "place_name": (place.name if place else None)
        or (alert.place.name if alert.place else None)
        or alert.source_id,
        "desa": place.desa if place else (alert.place.desa if alert.place else None),
        "kecamatan": place.kecamatan if place else (alert.place.kecamatan if alert.place else None),
        "ts_rule": alert.ts_rule.isoformat() if alert.ts_rule else None,
    }


class Feed:
    """The reader thread: alerts.v1 and the actions' dead letters into the hub."""

    def __init__(
        self,
        settings: Settings,
        hub: Hub,
        places: Callable[[str, str], Place | None],
    ) -> None:
        self._settings = settings
        self._hub = hub
        self._places = places
        topics = Topics(settings.kafka)
        self._alerts = topics.alerts
        self._refusals = topics.dead_letters(topics.alarm_actions)
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="console-live", daemon=True)
        self.error: BaseException | None = None

    def start(self, timeout_s: float = 60.0) -> None:
        self._thread.start()
        if not self._ready.wait(timeout_s):
            raise RuntimeError(f"live feed: Kafka did not answer within {timeout_s:.0f} s")
        if self.error is not None:
            raise RuntimeError(f"live feed: {self.error}") from self.error

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        try:
            consumer = kafka.consumer(
                self._settings.kafka,
                # No group: every console process reads every partition, commits nothing.
                None,
                [],
                "console-live",
                auto_offset_reset="latest",
                fetch_max_wait_ms=100,
            )
            partitions = [
                TopicPartition(topic, p)
                for topic in (self._alerts, self._refusals)
                for p in sorted(consumer.partitions_for_topic(topic) or ())
            ]
            consumer.assign(partitions)
            consumer.seek_to_end(*partitions)
            for tp in partitions:
                consumer.position(tp)
        except BaseException as exc:
            self.error = exc
            self._ready.set()
            raise
        self._ready.set()
        try:
            while not self._stop.is_set():
                batches = consumer.poll(timeout_ms=200, max_records=500)
                for tp, records in batches.items():
                    for record in records:
                        # A record the feed cannot show (or a registry lookup that fails)
                        # is skipped, never the end of every open page's feed.
                        event = self._guarded(tp.topic, record.value or b"")
                        if event is not None:
                            self._hub.loop.call_soon_threadsafe(self._hub.publish, event)
        finally:
            consumer.close()

    def _guarded(self, topic: str, value: bytes) -> LiveEvent | None:
        return guard(
            lambda: self._event(topic, value),
            lambda reason: log.warning("live feed: skipped a record: %s", reason),
            where=topic,
        )

    def _event(self, topic: str, value: bytes) -> LiveEvent | None:
        try:
            if topic == self._alerts:
                alert = decode_as(value, Alert)
                place = self._places(alert.source_kind, alert.source_id)
                scope = AlarmScope(
                    alert.source_kind,
                    place.sensor_type if place else None,
                    place.kecamatan if place else None,
                )
                return LiveEvent("alarm", alarm_data(alert, place), scope)
            letter = decode_as(value, DeadLetter)
            if letter.stage != "streams":
                return None
            action = decode_as(letter.original, AlarmAction)
        except DecodeError as exc:
            # The sink dead-letters what nobody can read; a page has nothing to show of it.
            log.warning("live feed: skipped a record on %s: %s", topic, exc)
            return None
        place = self._places(action.source_kind, action.source_id)
        scope = AlarmScope(
            action.source_kind,
            place.sensor_type if place else None,
            place.kecamatan if place else None,
        )
        data = {
            "action_id": str(action.id),
            "alarm_id": str(action.alarm_id) if action.alarm_id else None,
            "action": action.action,
            "by": action.by,
            "reason": letter.error,
        }
        return LiveEvent("refused", data, scope)
