"""Sensor ingest over HTTP: `POST /v1/readings` → validation → `sensors.readings.v1`.

For gateways and devices that speak HTTP rather than MQTT. A request carries a JSON array of
readings (the MQTT payload shape, `sensorId` required), or `{"readings": [...]}`. Each item is
validated on its own; rejected items go to the dead-letter topic with their reason.

The response is sent only once Kafka has confirmed every record of the request, readings and
dead letters alike, so 200 and 207 mean stored. If Kafka fails the answer is 503 and nothing
is claimed accepted; the sender sends the whole batch again. Readings of it that did reach
Kafka keep their stable id, so downstream stores them once.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from aiohttp import web
from kafka import KafkaProducer
from kafka.errors import KafkaError
from kafka.future import Future

from ingest.validation import InvalidReading, SeqTracker, validate_reading, verify_units
from pantau import kafka
from pantau.ids import utcnow
from pantau.kafka import DeadLetters, publish
from pantau.messages import SensorReading
from pantau.settings import IngestSettings, KafkaSettings, Settings
from pantau.topics import Topics

log = logging.getLogger(__name__)

READINGS_PATH = "/v1/readings"
HEALTH_PATH = "/healthz"
# Where a dead letter says it came from (the field is a topic name for Kafka and MQTT).
SOURCE = f"POST {READINGS_PATH}"

# The producer gives up on a record after 25 s (see `http_producer`); waiting a little longer
# than that only guards against a confirmation that never comes.
CONFIRM_TIMEOUT_S = 30.0
# In-flight requests wait for their Kafka confirmation at shutdown; this covers it.
SHUTDOWN_TIMEOUT_S = CONFIRM_TIMEOUT_S + 5.0
STATS_INTERVAL_S = 60.0


def http_producer(settings: KafkaSettings) -> KafkaProducer:
    """A producer that fails a send within seconds, as an HTTP client cannot wait minutes."""
    return kafka.producer(
        settings,
        "ingest-http",
        max_block_ms=10_000,
        request_timeout_ms=10_000,
        delivery_timeout_ms=25_000,
    )


class BadBatch(ValueError):
    """The request as a whole is unusable: no item is looked at."""

    def __init__(self, status: int, error: str) -> None:
        super().__init__(error)
        self.status = status
        self.error = error


class ListenFailed(RuntimeError):
    """The server could not bind its address (in use, or not this machine's)."""


class StoreFailed(RuntimeError):
    """Kafka did not confirm every record of a batch; nothing of it counts as accepted."""


@dataclass(frozen=True)
class ItemResult:
    index: int
    id: UUID | None = None
    error: str | None = None

    def as_json(self) -> dict[str, Any]:
        if self.error is not None:
            return {"index": self.index, "status": "rejected", "error": self.error}
        return {"index": self.index, "status": "accepted", "id": str(self.id)}


@dataclass(frozen=True)
class BatchResult:
    items: tuple[ItemResult, ...]

    @property
    def accepted(self) -> int:
        return sum(1 for item in self.items if item.error is None)

    @property
    def rejected(self) -> int:
        return len(self.items) - self.accepted

    @property
    def status(self) -> int:
        if self.rejected == 0:
            return 200
        return 207 if self.accepted else 400

    def as_json(self) -> dict[str, Any]:
        return {
            "accepted": self.accepted,
            "rejected": self.rejected,
            "results": [item.as_json() for item in self.items],
        }


@dataclass
class HttpStats:
    accepted: int = 0
    rejected: int = 0
    failed_batches: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def snapshot(self) -> tuple[int, int, int]:
        with self.lock:
            return self.accepted, self.rejected, self.failed_batches


def parse_batch(body: bytes, max_items: int) -> list[object]:
    """The items of a request body; BadBatch (400 or 413) when the body is not a batch."""
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadBatch(400, f"body is not JSON: {exc}") from exc
    if isinstance(data, dict):
        if set(data) != {"readings"}:
            keys = ", ".join(sorted(map(repr, data))) or "none"
            raise BadBatch(
                400,
                f'body must be a JSON array of readings or {{"readings": [...]}}, got keys {keys}',
            )
        data = data["readings"]
    if not isinstance(data, list):
        raise BadBatch(400, f"body must be a JSON array of readings, got {type(data).__name__}")
    if not data:
        raise BadBatch(400, "body holds no readings")
    if len(data) > max_items:
        raise BadBatch(
            413,
            f"{len(data)} readings in one request; the limit is {max_items} "
            "(ingest.http_max_items): split the batch",
        )
    return data


class HttpIngest:
    """Validates a batch and stores it in Kafka; blocking, so the server runs it in a thread."""

    def __init__(
        self,
        settings: Settings,
        producer: KafkaProducer,
        topics: Topics,
        *,
        clock: Callable[[], datetime] = utcnow,
        confirm_timeout_s: float = CONFIRM_TIMEOUT_S,
    ) -> None:
        verify_units(settings.sensors)
        self._registry = settings.sensor_registry()
        self._max_future_skew_s = settings.ingest.max_future_skew_s
        self._producer = producer
        self._topics = topics
        self._dead_letters = DeadLetters(producer, stage="ingest.http")
        # In memory, like the MQTT ingest's: a repeat reaching another process or a later run
        # passes, and is stored once downstream thanks to its stable reading id.
        self._seqs = SeqTracker()
        self._clock = clock
        self._confirm_timeout_s = confirm_timeout_s
        self.stats = HttpStats()

    def ingest(self, items: Sequence[object]) -> BatchResult:
        """Validate, produce and wait for Kafka; StoreFailed if any record was not confirmed."""
        now = self._clock()
        readings_topic = self._topics.readings
        dead_letter_topic = self._topics.dead_letters(readings_topic)
        results: list[ItemResult] = []
        claimed: list[SensorReading] = []
        futures: list[Future] = []
        try:
            for index, item in enumerate(items):
                try:
                    reading = validate_reading(
                        item,
                        topic_sensor_id=None,
                        registry=self._registry,
                        now=now,
                        max_future_skew_s=self._max_future_skew_s,
                        require_sensor_id=True,
                    )
                    self._seqs.claim(reading)
                except InvalidReading as exc:
                    futures.append(
                        self._dead_letters.send(
                            dead_letter_topic,
                            original=json.dumps(item, ensure_ascii=False).encode(),
                            error=str(exc),
                            source_kind="http",
                            source_topic=SOURCE,
                            source_key=_sensor_of(item),
                        )
                    )
                    results.append(ItemResult(index, error=str(exc)))
                    continue
                claimed.append(reading)
                futures.append(publish(self._producer, readings_topic, reading))
                results.append(ItemResult(index, id=reading.id))
            self._confirm(futures)
        except BaseException as exc:
            # The sender is told nothing was accepted, so its retry must not meet these seqs
            # as duplicates.
            for reading in claimed:
                self._seqs.release(reading)
            with self.stats.lock:
                self.stats.failed_batches += 1
            if isinstance(exc, KafkaError):
                raise StoreFailed(
                    f"Kafka did not confirm the batch ({type(exc).__name__}: {exc}); "
                    "nothing of it is accepted: send it again"
                ) from exc
            raise
        batch = BatchResult(tuple(results))
        with self.stats.lock:
            self.stats.accepted += batch.accepted
            self.stats.rejected += batch.rejected
        return batch

    def _confirm(self, futures: Sequence[Future]) -> None:
        deadline = time.monotonic() + self._confirm_timeout_s
        for future in futures:
            future.get(timeout=max(0.0, deadline - time.monotonic()))


def _sensor_of(item: object) -> str | None:
    sensor_id = item.get("sensorId") if isinstance(item, dict) else None
    return sensor_id if isinstance(sensor_id, str) and sensor_id else None


class KafkaProbe:
    """Whether the broker answers; the answer is kept a few seconds, as probes come often."""

    def __init__(self, settings: KafkaSettings, *, ttl_s: float = 5.0, timeout_s: float = 3.0):
        self._settings = settings
        self._ttl_s = ttl_s
        self._timeout_s = timeout_s
        self._checked_at: float | None = None
        self._problem: str | None = None
        self._lock = asyncio.Lock()

    async def problem(self) -> str | None:
        """None when Kafka is reachable, else why not."""
        async with self._lock:
            fresh = (
                self._checked_at is not None and time.monotonic() - self._checked_at < self._ttl_s
            )
            if not fresh:
                loop = asyncio.get_running_loop()
                self._problem = await loop.run_in_executor(None, self._check)
                self._checked_at = time.monotonic()
            return self._problem

    def _check(self) -> str | None:
        try:
            kafka.wait_until_ready(self._settings, timeout_s=self._timeout_s)
        except kafka.KafkaUnavailable as exc:
            return str(exc)
        return None


class ReadingsApi:
    """The HTTP side: authentication, body limits, status codes; the work is `HttpIngest`'s."""

    def __init__(self, ingest: HttpIngest, settings: IngestSettings, probe: KafkaProbe) -> None:
        self._ingest = ingest
        self._settings = settings
        self._probe = probe
        token = settings.http_token
        self._token = token.get_secret_value().encode() if token is not None else None

    @property
    def token_required(self) -> bool:
        return self._token is not None

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post(READINGS_PATH, self.post_readings)
        app.router.add_get(HEALTH_PATH, self.healthz)
        return app

    async def post_readings(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            log.warning("refused %s from %s: missing or wrong bearer token", SOURCE, request.remote)
            return _refusal(
                401,
                "missing or wrong bearer token (expected Authorization: Bearer <token>)",
                headers={"WWW-Authenticate": 'Bearer realm="pantau"'},
            )
        try:
            body = await self._read_body(request)
            items = parse_batch(body, self._settings.http_max_items)
        except BadBatch as exc:
            log.warning("refused %s from %s (%d): %s", SOURCE, request.remote, exc.status, exc)
            return _refusal(exc.status, exc.error)
        loop = asyncio.get_running_loop()
        try:
            batch = await loop.run_in_executor(None, self._ingest.ingest, items)
        except StoreFailed as exc:
            log.error(
                "batch of %d readings from %s not stored: %s", len(items), request.remote, exc
            )
            return _refusal(503, str(exc))
        return web.json_response(batch.as_json(), status=batch.status)

    async def healthz(self, _request: web.Request) -> web.Response:
        problem = await self._probe.problem()
        if problem is None:
            return web.json_response({"status": "ok"})
        return web.json_response({"status": "unavailable", "error": problem}, status=503)

    def _authorized(self, request: web.Request) -> bool:
        if self._token is None:
            return True
        scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
        # Constant-time comparison: response timing must not reveal how much of a guess matched.
        return scheme.lower() == "bearer" and hmac.compare_digest(
            credentials.strip().encode(), self._token
        )

    async def _read_body(self, request: web.Request) -> bytes:
        limit = self._settings.http_max_body_bytes
        too_large = BadBatch(
            413, f"body is larger than {limit} bytes (ingest.http_max_body_bytes): split the batch"
        )
        if request.content_length is not None and request.content_length > limit:
            raise too_large
        chunks: list[bytes] = []
        size = 0
        # Read in pieces: a sender without Content-Length is cut off at the limit, not after
        # its whole body sits in memory.
        async for chunk in request.content.iter_chunked(64 * 1024):
            size += len(chunk)
            if size > limit:
                raise too_large
            chunks.append(chunk)
        return b"".join(chunks)


def _refusal(status: int, error: str, headers: dict[str, str] | None = None) -> web.Response:
    body = {"accepted": 0, "rejected": 0, "results": [], "error": error}
    return web.json_response(body, status=status, headers=headers)


def run_http_ingest(
    settings: Settings,
    producer: KafkaProducer,
    topics: Topics,
    stop: threading.Event,
    *,
    host: str,
    port: int,
) -> HttpStats:
    """Serve until `stop` is set; returns the counters. ListenFailed if the port is taken."""
    ingest = HttpIngest(settings, producer, topics)
    api = ReadingsApi(ingest, settings.ingest, KafkaProbe(settings.kafka))
    asyncio.run(_serve(api, ingest.stats, stop, host, port))
    return ingest.stats


async def _serve(
    api: ReadingsApi, stats: HttpStats, stop: threading.Event, host: str, port: int
) -> None:
    # No access log: a busy gateway posts every few seconds; the counts below say enough, and
    # every rejected item is logged with its dead letter.
    runner = web.AppRunner(api.app(), access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT_S)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except OSError as exc:
            raise ListenFailed(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
        log.info(
            "HTTP ingest listening on http://%s:%d (POST %s, GET %s)%s",
            host,
            port,
            READINGS_PATH,
            HEALTH_PATH,
            ", bearer token required" if api.token_required else "",
        )
        reported = stats.snapshot()
        next_report = time.monotonic() + STATS_INTERVAL_S
        while not stop.is_set():
            await asyncio.sleep(0.2)
            if time.monotonic() >= next_report:
                next_report += STATS_INTERVAL_S
                now = stats.snapshot()
                if now != reported:
                    log.info(
                        "HTTP ingest, last minute: accepted %d, rejected %d, failed batches %d",
                        now[0] - reported[0],
                        now[1] - reported[1],
                        now[2] - reported[2],
                    )
                    reported = now
    finally:
        # Stops listening, then waits for requests still waiting on Kafka.
        await runner.cleanup()
    accepted, rejected, failed = stats.snapshot()
    log.info(
        "HTTP ingest stopped: accepted %d, rejected %d, failed batches %d",
        accepted,
        rejected,
        failed,
    )
