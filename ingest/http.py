"""Sensor ingest over HTTP: `POST /v1/readings` → validation → `sensors.readings.v1`.

For gateways and devices that speak HTTP rather than MQTT. A request carries a JSON array of
readings (the MQTT payload shape, `sensorId` required), or `{"readings": [...]}`, sent as
`application/json` (or `application/*+json`). A request without a Content-Type is read as
JSON too: small devices often send none, and a body that is not JSON is refused anyway.

Every request comes from a gateway of the registry (`gateways` in the settings), named by its
credentials: `Authorization: Bearer <gateway id>.<secret>`, or HTTP Basic with the gateway id
as user name and the secret as password (many devices only do Basic). The id lets the server
check one hash rather than all of them; a check (PBKDF2) is remembered in memory, so it runs
once per token, not per request (`GatewayAuth`). Missing or wrong credentials are answered 401,
a revoked gateway 403: such a request never enters (no dead letter), it is logged with the
remote address and the claimed gateway id (never the secret) and counted. Requests without
credentials are taken only where `ingest.http_allow_anonymous` says so, which start-up logs as
the open door it is. `GET /healthz` needs no credentials: it says only whether Kafka answers.
With `ingest.http_tls_cert` and `ingest.http_tls_key` the server speaks HTTPS only; listening
beyond this machine without them is warned about at start-up (`door_warnings`).

Each item is judged on its own, and its result comes from its own record's Kafka confirmation:

- `accepted`: the reading is in Kafka (the answer gives its id) and names its gateway;
- `rejected`: the item is not a usable reading; its dead letter, with the reason, is in Kafka;
- `forbidden`: the item is for a registered sensor that is not the gateway's: it is logged and
  counted, not stored and not dead-lettered (the sender has no say over that sensor);
- `failed`: Kafka did not confirm the item's record; the sender sends that item again.

What was stored is never reported rejected or failed (and a reading sent again keeps its
stable id, so downstream stores it once whatever happens). The answer comes only once Kafka has
confirmed or refused every record of the request: 200 when all were accepted, 400 when all
were rejected, 403 when all were forbidden, 207 for any other mix, and 503 (with Retry-After)
when any failed, still with every item's result so that only the failed ones are sent again. A
body that is not a batch at all is refused whole (400; 413 too large; 415 not JSON) and no
item of it is looked at.

Connections are guarded (`GuardedConnection`), as aiohttp has no read timeout of its own: a
request must arrive whole within `ingest.http_read_timeout_s` of its first byte (else 408
and the connection is closed), an idle keep-alive connection is closed after `KEEPALIVE_S`,
and beyond `ingest.http_max_connections` open ones a new connection is answered 503 and
closed. Without this, clients trickling their requests a byte at a time hold connections
for ever.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import enum
import functools
import hashlib
import hmac
import ipaddress
import json
import logging
import re
import secrets
import socket
import ssl
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields, replace
from datetime import datetime
from http import HTTPStatus
from typing import Any, Literal, cast
from uuid import UUID

from aiohttp import hdrs, web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.typedefs import Handler, LooseHeaders
from kafka import KafkaProducer
from kafka.errors import KafkaError, KafkaTimeoutError
from kafka.future import Future
from multidict import CIMultiDict

from ingest.validation import InvalidReading, SeqTracker, validate_reading, verify_units
from pantau import kafka
from pantau.codec import DecodeError, describe, load_json
from pantau.credentials import hash_secret, new_secret, verify_secret
from pantau.ids import utcnow
from pantau.kafka import DeadLetters, publish
from pantau.messages import SensorReading
from pantau.poison import guard
from pantau.settings import GatewaySettings, IngestSettings, KafkaSettings, Settings
from pantau.topics import Topics

log = logging.getLogger(__name__)

READINGS_PATH = "/v1/readings"
HEALTH_PATH = "/healthz"
# Where a dead letter says it came from (the field is a topic name for Kafka and MQTT).
SOURCE = f"POST {READINGS_PATH}"

# The producer gives up on a record 25 s after its send (see `http_producer`), and the wait
# starts after the last send, so every record is settled before this; it only guards against
# a confirmation that never comes.
CONFIRM_TIMEOUT_S = 30.0
# In-flight requests wait for their Kafka confirmation at shutdown; this covers it.
SHUTDOWN_TIMEOUT_S = CONFIRM_TIMEOUT_S + 5.0
STATS_INTERVAL_S = 60.0
# A gateway posting every few seconds keeps its connection; one that went quiet gives its
# place under the connection cap back.
KEEPALIVE_S = 5.0
# After a last answer (408, 503, or a refusal given before the body was read) the connection
# is read and drained this long before it closes: closing a socket with unread data sends a
# reset, which can destroy the answer before the client has read it.
LINGER_S = 2.0
# How long a 503 asks the sender to wait before sending again.
RETRY_AFTER_S = 5

ItemStatus = Literal["accepted", "rejected", "forbidden", "failed"]


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
    """The request as a whole is unusable: no item is looked at. `close`: the connection
    cannot carry another request (the body's framing is broken)."""

    def __init__(self, status: int, error: str, *, close: bool = False) -> None:
        super().__init__(error)
        self.status = status
        self.error = error
        self.close = close


class ListenFailed(RuntimeError):
    """The server could not listen: its address is in use or not this machine's, or its TLS
    certificate or key cannot be used."""


@dataclass(frozen=True)
class ItemResult:
    index: int
    status: ItemStatus
    id: UUID | None = None
    error: str | None = None

    def as_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"index": self.index, "status": self.status}
        if self.id is not None:
            body["id"] = str(self.id)
        if self.error is not None:
            body["error"] = self.error
        return body


@dataclass(frozen=True)
class BatchResult:
    items: tuple[ItemResult, ...]

    def _count(self, status: ItemStatus) -> int:
        return sum(1 for item in self.items if item.status == status)

    @property
    def accepted(self) -> int:
        return self._count("accepted")

    @property
    def rejected(self) -> int:
        return self._count("rejected")

    @property
    def forbidden(self) -> int:
        return self._count("forbidden")

    @property
    def failed(self) -> int:
        return self._count("failed")

    @property
    def status(self) -> int:
        if self.failed:
            return 503
        if self.accepted == len(self.items):
            return 200
        if self.rejected == len(self.items):
            return 400
        if self.forbidden == len(self.items):
            return 403
        return 207

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(RETRY_AFTER_S)} if self.failed else {}

    def as_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "accepted": self.accepted,
            "rejected": self.rejected,
            "forbidden": self.forbidden,
            "failed": self.failed,
            "results": [item.as_json() for item in self.items],
        }
        if self.failed:
            body["error"] = (
                f"Kafka did not confirm {self.failed} of {len(self.items)} items: "
                "send those marked failed again (the others are stored)"
            )
        return body


@dataclass(frozen=True)
class HttpCounts:
    accepted: int = 0
    rejected: int = 0
    failed: int = 0
    forbidden: int = 0
    # Requests refused before their body was looked at: 401 and 403.
    unauthenticated: int = 0
    revoked: int = 0
    timed_out: int = 0
    refused: int = 0

    def __sub__(self, other: HttpCounts) -> HttpCounts:
        return HttpCounts(
            **{f.name: getattr(self, f.name) - getattr(other, f.name) for f in fields(self)}
        )

    def __str__(self) -> str:
        return (
            f"accepted {self.accepted}, rejected {self.rejected}, failed {self.failed}, "
            f"forbidden {self.forbidden}; requests refused: no or wrong credentials "
            f"{self.unauthenticated}, revoked gateway {self.revoked}; "
            f"connections timed out {self.timed_out}, refused over the cap {self.refused}"
        )


class HttpStats:
    """Counters shared by the event loop and the threads that run `HttpIngest.ingest`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts = HttpCounts()

    def add(self, **deltas: int) -> None:
        with self._lock:
            counts = self._counts
            self._counts = replace(
                counts, **{name: getattr(counts, name) + n for name, n in deltas.items()}
            )

    def snapshot(self) -> HttpCounts:
        with self._lock:
            return self._counts


def parse_batch(body: bytes, max_items: int) -> list[object]:
    """The items of a request body; BadBatch (400 or 413) when the body is not a batch.

    Parsed with the codec's bounds (nesting, integer digits, UTF-8, storable text). A usable
    batch nests four levels; the bound leaves room for an item with junk nested inside it,
    which is then rejected on its own instead of taking the whole batch with it.
    """
    try:
        data = load_json(body)
    except DecodeError as exc:
        # "body is not JSON: ...", "body: JSON nested deeper than 32 levels", ...
        reason = str(exc)
        raise BadBatch(
            400, f"body is {reason}" if reason.startswith("not JSON") else f"body: {reason}"
        ) from exc
    if isinstance(data, dict):
        if set(data) != {"readings"}:
            keys = ", ".join(sorted(repr(key)[:40] for key in data)[:10]) or "none"
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


# --------------------------------------------------------------------------- who is sending

REALM = "pantau ingest"
# Both ways a gateway may log in; a client that understands the first uses it.
CHALLENGES = (f'Bearer realm="{REALM}"', f'Basic realm="{REALM}", charset="UTF-8"')
CREDENTIALS_HELP = (
    "send Authorization: Bearer <gateway id>.<secret>, or Basic with the gateway id as user "
    "name and its secret as password"
)
# Wrong secrets are remembered too, so that a device retrying with a replaced secret costs one
# PBKDF2 check, not one a request; bounded, as anyone can make up new ones.
WRONG_REMEMBERED = 1024
# Secrets not yet remembered are checked on this many threads at most: a flood of made-up
# ones costs that much CPU and no more, and never holds up requests whose token is known.
CHECK_THREADS = 2


class Refused(Exception):
    """A request that does not get in: 401 (no or wrong credentials) or 403 (a revoked
    gateway). `error` is what the client is told; `logged` what the log says: the claimed
    gateway id, never the secret."""

    def __init__(self, status: int, error: str, logged: str) -> None:
        super().__init__(logged)
        self.status = status
        self.error = error
        self.logged = logged


@dataclass(frozen=True)
class Credentials:
    gateway_id: str
    secret: str = field(repr=False)


# The registry's id pattern (pantau.settings.SourceId).
_GATEWAY_ID = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")


def _claimed(gateway_id: str) -> str:
    """The claimed gateway id as the log shows it: only text that could be an id. A secret
    typed where the id goes (user name and password swapped) is not one, and stays out."""
    if _GATEWAY_ID.fullmatch(gateway_id):
        return repr(gateway_id)
    return f"(not a gateway id, {len(gateway_id)} characters, not shown)"


def _malformed(reason: str) -> Refused:
    return Refused(401, f"{reason}: {CREDENTIALS_HELP}", f"malformed Authorization: {reason}")


def parse_authorization(header: str | None) -> Credentials | None:
    """The gateway id and secret of an `Authorization` header (Bearer `<id>.<secret>`, or
    Basic); None when there is none; Refused (401) when it holds no usable credentials."""
    if header is None or not header.strip():
        return None
    scheme, _, value = header.strip().partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer":
        if not value.isascii():
            raise _malformed("the bearer token is not ASCII")
        # Gateway ids have no dot; a secret may.
        gateway_id, dot, secret = value.partition(".")
        if not dot:
            raise _malformed("a bearer token is <gateway id>.<secret>")
    elif scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, ValueError) as exc:
            raise _malformed("Basic credentials are not base64 of UTF-8 text") from exc
        gateway_id, colon, secret = decoded.partition(":")
        if not colon:
            raise _malformed("Basic credentials are <gateway id>:<secret>")
    else:
        # The scheme is not quoted: a device may send its bare secret in its place.
        raise _malformed("the scheme is not Bearer or Basic")
    if not gateway_id or not secret:
        raise _malformed("the gateway id or the secret is empty")
    return Credentials(gateway_id, secret)


class GatewayAuth:
    """Which gateway of the registry sent a request, from its credentials.

    A secret is checked against its gateway's hash (`secret_hash`, or the hash of a
    development `secret`) once; the outcome is remembered by a keyed digest of the id and
    secret, so PBKDF2 runs once per token, not per request. Thread-safe: checks run on worker
    threads while the event loop looks up remembered tokens.
    """

    def __init__(self, gateways: Sequence[GatewaySettings], *, allow_anonymous: bool) -> None:
        self.allow_anonymous = allow_anonymous
        self._gateways = {gateway.id: gateway for gateway in gateways}
        self._hashes: dict[str, str] = {}
        for gateway in gateways:
            if gateway.secret_hash is not None:
                self._hashes[gateway.id] = gateway.secret_hash
            elif gateway.secret is not None:
                # Checked like a registry hash: the same path, and the same cost, for both.
                self._hashes[gateway.id] = hash_secret(gateway.secret.get_secret_value())
        # A claimed id that is not registered is checked against this, at the cost of a real
        # check: how long a refusal takes must not tell which gateway ids exist.
        self._decoy = hash_secret(new_secret())
        # Digests are keyed per process: what is remembered is worth nothing outside it.
        self._key = secrets.token_bytes(32)
        self._lock = threading.Lock()
        self._right: set[bytes] = set()  # at most one a gateway: only its secret is right
        self._wrong: OrderedDict[bytes, None] = OrderedDict()

    @property
    def can_log_in(self) -> list[str]:
        """The gateways that can log in: registered with a secret, not revoked."""
        return [gateway.id for gateway in self._gateways.values() if gateway.can_log_in]

    def remembered(self, header: str | None) -> bool:
        """Whether `authenticate(header)` answers without a PBKDF2 check."""
        try:
            credentials = parse_authorization(header)
        except Refused:
            return True
        if credentials is None:
            return True
        digest = self._digest(credentials)
        with self._lock:
            return digest in self._right or digest in self._wrong

    def authenticate(self, header: str | None) -> GatewaySettings | None:
        """The gateway that sent a request with this `Authorization` header; None for a
        request without one where anonymity is allowed. Refused otherwise."""
        credentials = parse_authorization(header)
        if credentials is None:
            if self.allow_anonymous:
                return None
            raise Refused(401, f"credentials required: {CREDENTIALS_HELP}", "no credentials")
        gateway = self._gateways.get(credentials.gateway_id)
        if not self._check(credentials) or gateway is None:
            claimed = _claimed(credentials.gateway_id)
            raise Refused(
                401,
                f"unknown gateway or wrong secret: {CREDENTIALS_HELP}",
                f"wrong secret for gateway {claimed}"
                if gateway is not None
                else f"unknown gateway {claimed}",
            )
        if gateway.revoked:
            raise Refused(
                403,
                f"gateway {gateway.id} is revoked: it may send no readings",
                f"gateway {gateway.id} is revoked",
            )
        return gateway

    def _digest(self, credentials: Credentials) -> bytes:
        message = f"{credentials.gateway_id}\x1f{credentials.secret}".encode()
        return hmac.new(self._key, message, hashlib.sha256).digest()

    def _check(self, credentials: Credentials) -> bool:
        digest = self._digest(credentials)
        with self._lock:
            if digest in self._right:
                return True
            if digest in self._wrong:
                self._wrong.move_to_end(digest)
                return False
        hashed = self._hashes.get(credentials.gateway_id)
        right = verify_secret(credentials.secret, hashed or self._decoy) and hashed is not None
        with self._lock:
            if right:
                self._right.add(digest)
            else:
                self._wrong[digest] = None
                while len(self._wrong) > WRONG_REMEMBERED:
                    self._wrong.popitem(last=False)
        return right


def door_warnings(settings: IngestSettings, host: str, auth: GatewayAuth) -> list[str]:
    """What start-up warns about: a way in that is open, or one closed to everyone."""
    warnings: list[str] = []
    if settings.http_allow_anonymous:
        warnings.append(
            "ingest.http_allow_anonymous is on: anyone who reaches this port may send readings "
            "for any sensor without credentials (an open door; such readings name no gateway)"
        )
    elif not auth.can_log_in:
        warnings.append(
            "no gateway can log in (none in the registry has a secret_hash or secret and is "
            f"not revoked): every {SOURCE} will be refused 401"
        )
    if settings.http_tls_cert is None and not _loopback(host):
        warnings.append(
            f"listening on {host or 'every interface'} without TLS: gateways' secrets and "
            "readings cross the network in clear text (set ingest.http_tls_cert and "
            "ingest.http_tls_key)"
        )
    return warnings


def _loopback(host: str) -> bool:
    """Whether only this machine can reach `host` (every address it names is a loopback)."""
    try:
        infos = socket.getaddrinfo(
            host or None, None, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except OSError:
        return False
    addresses = {str(info[4][0]).split("%", 1)[0] for info in infos}
    return bool(addresses) and all(ipaddress.ip_address(a).is_loopback for a in addresses)


def tls_context(settings: IngestSettings) -> ssl.SSLContext | None:
    """The server's TLS context (None without TLS); ListenFailed when the certificate or key
    cannot be used."""
    cert, key = settings.http_tls_cert, settings.http_tls_key
    if cert is None or key is None:
        return None
    for name, path in (("ingest.http_tls_cert", cert), ("ingest.http_tls_key", key)):
        if not path.is_file():
            raise ListenFailed(f"{name}: {path} is not a file")

    def no_password() -> str:
        # Asked only for an encrypted key; nobody is at a terminal to type its password.
        raise ListenFailed(
            f"ingest.http_tls_key: {key} is encrypted; give the ingest a key without a "
            "password (readable by it only)"
        )

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    # TLS 1.0 and 1.1 are broken and retired (RFC 8996).
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key, password=no_password)
    except ssl.SSLError as exc:
        raise ListenFailed(
            f"cannot serve HTTPS with ingest.http_tls_cert {cert} and ingest.http_tls_key "
            f"{key}: {exc.reason or exc} (both must be PEM, the key the certificate's own)"
        ) from exc
    except OSError as exc:
        raise ListenFailed(
            f"cannot read ingest.http_tls_cert {cert} or ingest.http_tls_key {key}: "
            f"{exc.strerror or exc}"
        ) from exc
    return context


@dataclass(frozen=True)
class _Handed:
    """One item handed to the producer: its reading or its dead letter, and that record's
    future; or why the producer did not take it, or why the sender may not send it."""

    index: int
    future: Future | None = None
    forbidden: str | None = None  # why the gateway may not send this item (not stored)
    reading: SensorReading | None = None
    reason: str | None = None  # why the item was rejected (what its dead letter says)
    failure: str | None = None  # why Kafka did not take the record
    # The producer could not take a record within its max_block_ms: the broker is away, and
    # each further send would wait as long.
    blocked: bool = False


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
        self._settings = settings.ingest
        self._producer = producer
        self._topics = topics
        self._dead_letters = DeadLetters(producer, stage="ingest.http")
        # In memory, like the MQTT ingest's: a repeat reaching another process or a later run
        # passes, and is stored once downstream thanks to its stable reading id.
        self._seqs = SeqTracker()
        self._clock = clock
        self._confirm_timeout_s = confirm_timeout_s
        self.stats = HttpStats()

    def ingest(
        self, items: Sequence[object], gateway: GatewaySettings | None = None
    ) -> BatchResult:
        """Validate each item, hand its reading or dead letter to Kafka, and wait for every
        record's confirmation; each item's result says what became of it. `gateway`: the
        authenticated sender (None: an anonymous one), which may send only for its sensors
        and is recorded on each reading."""
        now = self._clock()
        handed: list[_Handed] = []
        unavailable: str | None = None
        not_its_own: set[str] = set()
        for index, item in enumerate(items):
            forbidden = self._forbidden(item, gateway)
            if forbidden is not None:
                handed.append(_Handed(index, forbidden=forbidden))
                not_its_own.add(str(_sensor_of(item)))
                continue
            if unavailable is not None:
                handed.append(_Handed(index, failure=unavailable))
                continue
            one = self._hand_over(index, item, now, gateway)
            if one.blocked:
                unavailable = one.failure
            handed.append(one)
        deadline = time.monotonic() + self._confirm_timeout_s
        batch = BatchResult(tuple(self._settle(one, deadline) for one in handed))
        self.stats.add(
            accepted=batch.accepted,
            rejected=batch.rejected,
            failed=batch.failed,
            forbidden=batch.forbidden,
        )
        if gateway is not None and batch.forbidden:
            shown = sorted(not_its_own)
            log.warning(
                "%d of %d items of a %s batch from gateway %s forbidden, not stored: sensors "
                "%s%s are not its own",
                batch.forbidden,
                len(batch.items),
                SOURCE,
                gateway.id,
                ", ".join(shown[:10]),
                f" and {len(shown) - 10} more" if len(shown) > 10 else "",
            )
        if batch.failed:
            first = next(item for item in batch.items if item.status == "failed")
            log.error(
                "%d of %d items of a %s batch not stored (item %d: %s)",
                batch.failed,
                len(batch.items),
                SOURCE,
                first.index,
                first.error,
            )
        return batch

    def _forbidden(self, item: object, gateway: GatewaySettings | None) -> str | None:
        """Why `gateway` may not send this item, if it may not: the item is for a registered
        sensor that is not one of the gateway's. (A sensor not in the registry is nobody's:
        validation rejects it, with a dead letter that shows what is missing there.)"""
        if gateway is None:
            return None
        sensor_id = _sensor_of(item)
        if sensor_id is None or sensor_id not in self._registry or sensor_id in gateway.sensors:
            return None
        return (
            f"gateway {gateway.id} may not send readings for sensor {sensor_id}: it is not one "
            "of the gateway's sensors in the registry"
        )

    def _hand_over(
        self, index: int, item: object, now: datetime, gateway: GatewaySettings | None
    ) -> _Handed:
        # Items come from `load_json`, so they always encode back to JSON.
        original = json.dumps(item, ensure_ascii=False).encode()
        reasons: list[str] = []
        sender = gateway.id if gateway is not None else None
        try:
            sent = guard(
                lambda: self._publish(original, item, now, sender),
                reasons.append,
                infrastructure=(KafkaError,),
                where=f"item {index} of a {SOURCE} batch",
            )
        except KafkaError as exc:
            return _Handed(index, failure=_why(exc), blocked=_blocked(exc))
        if sent is not None:
            reading, future = sent
            return _Handed(index, future=future, reading=reading)
        reason = reasons[0]
        try:
            future = self._dead_letters.send(
                self._topics.dead_letters(self._topics.readings),
                original=original,
                error=reason,
                source_kind="http",
                source_topic=SOURCE,
                source_key=_sensor_of(item),
            )
        except Exception as exc:
            if not isinstance(exc, KafkaError):
                log.error(
                    "dead letter of item %d of a %s batch not sent", index, SOURCE, exc_info=exc
                )
            return _Handed(index, reason=reason, failure=_why(exc), blocked=_blocked(exc))
        return _Handed(index, future=future, reason=reason)

    def _publish(
        self, original: bytes, item: object, now: datetime, gateway: str | None
    ) -> tuple[SensorReading, Future]:
        limit = self._settings.max_reading_bytes
        if len(original) > limit:
            raise InvalidReading(
                f"item is {len(original)} bytes as JSON; a reading may have at most {limit} "
                "(ingest.max_reading_bytes)"
            )
        reading = validate_reading(
            item,
            topic_sensor_id=None,
            registry=self._registry,
            now=now,
            max_future_skew_s=self._settings.max_future_skew_s,
            earliest=self._settings.earliest_observation,
            require_sensor_id=True,
            gateway=gateway,
        )
        self._seqs.claim(reading)
        try:
            return reading, publish(self._producer, self._topics.readings, reading)
        except BaseException:
            self._seqs.release(reading)
            raise

    def _settle(self, one: _Handed, deadline: float) -> ItemResult:
        if one.forbidden is not None:
            return ItemResult(one.index, "forbidden", error=one.forbidden)
        failure = one.failure
        if one.future is not None:
            try:
                one.future.get(timeout=max(0.0, deadline - time.monotonic()))
            except Exception as exc:
                failure = _why(exc)
            else:
                if one.reading is not None:
                    return ItemResult(one.index, "accepted", id=one.reading.id)
                return ItemResult(one.index, "rejected", error=one.reason)
        if one.reading is not None:
            # Not stored, so the sender's retry must not meet this seq as a duplicate.
            self._seqs.release(one.reading)
        if one.reason is not None:
            error = (
                f"Kafka did not confirm the dead letter of this rejected item ({failure}): "
                f"send it again; it was rejected because: {one.reason}"
            )
        else:
            error = f"Kafka did not confirm it ({failure}): send it again"
        return ItemResult(one.index, "failed", error=error)


def _why(exc: BaseException) -> str:
    # kafka-python's errors name their class themselves ("KafkaTimeoutError: ...").
    return (str(exc) or type(exc).__name__) if isinstance(exc, KafkaError) else describe(exc)


def _blocked(exc: BaseException) -> bool:
    return isinstance(exc, KafkaTimeoutError)


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


class _Phase(enum.Enum):
    IDLE = "idle"  # between requests
    READING = "reading"  # a request has begun and has not fully arrived
    HANDLING = "handling"  # the request is in; its answer is being worked out
    CLOSING = "closing"  # answered before its body was read: aiohttp drains, then closes


class GuardedConnection(asyncio.Protocol):
    """One client connection, with aiohttp's request handler inside and a clock on it.

    The clock runs per phase: an idle connection is closed after KEEPALIVE_S; a request must
    arrive whole (headers and body) within the read timeout of its first byte, else it is
    answered 408 and closed; a connection answered before its body was read is closed if
    aiohttp has not closed it after its own lingering. A request whose body is in and whose
    answer waits for Kafka is never hurried. Everything else is aiohttp's.
    """

    def __init__(self, guard: ConnectionGuard) -> None:
        self._guard = guard
        self._transport: asyncio.Transport | None = None
        self._inner: asyncio.Protocol | None = None
        self._phase = _Phase.IDLE
        self._timer: asyncio.TimerHandle | None = None
        # Bytes of a next request came while this one was being handled.
        self._next_begun = False
        # A last answer of ours was written; what still comes is drained, not served.
        self._finishing = False
        # The client closed its side of the connection.
        self._client_done = False
        self._lost = False

    @property
    def transport(self) -> asyncio.Transport | None:
        return self._transport

    @property
    def peer(self) -> str:
        peer = self._transport.get_extra_info("peername") if self._transport else None
        return f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else "a client"

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        inner = self._guard.admit(self)
        if inner is None:
            return
        self._inner = inner
        inner.connection_made(transport)
        self._enter(_Phase.IDLE)

    def data_received(self, data: bytes) -> None:
        if self._inner is None or self._finishing:
            return
        if self._phase is _Phase.IDLE:
            self._enter(_Phase.READING)
        elif self._phase is _Phase.HANDLING:
            self._next_begun = True
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        if self._inner is None or self._finishing:
            return None  # the client has read our last answer (or gone): close
        self._inner.eof_received()
        if self._phase is _Phase.HANDLING:
            # A client may close its side once its request is sent: it still gets its answer
            # (and the idle clock closes the connection after it).
            return True
        if self._phase is _Phase.READING:
            # Nothing more will come. The request may be whole already, its handler about to
            # start; if it has not started within LINGER_S it never will, and the client has
            # gone: its place is given back then, quietly.
            self._client_done = True
            self._cancel_timer()
            self._timer = asyncio.get_running_loop().call_later(LINGER_S, self._expired)
            return True
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self._cancel_timer()
        self._guard.release(self)
        if self._inner is not None:
            self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._inner is not None:
            self._inner.resume_writing()

    # Told by the application (the `_read_clock` middleware and the readings handler).

    def request_started(self, *, body_complete: bool) -> None:
        if self._phase is _Phase.IDLE:
            # Its bytes came with the request before, while that one was read.
            self._enter(_Phase.READING)
        if body_complete:
            self.body_read()

    def body_read(self) -> None:
        if self._phase is _Phase.READING:
            self._enter(_Phase.HANDLING)

    def answered(self, *, body_complete: bool) -> None:
        if not body_complete:
            self._enter(_Phase.CLOSING)
            return
        next_begun, self._next_begun = self._next_begun, False
        self._enter(_Phase.READING if next_begun else _Phase.IDLE)

    def finish(self, status: HTTPStatus, error: str, headers: dict[str, str] | None = None) -> None:
        """Answer with a last response of our own, drain what still comes for LINGER_S, and
        close; aiohttp's handler, if any, is not fed again."""
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        self._finishing = True
        self._cancel_timer()
        transport.write(_raw_response(status, error, headers or {}))
        if transport.can_write_eof():
            transport.write_eof()
        if not transport.is_reading():
            transport.resume_reading()
        self._timer = asyncio.get_running_loop().call_later(LINGER_S, self._close)

    def _enter(self, phase: _Phase) -> None:
        self._phase = phase
        self._cancel_timer()
        if self._lost:
            return
        if phase is _Phase.IDLE:
            delay = KEEPALIVE_S
        elif phase is _Phase.READING:
            delay = self._guard.read_timeout_s
        elif phase is _Phase.CLOSING:
            delay = 2 * LINGER_S
        else:
            return
        self._timer = asyncio.get_running_loop().call_later(delay, self._expired)

    def _expired(self) -> None:
        self._timer = None
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        if self._phase is _Phase.READING and not self._client_done:
            self._guard.timed_out(self)
            # An answer can be written only if nothing of an earlier one is still queued.
            if transport.get_write_buffer_size() == 0:
                self.finish(
                    HTTPStatus.REQUEST_TIMEOUT,
                    f"the request did not arrive whole within {self._guard.read_timeout_s:g} s "
                    "of its first byte (ingest.http_read_timeout_s)",
                )
                return
        self._close()

    def _close(self) -> None:
        self._timer = None
        transport = self._transport
        if transport is None:
            return
        # A client that does not read its answer would keep a graceful close waiting for ever.
        if transport.get_write_buffer_size():
            transport.abort()
        else:
            transport.close()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


class ConnectionGuard:
    """The listening socket's protocol factory: each connection a `GuardedConnection` around
    one of aiohttp's request handlers (`handlers()`), at most `ingest.http_max_connections`
    of them served at once.

    A connection beyond the cap is answered 503 at once, and closed once drained (LINGER_S at
    most), so that a flood of them costs sockets for seconds, not for as long as it lasts.
    """

    def __init__(
        self, handlers: Callable[[], asyncio.Protocol], settings: IngestSettings, stats: HttpStats
    ) -> None:
        self.read_timeout_s = settings.http_read_timeout_s
        self._handlers = handlers
        self._max = settings.http_max_connections
        self._stats = stats
        self._served: set[GuardedConnection] = set()
        self._refused: set[GuardedConnection] = set()
        self._cap_reported_at: float | None = None

    async def listen(self, host: str, port: int, tls: ssl.SSLContext | None) -> asyncio.Server:
        loop = asyncio.get_running_loop()
        try:
            # A TLS handshake gets the time a request gets: asyncio's own allowance is a
            # minute, and a connection is only counted against the cap once it is through.
            return await loop.create_server(
                self,
                host,
                port,
                backlog=128,
                ssl=tls,
                ssl_handshake_timeout=self.read_timeout_s if tls is not None else None,
            )
        except OSError as exc:
            raise ListenFailed(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc

    def __call__(self) -> GuardedConnection:
        return GuardedConnection(self)

    def admit(self, connection: GuardedConnection) -> asyncio.Protocol | None:
        """aiohttp's handler for a new connection; None when it is over the cap (and has been
        answered 503)."""
        if len(self._served) < self._max:
            self._served.add(connection)
            return self._handlers()
        self._stats.add(refused=1)
        now = time.monotonic()
        if self._cap_reported_at is None or now - self._cap_reported_at >= STATS_INTERVAL_S:
            self._cap_reported_at = now
            log.warning(
                "%d connections open, the most allowed (ingest.http_max_connections): "
                "new ones are answered 503 until some close",
                self._max,
            )
        self._refused.add(connection)
        connection.finish(
            HTTPStatus.SERVICE_UNAVAILABLE,
            f"too many open connections ({self._max}, ingest.http_max_connections): "
            "try again shortly",
            {"Retry-After": str(RETRY_AFTER_S)},
        )
        return None

    def release(self, connection: GuardedConnection) -> None:
        self._served.discard(connection)
        self._refused.discard(connection)

    def timed_out(self, connection: GuardedConnection) -> None:
        self._stats.add(timed_out=1)
        log.debug(
            "request from %s did not arrive within %g s: closing its connection",
            connection.peer,
            self.read_timeout_s,
        )

    def close_all(self) -> None:
        """Abort what is still open at shutdown (refused connections still draining)."""
        for connection in [*self._served, *self._refused]:
            if connection.transport is not None:
                connection.transport.abort()


def _connection_of(request: web.BaseRequest) -> GuardedConnection | None:
    transport = request.transport
    protocol = transport.get_protocol() if transport is not None else None
    return protocol if isinstance(protocol, GuardedConnection) else None


def _body_arrived(request: web.BaseRequest) -> None:
    """The request's body is in: its read clock stops."""
    connection = _connection_of(request)
    if connection is not None:
        connection.body_read()


@web.middleware
async def _read_clock(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Tells the request's `GuardedConnection` where the request stands."""
    connection = _connection_of(request)
    if connection is None:
        return await handler(request)
    connection.request_started(body_complete=request.content.is_eof())
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        # The router's own answers (404, 405) are exceptions that aiohttp writes.
        _answered(request, connection, exc)
        raise
    except BaseException:
        connection.answered(body_complete=False)
        raise
    _answered(request, connection, response)
    return response


def _answered(
    request: web.BaseRequest, connection: GuardedConnection, response: web.StreamResponse
) -> None:
    body_complete = request.content.is_eof()
    if not body_complete:
        # aiohttp drains the rest for its lingering time; the connection then closes rather
        # than wait for what the client may still be sending.
        response.force_close()
    connection.answered(body_complete=body_complete)


class _ServerLog(logging.LoggerAdapter[logging.Logger]):
    """aiohttp's server log, with a request it could not parse (a header line too long, a
    broken chunk, TLS spoken to the HTTP port) told in one warning line rather than an error
    with a traceback: the fault is the client's, and a client must not be able to fill the
    log with tracebacks. aiohttp has answered it 400 already."""

    def exception(self, msg: object, *args: object, exc_info: Any = True, **kwargs: Any) -> None:
        if isinstance(exc_info, HttpProcessingError):
            reason = " ".join(exc_info.message.split())
            self.warning("%s: %s", str(msg) % args, reason[:200])
            return
        super().exception(msg, *args, exc_info=exc_info, **kwargs)


def _refusal_body(error: str) -> dict[str, Any]:
    return {
        "accepted": 0,
        "rejected": 0,
        "forbidden": 0,
        "failed": 0,
        "results": [],
        "error": error,
    }


def _raw_response(status: HTTPStatus, error: str, headers: dict[str, str]) -> bytes:
    """A whole HTTP/1.1 response, for answers written below aiohttp (no request handled)."""
    body = json.dumps(_refusal_body(error)).encode()
    lines = [
        f"HTTP/1.1 {status.value} {status.phrase}",
        "Content-Type: application/json; charset=utf-8",
        f"Content-Length: {len(body)}",
        "Connection: close",
        *(f"{name}: {value}" for name, value in headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class ReadingsApi:
    """The HTTP side: authentication, body limits, status codes; the work is `HttpIngest`'s."""

    def __init__(
        self, ingest: HttpIngest, settings: IngestSettings, probe: KafkaProbe, auth: GatewayAuth
    ) -> None:
        self._ingest = ingest
        self._settings = settings
        self._probe = probe
        self._auth = auth
        self._checks = ThreadPoolExecutor(CHECK_THREADS, thread_name_prefix="gateway-check")

    def close(self) -> None:
        self._checks.shutdown(wait=False, cancel_futures=True)

    def app(self) -> web.Application:
        app = web.Application(middlewares=[_read_clock])
        app.router.add_post(READINGS_PATH, self.post_readings)
        app.router.add_get(HEALTH_PATH, self.healthz)
        return app

    async def post_readings(self, request: web.Request) -> web.Response:
        try:
            gateway = await self._sender(request)
        except Refused as exc:
            if exc.status == 401:
                self._ingest.stats.add(unauthenticated=1)
            else:
                self._ingest.stats.add(revoked=1)
            log.warning(
                "refused %s from %s (%d): %s", SOURCE, request.remote, exc.status, exc.logged
            )
            challenges = CIMultiDict((hdrs.WWW_AUTHENTICATE, c) for c in CHALLENGES)
            return _refusal(exc.status, exc.error, challenges if exc.status == 401 else None)
        try:
            _check_content_type(request)
            body = await self._read_body(request)
            _body_arrived(request)
            items = parse_batch(body, self._settings.http_max_items)
        except BadBatch as exc:
            log.warning("refused %s from %s (%d): %s", SOURCE, request.remote, exc.status, exc)
            refusal = _refusal(exc.status, exc.error)
            if exc.close:
                refusal.force_close()
            return refusal
        except ConnectionError:
            # The client went away before its body was in, or its time ran out and the
            # connection answered 408 itself: there is nobody left to answer.
            return _refusal(408, "the request did not arrive whole")
        loop = asyncio.get_running_loop()
        work = functools.partial(self._ingest.ingest, items, gateway)
        batch = await loop.run_in_executor(None, work)
        return web.json_response(batch.as_json(), status=batch.status, headers=batch.headers)

    async def healthz(self, _request: web.Request) -> web.Response:
        problem = await self._probe.problem()
        if problem is None:
            return web.json_response({"status": "ok"})
        return web.json_response({"status": "unavailable", "error": problem}, status=503)

    async def _sender(self, request: web.Request) -> GatewaySettings | None:
        """The request's gateway (None: anonymous, where allowed); Refused otherwise."""
        header = request.headers.get(hdrs.AUTHORIZATION)
        if self._auth.remembered(header):
            return self._auth.authenticate(header)
        # A PBKDF2 check takes milliseconds of CPU: off the event loop.
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._checks, self._auth.authenticate, header)

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
        try:
            async for chunk in request.content.iter_chunked(64 * 1024):
                size += len(chunk)
                if size > limit:
                    raise too_large
                chunks.append(chunk)
        except web.RequestPayloadError as exc:
            # A broken chunked encoding, a Content-Encoding that does not decode, ...: nothing
            # more of this body can be read. Marked over, so that aiohttp does not try to drain
            # it after the answer (which would only raise the same error again).
            request.content.feed_eof()
            problem = str(exc).split("message:", 1)[-1].strip()
            raise BadBatch(400, f"body is malformed: {problem}", close=True) from exc
        return b"".join(chunks)


def _check_content_type(request: web.BaseRequest) -> None:
    """BadBatch 415 unless the body is declared JSON; a request that declares nothing is read
    as JSON (small devices often send no Content-Type)."""
    raw = request.headers.get(hdrs.CONTENT_TYPE, "")
    if not raw.strip():
        return
    media = request.content_type.lower()
    if media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    ):
        return
    shown = raw if len(raw) <= 80 else raw[:77] + "..."
    raise BadBatch(
        415, f"Content-Type {shown!r} is not JSON: send application/json (or application/*+json)"
    )


def _refusal(status: int, error: str, headers: LooseHeaders | None = None) -> web.Response:
    return web.json_response(_refusal_body(error), status=status, headers=headers)


def run_http_ingest(
    settings: Settings,
    producer: KafkaProducer,
    topics: Topics,
    stop: threading.Event,
    *,
    host: str,
    port: int,
    alive: Callable[[], None] = lambda: None,
) -> HttpCounts:
    """Serve until `stop` is set; returns the counts. ListenFailed if the port is taken or
    the TLS certificate or key cannot be used.

    `alive` is called about five times a second while the event loop turns."""
    ingest = HttpIngest(settings, producer, topics)
    tls = tls_context(settings.ingest)
    auth = GatewayAuth(settings.gateways, allow_anonymous=settings.ingest.http_allow_anonymous)
    for warning in door_warnings(settings.ingest, host, auth):
        log.warning("HTTP ingest: %s", warning)
    api = ReadingsApi(ingest, settings.ingest, KafkaProbe(settings.kafka), auth)
    try:
        asyncio.run(_serve(api, settings.ingest, ingest.stats, stop, host, port, alive, tls))
    finally:
        api.close()
    return ingest.stats.snapshot()


async def _serve(
    api: ReadingsApi,
    settings: IngestSettings,
    stats: HttpStats,
    stop: threading.Event,
    host: str,
    port: int,
    alive: Callable[[], None],
    tls: ssl.SSLContext | None,
) -> None:
    # No access log: a busy gateway posts every few seconds; the counts below say enough, and
    # every rejected item is logged with its dead letter. aiohttp's own keep-alive timer is
    # left at its default (an hour): GuardedConnection closes idle connections sooner.
    runner = web.AppRunner(
        api.app(),
        access_log=None,
        shutdown_timeout=SHUTDOWN_TIMEOUT_S,
        lingering_time=LINGER_S,
        logger=_ServerLog(logging.getLogger("aiohttp.server"), {}),
    )
    await runner.setup()
    assert runner.server is not None
    connections = ConnectionGuard(runner.server, settings, stats)
    server: asyncio.Server | None = None
    try:
        server = await connections.listen(host, port, tls)
        log.info(
            "HTTP ingest listening on %s://%s:%d (POST %s from %s, GET %s)",
            "https" if tls is not None else "http",
            host,
            port,
            READINGS_PATH,
            "anyone (ingest.http_allow_anonymous)"
            if settings.http_allow_anonymous
            else "registered gateways only",
            HEALTH_PATH,
        )
        reported = stats.snapshot()
        next_report = time.monotonic() + STATS_INTERVAL_S
        while not stop.is_set():
            alive()
            await asyncio.sleep(0.2)
            if time.monotonic() >= next_report:
                next_report += STATS_INTERVAL_S
                now = stats.snapshot()
                if now != reported:
                    log.info("HTTP ingest, last minute: %s", now - reported)
                    reported = now
    finally:
        if server is not None:
            server.close()
        # Closes idle connections, then waits for requests still waiting on Kafka.
        await runner.cleanup()
        connections.close_all()
    log.info("HTTP ingest stopped: %s", stats.snapshot())
