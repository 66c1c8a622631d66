from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiohttp.test_utils import make_mocked_request
from kafka.errors import KafkaTimeoutError, MessageSizeTooLargeError

import ingest.http as http
from ingest.http import (
    CREDENTIALS_HELP,
    BadBatch,
    BatchResult,
    ConnectionGuard,
    GatewayAuth,
    GuardedConnection,
    HttpIngest,
    HttpStats,
    ItemResult,
    ItemStatus,
    ListenFailed,
    Refused,
    _check_content_type,
    door_warnings,
    parse_authorization,
    parse_batch,
    tls_context,
)
from pantau.codec import decode_as
from pantau.credentials import hash_secret
from pantau.messages import DeadLetter, SensorReading
from pantau.poison import MAX_ORIGINAL_BYTES
from pantau.settings import (
    GatewaySettings,
    Settings,
    SettingsError,
    load_settings,
    settings_from_mapping,
)
from pantau.topics import Topics

NOW = datetime(2026, 11, 23, 3, 0, 0, tzinfo=UTC)
OK_TIME = "2026-11-23T02:59:00Z"
READINGS = "t.sensors.readings.v1"
DEAD_LETTERS = "t.sensors.readings.dlq.v1"
RIVER_SECRET = "R1ver-Gateway_Secret-0123456789"
DEV_SECRET = "Development-Secret.With.Dots"
STOLEN_SECRET = "St0len-Gateway_Secret-98765432"


class SentFuture:
    """What KafkaProducer.send returns, already settled."""

    def __init__(self, error: Exception | None) -> None:
        self._error = error

    def get(self, timeout: float | None = None) -> None:
        if self._error is not None:
            raise self._error


Record = tuple[str, bytes | None, bytes]


class FakeProducer:
    """Kafka as the ingest sees it; `refuse(record)` picks the records whose confirmation
    fails, `blocked(record)` the sends that raise (the producer could not take the record)."""

    def __init__(self) -> None:
        self.sent: list[Record] = []
        self.refuse: Callable[[Record], Exception | None] = lambda _record: None
        self.blocked: Callable[[Record], Exception | None] = lambda _record: None

    def send(self, topic: str, key: bytes | None = None, value: bytes = b"") -> SentFuture:
        record = (topic, key, value)
        error = self.blocked(record)
        if error is not None:
            raise error
        self.sent.append(record)
        return SentFuture(self.refuse(record))

    def readings(self) -> list[SensorReading]:
        return [decode_as(v, SensorReading) for t, _k, v in self.sent if t == READINGS]

    def letters(self) -> list[DeadLetter]:
        return [decode_as(v, DeadLetter) for t, _k, v in self.sent if t == DEAD_LETTERS]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return settings_from_mapping(
        {
            "kafka": {"topic_prefix": "t."},
            "sensors": [
                {"id": "wl-01", "type": "water_level", "units": {"waterLevel": "cm"}},
                {"id": "aq-01", "type": "air_quality"},
            ],
            "gateways": [
                # Few iterations: the tests check many secrets.
                {
                    "id": "river-gw",
                    "sensors": ["wl-01"],
                    "secret_hash": hash_secret(RIVER_SECRET, iterations=1000),
                },
                {"id": "dev-gw", "sensors": ["wl-01", "aq-01"], "secret": DEV_SECRET},
                {
                    "id": "stolen",
                    "sensors": ["aq-01"],
                    "secret_hash": hash_secret(STOLEN_SECRET, iterations=1000),
                    "revoked": True,
                },
            ],
        },
        tmp_path,
    )


def gateway(settings: Settings, gateway_id: str) -> GatewaySettings:
    return next(g for g in settings.gateways if g.id == gateway_id)


def ingest_with(settings: Settings) -> tuple[HttpIngest, FakeProducer]:
    producer = FakeProducer()
    return HttpIngest(settings, producer, Topics(settings.kafka), clock=lambda: NOW), producer  # type: ignore[arg-type]


def item(sensor_id: str = "aq-01", **fields: object) -> dict[str, object]:
    return {"sensorId": sensor_id, "dateObserved": OK_TIME, **fields}


def statuses(body: dict[str, object]) -> list[object]:
    results = body["results"]
    assert isinstance(results, list)
    return [r["status"] for r in results]


def of_sensor(sensor_id: str) -> Callable[[Record], Exception | None]:
    def refuse(record: Record) -> Exception | None:
        if record[1] == sensor_id.encode():
            return KafkaTimeoutError(f"Batch for {record[0]}-0 has expired")
        return None

    return refuse


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        (b"<xml/>", 400, "body is not JSON"),
        (b'"readings"', 400, "body must be a JSON array of readings, got str"),
        (b'{"data": []}', 400, "got keys 'data'"),
        (b'{"readings": [], "site": "x"}', 400, "got keys 'readings', 'site'"),
        (b'{"readings": 5}', 400, "body must be a JSON array of readings, got int"),
        (b"[]", 400, "body holds no readings"),
        (json.dumps([{}] * 4).encode(), 413, "4 readings in one request; the limit is 3"),
        (b"[" * 10_000 + b"]" * 10_000, 400, "body is not JSON: nested deeper than 32 levels"),
        (
            b'[{"pm25": ' + b"9" * 5000 + b"}]",
            400,
            "body is not JSON: an integer of more than 4300 digits",
        ),
        (b'[{"sensorId": "aq-\xff"}]', 400, "body is not JSON: not valid UTF-8"),
        (bytes(range(256)) * 4, 400, "body is not JSON"),
        (b'[{"sensorId": "aq-01\\u0000"}]', 400, "body: text contains a NUL character"),
    ],
)
def test_a_body_that_is_not_a_batch_is_refused_whole(body: bytes, status: int, error: str) -> None:
    with pytest.raises(BadBatch) as caught:
        parse_batch(body, max_items=3)
    assert caught.value.status == status
    assert error in caught.value.error


@pytest.mark.parametrize(
    "body", [b'[{"sensorId": "aq-01"}, 7]', b'{"readings": [{"sensorId": "aq-01"}, 7]}']
)
def test_both_batch_shapes_give_their_items(body: bytes) -> None:
    assert parse_batch(body, max_items=3) == [{"sensorId": "aq-01"}, 7]


def test_junk_nested_inside_one_item_leaves_the_batch_usable(settings: Settings) -> None:
    nested: object = 1
    for _ in range(12):
        nested = [nested]
    body = json.dumps([item(seq=1, pm25=3), item(seq=2, pm25=nested)]).encode()
    ingest, _producer = ingest_with(settings)
    batch = ingest.ingest(parse_batch(body, max_items=3))
    assert statuses(batch.as_json()) == ["accepted", "rejected"]
    error = batch.items[1].error
    assert error is not None and error.startswith("sensor aq-01: pm25 must be a number, got [[[[")


@pytest.mark.parametrize(
    ("content_type", "refused"),
    [
        ("application/json", False),
        ("Application/JSON; charset=utf-8", False),
        ("application/vnd.pantau.readings+json", False),
        (None, False),
        ("text/plain", True),
        ("application/x-www-form-urlencoded", True),
        ("application/jsonl", True),
        ("text/json+xml", True),
    ],
)
def test_only_a_body_declared_json_or_undeclared_is_read(
    content_type: str | None, refused: bool
) -> None:
    headers = {"Content-Type": content_type} if content_type is not None else {}
    request = make_mocked_request("POST", "/v1/readings", headers=headers)
    if not refused:
        _check_content_type(request)
        return
    with pytest.raises(BadBatch) as caught:
        _check_content_type(request)
    assert caught.value.status == 415
    assert f"Content-Type {content_type!r} is not JSON" in caught.value.error


def test_each_item_is_judged_on_its_own(settings: Settings) -> None:
    ingest, producer = ingest_with(settings)
    batch = ingest.ingest(
        [
            item("wl-01", seq=1, waterLevel=231),
            item("ghost", seq=1, pm25=3),
            item("aq-01", seq=1, pm25=3),
            item("aq-01", seq=1, pm25=4),
            [1, 2],
        ]
    )
    assert (batch.status, batch.accepted, batch.rejected, batch.failed) == (207, 2, 3, 0)
    body = batch.as_json()
    assert statuses(body) == ["accepted", "rejected", "accepted", "rejected", "rejected"]
    assert body["results"][1]["error"] == "unknown sensor 'ghost': not in the sensor registry"
    assert body["results"][3]["error"] == "duplicate seq 1 for sensor aq-01 (already ingested)"
    assert body["results"][4]["error"] == "payload must be a JSON object, got list"

    readings = producer.readings()
    assert [r.values for r in readings] == [{"waterLevel": 2.31}, {"pm25": 3.0}]
    assert [str(r.id) for r in readings] == [body["results"][0]["id"], body["results"][2]["id"]]
    keys = [k for t, k, _v in producer.sent if t == DEAD_LETTERS]
    assert keys == [b"ghost", b"aq-01", None]
    ghost = producer.letters()[0]
    assert ghost.source_kind == "http" and ghost.stage == "ingest.http"
    assert json.loads(ghost.original) == item("ghost", seq=1, pm25=3)


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        (
            {"pm25": 10**399},
            "sensor aq-01: pm25 = an integer of 400 digits is outside the plausible range",
        ),
        (
            {"seq": 10**399, "pm25": 3},
            "sensor aq-01: seq an integer of 400 digits does not fit a 64-bit counter",
        ),
        (
            {"dateObserved": "0001-01-01T00:00:00Z", "pm25": 3},
            "dateObserved '0001-01-01T00:00:00Z' is before 2015-01-01",
        ),
        (
            {"dateObserved": "0001-01-01T00:00:00+07:00", "pm25": 3},
            "dateObserved '0001-01-01T00:00:00+07:00' is before 2015-01-01",
        ),
        ({"pm25": float("nan")}, "sensor aq-01: pm25 = nan is outside the plausible range"),
        ({"pm25": float("inf")}, "sensor aq-01: pm25 = inf is outside the plausible range"),
        ({"sensorId": 5, "pm25": 3}, "sensorId must be a non-empty string, got 5"),
        ({"dateObserved": 5, "pm25": 3}, "dateObserved must be an ISO 8601 string"),
        ({"pm25": "3"}, "sensor aq-01: pm25 must be a number, got '3'"),
        ({"pm25": 3, "unitCode": ["GQ"]}, "sensor aq-01: unitCode must be an object"),
    ],
)
def test_a_hostile_item_is_rejected_with_its_reason(
    settings: Settings, fields: dict[str, object], error: str
) -> None:
    ingest, producer = ingest_with(settings)
    batch = ingest.ingest([item(**fields), item(seq=7, pm25=3)])
    assert (batch.status, statuses(batch.as_json())) == (207, ["rejected", "accepted"])
    reason = batch.items[0].error
    assert reason is not None and error in reason
    assert [letter.error for letter in producer.letters()] == [reason]


def test_an_item_larger_than_a_reading_may_be_is_rejected_before_validation(
    settings: Settings,
) -> None:
    ingest, producer = ingest_with(settings)
    huge = item(seq=1, pm25=3, note="x" * (10 * 1024 * 1024))
    size = len(json.dumps(huge).encode())
    batch = ingest.ingest([huge, item(seq=2, pm25=4)])
    assert statuses(batch.as_json()) == ["rejected", "accepted"]
    assert batch.items[0].error == (
        f"item is {size} bytes as JSON; a reading may have at most 262144 "
        "(ingest.max_reading_bytes)"
    )
    (letter,) = producer.letters()
    assert letter.original == json.dumps(huge, ensure_ascii=False).encode()[:MAX_ORIGINAL_BYTES]
    assert f"[original: {size} bytes, the first {MAX_ORIGINAL_BYTES} kept]" in letter.error


def test_whatever_an_item_provokes_is_a_rejection_not_a_crash(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(data: object, **_kwargs: object) -> SensorReading:
        if isinstance(data, dict) and data.get("seq") == 1:
            raise ZeroDivisionError("float division by zero")
        return real(data, **_kwargs)  # type: ignore[arg-type]

    real = http.validate_reading
    monkeypatch.setattr(http, "validate_reading", broken)
    ingest, producer = ingest_with(settings)
    batch = ingest.ingest([item(seq=1, pm25=3), item(seq=2, pm25=3)])
    assert statuses(batch.as_json()) == ["rejected", "accepted"]
    assert batch.items[0].error == "ZeroDivisionError: float division by zero"
    assert [letter.error for letter in producer.letters()] == [batch.items[0].error]


@pytest.mark.parametrize(
    ("items", "status"),
    [
        ([item(seq=1, pm25=3), item(seq=2, pm25=3)], 200),
        ([item(seq=1, pm25=3), item(seq=2, pm25=-3)], 207),
        ([item(seq=1, pm25=-3), item("ghost", seq=2, pm25=3)], 400),
        ([item(seq=1, pm25=3), item("wl-01", seq=2, waterLevel=100)], 503),
        ([item(seq=1, pm25=-3), item("wl-01", seq=2, waterLevel=100)], 503),
    ],
)
def test_status_says_whether_all_some_or_none_were_accepted_or_any_must_be_sent_again(
    settings: Settings, items: list[object], status: int
) -> None:
    ingest, producer = ingest_with(settings)
    producer.refuse = of_sensor("wl-01")
    batch = ingest.ingest(items)
    assert batch.status == status
    assert batch.headers == ({"Retry-After": "5"} if status == 503 else {})


def test_each_item_is_answered_from_its_own_confirmation(settings: Settings) -> None:
    ingest, producer = ingest_with(settings)
    producer.refuse = of_sensor("wl-01")
    items = [
        item(seq=1, pm25=3),
        item("wl-01", seq=5, waterLevel=120),
        item("ghost", seq=1, pm25=3),
        item(seq=2, pm25=4),
    ]
    batch = ingest.ingest(items)
    body = batch.as_json()
    assert batch.status == 503
    assert (body["accepted"], body["rejected"], body["failed"]) == (2, 1, 1)
    assert statuses(body) == ["accepted", "failed", "rejected", "accepted"]
    assert body["results"][1]["error"] == (
        "Kafka did not confirm it (KafkaTimeoutError: Batch for t.sensors.readings.v1-0 has "
        "expired): send it again"
    )
    assert body["error"] == (
        "Kafka did not confirm 1 of 4 items: send those marked failed again (the others are stored)"
    )
    assert ingest.stats.snapshot().failed == 1

    # The sender resends what failed, and, wrongly, what was stored: only the failed one's seq
    # was released.
    producer.refuse = lambda _record: None
    again = ingest.ingest([items[1], items[0]])
    assert statuses(again.as_json()) == ["accepted", "rejected"]
    assert again.items[1].error == "duplicate seq 1 for sensor aq-01 (already ingested)"
    assert [r.sensor_id for r in producer.readings()] == ["aq-01", "wl-01", "aq-01", "wl-01"]


def test_an_item_whose_dead_letter_kafka_refused_is_failed_with_its_reason(
    settings: Settings,
) -> None:
    ingest, producer = ingest_with(settings)
    producer.refuse = lambda record: (
        MessageSizeTooLargeError("The message is too large") if record[0] == DEAD_LETTERS else None
    )
    batch = ingest.ingest([item("ghost", seq=1, pm25=3), item(seq=1, pm25=3)])
    assert (batch.status, statuses(batch.as_json())) == (503, ["failed", "accepted"])
    assert batch.items[0].error == (
        "Kafka did not confirm the dead letter of this rejected item ([Error 10] "
        "MessageSizeTooLargeError: The message is too large): send it again; it was rejected "
        "because: unknown sensor 'ghost': not in the sensor registry"
    )


def test_once_the_producer_cannot_take_a_record_the_rest_of_the_batch_is_not_tried(
    settings: Settings,
) -> None:
    ingest, producer = ingest_with(settings)
    producer.blocked = lambda record: (
        KafkaTimeoutError("Failed to update metadata after 10.0 secs.")
        if record[1] == b"wl-01"
        else None
    )
    batch = ingest.ingest(
        [
            item(seq=1, pm25=3),
            item("wl-01", seq=5, waterLevel=120),
            item(seq=2, pm25=3),
            item("ghost", seq=1, pm25=3),
        ]
    )
    assert statuses(batch.as_json()) == ["accepted", "failed", "failed", "failed"]
    assert len(producer.sent) == 1
    assert all("Failed to update metadata" in (r.error or "") for r in batch.items[1:])

    # Nothing of the failed ones was claimed: all pass when sent again.
    producer.blocked = lambda _record: None
    again = ingest.ingest([item("wl-01", seq=5, waterLevel=120), item(seq=2, pm25=3)])
    assert again.status == 200


def test_a_registry_unit_that_cannot_work_stops_start_up(tmp_path: Path) -> None:
    settings = settings_from_mapping(
        {"sensors": [{"id": "wl-01", "type": "water_level", "units": {"waterLevel": "feet"}}]},
        tmp_path,
    )
    with pytest.raises(SettingsError) as caught:
        ingest_with(settings)
    assert "sensor wl-01: units.waterLevel: unit 'feet' is unknown" in str(caught.value)


# --------------------------------------------------------------------------- who is sending


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("", None),
        ("   ", None),
        (f"Bearer river-gw.{RIVER_SECRET}", ("river-gw", RIVER_SECRET)),
        # The id ends at the first dot: a secret may hold more.
        ("bearer dev-gw.a.b.c", ("dev-gw", "a.b.c")),
        (basic("river-gw", RIVER_SECRET), ("river-gw", RIVER_SECRET)),
        (basic("dev-gw", "pass:with:colons"), ("dev-gw", "pass:with:colons")),
        (
            "BASIC " + base64.b64encode(b"dev-gw:r\xc3\xa9sum\xc3\xa9").decode(),
            ("dev-gw", "résumé"),
        ),
    ],
)
def test_credentials_are_read_from_bearer_and_basic(
    header: str | None, expected: tuple[str, str] | None
) -> None:
    credentials = parse_authorization(header)
    if expected is None:
        assert credentials is None
        return
    assert credentials is not None
    assert (credentials.gateway_id, credentials.secret) == expected
    # Shown nowhere by accident.
    assert credentials.secret not in repr(credentials)


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        ("Bearer s3kr1t-shared-token", "a bearer token is <gateway id>.<secret>"),
        ("Bearer .s3kr1t", "the gateway id or the secret is empty"),
        ("Bearer river-gw.", "the gateway id or the secret is empty"),
        ("Bearer rivér-gw.s3kr1t", "the bearer token is not ASCII"),
        ("Basic !!not base64!!", "Basic credentials are not base64 of UTF-8 text"),
        (
            "Basic " + base64.b64encode(b"river-gw:\xff\xfe").decode(),
            "Basic credentials are not base64 of UTF-8 text",
        ),
        (
            "Basic " + base64.b64encode(b"river-gw").decode(),
            "Basic credentials are <gateway id>:<secret>",
        ),
        ("Digest username=river-gw", "the scheme is not Bearer or Basic"),
        # A bare secret: not quoted back.
        (RIVER_SECRET, "the scheme is not Bearer or Basic"),
    ],
)
def test_an_authorization_that_holds_no_credentials_is_refused_401(
    header: str, reason: str
) -> None:
    with pytest.raises(Refused) as caught:
        parse_authorization(header)
    assert caught.value.status == 401
    assert caught.value.error == f"{reason}: {CREDENTIALS_HELP}"
    assert caught.value.logged == f"malformed Authorization: {reason}"


def auth_of(settings: Settings, *, allow_anonymous: bool = False) -> GatewayAuth:
    return GatewayAuth(settings.gateways, allow_anonymous=allow_anonymous)


@pytest.mark.parametrize(
    ("header", "sender"),
    [
        (f"Bearer river-gw.{RIVER_SECRET}", "river-gw"),
        (basic("river-gw", RIVER_SECRET), "river-gw"),
        # A development secret, given in plain text rather than as a hash.
        (f"Bearer dev-gw.{DEV_SECRET}", "dev-gw"),
        (basic("dev-gw", DEV_SECRET), "dev-gw"),
    ],
)
def test_a_gateway_is_known_by_its_secret(settings: Settings, header: str, sender: str) -> None:
    found = auth_of(settings).authenticate(header)
    assert found is not None and found.id == sender


@pytest.mark.parametrize(
    ("header", "status", "error", "logged"),
    [
        (
            None,
            401,
            f"credentials required: {CREDENTIALS_HELP}",
            "no credentials",
        ),
        (
            f"Bearer river-gw.{DEV_SECRET}",
            401,
            f"unknown gateway or wrong secret: {CREDENTIALS_HELP}",
            "wrong secret for gateway 'river-gw'",
        ),
        (
            basic("dev-gw", RIVER_SECRET),
            401,
            f"unknown gateway or wrong secret: {CREDENTIALS_HELP}",
            "wrong secret for gateway 'dev-gw'",
        ),
        (
            f"Bearer nobody.{RIVER_SECRET}",
            401,
            f"unknown gateway or wrong secret: {CREDENTIALS_HELP}",
            "unknown gateway 'nobody'",
        ),
        (
            f"Bearer {'x' * 200}.{RIVER_SECRET}",
            401,
            f"unknown gateway or wrong secret: {CREDENTIALS_HELP}",
            "unknown gateway (not a gateway id, 200 characters, not shown)",
        ),
        # User name and password swapped: the secret is not shown as the id.
        (
            basic(RIVER_SECRET, "river-gw"),
            401,
            f"unknown gateway or wrong secret: {CREDENTIALS_HELP}",
            f"unknown gateway (not a gateway id, {len(RIVER_SECRET)} characters, not shown)",
        ),
        # Revoked: told so only with its right secret; a wrong one is just wrong.
        (
            f"Bearer stolen.{STOLEN_SECRET}",
            403,
            "gateway stolen is revoked: it may send no readings",
            "gateway stolen is revoked",
        ),
        (
            basic("stolen", STOLEN_SECRET),
            403,
            "gateway stolen is revoked: it may send no readings",
            "gateway stolen is revoked",
        ),
        (
            f"Bearer stolen.{RIVER_SECRET}",
            401,
            f"unknown gateway or wrong secret: {CREDENTIALS_HELP}",
            "wrong secret for gateway 'stolen'",
        ),
    ],
)
def test_missing_wrong_and_revoked_credentials_are_refused_without_the_secret(
    settings: Settings, header: str | None, status: int, error: str, logged: str
) -> None:
    with pytest.raises(Refused) as caught:
        auth_of(settings).authenticate(header)
    assert (caught.value.status, caught.value.error, caught.value.logged) == (
        status,
        error,
        logged,
    )
    for secret in (RIVER_SECRET, DEV_SECRET, STOLEN_SECRET):
        assert secret not in f"{caught.value.error} {caught.value.logged} {caught.value}"


def test_without_credentials_only_where_anonymity_is_allowed(settings: Settings) -> None:
    with pytest.raises(Refused):
        auth_of(settings).authenticate(None)
    auth = auth_of(settings, allow_anonymous=True)
    assert auth.authenticate(None) is None
    # Credentials given are still checked, and name the sender.
    with pytest.raises(Refused) as caught:
        auth.authenticate(f"Bearer river-gw.{DEV_SECRET}")
    assert caught.value.status == 401
    found = auth.authenticate(f"Bearer river-gw.{RIVER_SECRET}")
    assert found is not None and found.id == "river-gw"


def test_a_secret_is_checked_once_then_remembered(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    checked: list[str] = []
    real = http.verify_secret

    def counting(secret: str, hashed: str) -> bool:
        checked.append(hashed)
        return real(secret, hashed)

    monkeypatch.setattr(http, "verify_secret", counting)
    auth = auth_of(settings)
    right = f"Bearer river-gw.{RIVER_SECRET}"
    assert not auth.remembered(right)
    for header in [right, right, right, basic("river-gw", RIVER_SECRET)]:
        found = auth.authenticate(header)
        assert found is not None and found.id == "river-gw"
    assert len(checked) == 1
    assert auth.remembered(right) and auth.remembered(basic("river-gw", RIVER_SECRET))

    # A device retrying with a replaced secret costs one check too.
    wrong = f"Bearer river-gw.{DEV_SECRET}"
    for _ in range(3):
        with pytest.raises(Refused):
            auth.authenticate(wrong)
    assert len(checked) == 2 and auth.remembered(wrong)

    # An unknown gateway costs a check all the same: the time a refusal takes does not tell
    # which ids are registered.
    with pytest.raises(Refused):
        auth.authenticate(f"Bearer nobody.{RIVER_SECRET}")
    assert len(checked) == 3


def test_wrong_secrets_remembered_are_bounded_and_right_ones_stay(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(http, "WRONG_REMEMBERED", 2)
    auth = auth_of(settings)
    right = f"Bearer river-gw.{RIVER_SECRET}"
    auth.authenticate(right)
    guesses = [f"Bearer river-gw.guess-{n}" for n in range(3)]
    for guess in guesses:
        with pytest.raises(Refused):
            auth.authenticate(guess)
    assert [auth.remembered(guess) for guess in guesses] == [False, True, True]
    assert auth.remembered(right)


def test_a_gateway_sends_only_for_its_own_sensors(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    ingest, producer = ingest_with(settings)
    river = gateway(settings, "river-gw")
    with caplog.at_level(logging.WARNING, logger="ingest.http"):
        batch = ingest.ingest(
            [
                item("wl-01", seq=1, waterLevel=231),
                item("aq-01", seq=1, pm25=3),
                item("ghost", seq=1, pm25=3),
            ],
            river,
        )
    body = batch.as_json()
    assert (batch.status, statuses(body)) == (207, ["accepted", "forbidden", "rejected"])
    assert (body["accepted"], body["rejected"], body["forbidden"], body["failed"]) == (1, 1, 1, 0)
    assert body["results"][1]["error"] == (
        "gateway river-gw may not send readings for sensor aq-01: it is not one of the "
        "gateway's sensors in the registry"
    )
    # A sensor not in the registry is nobody's: rejected, with its dead letter.
    assert body["results"][2]["error"] == "unknown sensor 'ghost': not in the sensor registry"
    assert [(r.sensor_id, r.gateway) for r in producer.readings()] == [("wl-01", "river-gw")]
    assert [letter.source_key for letter in producer.letters()] == ["ghost"]
    assert ingest.stats.snapshot().forbidden == 1
    assert (
        "1 of 3 items of a POST /v1/readings batch from gateway river-gw forbidden, not "
        "stored: sensors aq-01 are not its own" in caplog.messages
    )

    # Only forbidden: 403, and nothing sent at all.
    sent = len(producer.sent)
    only = ingest.ingest([item("aq-01", seq=2, pm25=3)], river)
    assert (only.status, statuses(only.as_json())) == (403, ["forbidden"])
    assert len(producer.sent) == sent

    # The forbidden item's seq was not taken: from the gateway that owns the sensor it goes in.
    again = ingest.ingest([item("aq-01", seq=1, pm25=3)], gateway(settings, "dev-gw"))
    assert again.status == 200
    assert producer.readings()[-1].gateway == "dev-gw"


def test_an_anonymous_reading_names_no_gateway(settings: Settings) -> None:
    ingest, producer = ingest_with(settings)
    assert ingest.ingest([item("aq-01", seq=1, pm25=3)]).status == 200
    assert [r.gateway for r in producer.readings()] == [None]


def results(*kinds: ItemStatus) -> BatchResult:
    return BatchResult(tuple(ItemResult(i, kind) for i, kind in enumerate(kinds)))


@pytest.mark.parametrize(
    ("kinds", "status"),
    [
        (("accepted", "accepted"), 200),
        (("rejected", "rejected"), 400),
        (("forbidden", "forbidden"), 403),
        (("accepted", "forbidden"), 207),
        (("rejected", "forbidden"), 207),
        (("accepted", "rejected", "forbidden"), 207),
        (("forbidden", "failed"), 503),
    ],
)
def test_a_batch_status_says_what_became_of_its_items(
    kinds: tuple[ItemStatus, ...], status: int
) -> None:
    assert results(*kinds).status == status


def test_start_up_warns_of_open_doors_and_of_a_door_nobody_can_pass(
    settings: Settings, tmp_path: Path
) -> None:
    ingest = settings.ingest
    assert door_warnings(ingest, "127.0.0.1", auth_of(settings)) == []
    assert door_warnings(ingest, "::1", auth_of(settings)) == []
    assert door_warnings(ingest, "localhost", auth_of(settings)) == []

    (clear,) = door_warnings(ingest, "0.0.0.0", auth_of(settings))  # noqa: S104
    assert clear == (
        "listening on 0.0.0.0 without TLS: gateways' secrets and readings cross the network "
        "in clear text (set ingest.http_tls_cert and ingest.http_tls_key)"
    )
    assert "without TLS" in door_warnings(ingest, "192.0.2.10", auth_of(settings))[0]
    with_tls = ingest.model_copy(
        update={"http_tls_cert": tmp_path / "c.pem", "http_tls_key": tmp_path / "k.pem"}
    )
    assert door_warnings(with_tls, "0.0.0.0", auth_of(settings)) == []  # noqa: S104

    anonymous = ingest.model_copy(update={"http_allow_anonymous": True})
    (open_door,) = door_warnings(anonymous, "127.0.0.1", auth_of(settings))
    assert open_door.startswith("ingest.http_allow_anonymous is on: anyone who reaches")

    only_revoked = GatewayAuth([gateway(settings, "stolen")], allow_anonymous=False)
    for nobody in (GatewayAuth([], allow_anonymous=False), only_revoked):
        assert door_warnings(ingest, "127.0.0.1", nobody) == [
            "no gateway can log in (none in the registry has a secret_hash or secret and is "
            "not revoked): every POST /v1/readings will be refused 401"
        ]


def test_tls_needs_both_a_certificate_and_its_key(tmp_path: Path) -> None:
    config = tmp_path / "pantau.yaml"
    config.write_text("ingest:\n  http_tls_cert: tls/server.crt\n")
    with pytest.raises(SettingsError) as caught:
        load_settings(config, {})
    assert "ingest.http_tls_cert and ingest.http_tls_key go together" in str(caught.value)

    config.write_text("ingest:\n  http_tls_cert: tls/server.crt\n  http_tls_key: tls/server.key\n")
    ingest = load_settings(config, {}).ingest
    assert ingest.http_tls_key == tmp_path / "tls" / "server.key"
    # Not there: start-up says which file.
    with pytest.raises(ListenFailed) as missing:
        tls_context(ingest)
    assert (
        str(missing.value) == f"ingest.http_tls_cert: {tmp_path / 'tls/server.crt'} is not a file"
    )

    (tmp_path / "tls").mkdir()
    (tmp_path / "tls" / "server.crt").write_text("not a certificate\n")
    (tmp_path / "tls" / "server.key").write_text("not a key\n")
    with pytest.raises(ListenFailed) as unusable:
        tls_context(ingest)
    assert str(unusable.value).startswith(
        f"cannot serve HTTPS with ingest.http_tls_cert {tmp_path / 'tls/server.crt'}"
    )
    assert tls_context(settings_from_mapping({}, tmp_path).ingest) is None


def test_the_shared_token_is_gone_and_says_so(tmp_path: Path) -> None:
    config = tmp_path / "pantau.yaml"
    config.write_text("ingest:\n  http_token: s3kr1t\n")
    with pytest.raises(SettingsError) as caught:
        load_settings(config, {})
    assert "ingest.http_token: unknown key 'http_token'" in str(caught.value)
    # The listener stays on this machine unless told otherwise.
    assert settings_from_mapping({}, tmp_path).ingest.http_host == "127.0.0.1"


class FakeTransport(asyncio.Transport):
    """A client socket as the connection guard sees it: what was written, how it ended."""

    def __init__(self, unsent: int = 0) -> None:
        super().__init__()
        self.protocol: asyncio.Protocol | None = None
        self.written = b""
        self.eof_written = False
        self.ended: str | None = None
        self.unsent = unsent

    def get_protocol(self) -> asyncio.BaseProtocol:
        assert self.protocol is not None
        return self.protocol

    def get_extra_info(self, name: str, default: object = None) -> object:
        return ("192.0.2.7", 40000) if name == "peername" else default

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += bytes(data)

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.eof_written = True

    def is_closing(self) -> bool:
        return self.ended is not None

    def is_reading(self) -> bool:
        return True

    def get_write_buffer_size(self) -> int:
        return self.unsent

    def close(self) -> None:
        self._end("closed")

    def abort(self) -> None:
        self._end("aborted")

    def _end(self, how: str) -> None:
        if self.ended is None:
            self.ended = how
            assert self.protocol is not None
            asyncio.get_running_loop().call_soon(self.protocol.connection_lost, None)


class FakeHandler(asyncio.Protocol):
    """aiohttp's request handler, as far as the guard can tell."""

    def __init__(self) -> None:
        self.received = b""
        self.lost = False

    def data_received(self, data: bytes) -> None:
        self.received += data

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True


READ_TIMEOUT_S = 0.2


@pytest.fixture
def guard(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> ConnectionGuard:
    monkeypatch.setattr(http, "KEEPALIVE_S", 0.2)
    monkeypatch.setattr(http, "LINGER_S", 0.1)
    settings = settings_from_mapping(
        {"ingest": {"http_read_timeout_s": READ_TIMEOUT_S, "http_max_connections": 2}}, tmp_path
    )
    return ConnectionGuard(FakeHandler, settings.ingest, HttpStats())


def connect(guard: ConnectionGuard, unsent: int = 0) -> tuple[GuardedConnection, FakeTransport]:
    connection = guard()
    transport = FakeTransport(unsent)
    transport.protocol = connection
    connection.connection_made(transport)
    return connection, transport


def handler_of(connection: GuardedConnection) -> FakeHandler:
    handler = connection._inner
    assert isinstance(handler, FakeHandler)
    return handler


def status_line(transport: FakeTransport) -> bytes:
    return transport.written.split(b"\r\n", 1)[0]


def test_a_request_that_does_not_arrive_in_time_is_answered_408_and_closed(
    guard: ConnectionGuard,
) -> None:
    async def scenario() -> tuple[GuardedConnection, FakeTransport]:
        connection, transport = connect(guard)
        connection.data_received(b"POST /v1/readings HTTP/1.1\r\n")
        await asyncio.sleep(READ_TIMEOUT_S / 2)
        # More bytes do not buy more time: the clock runs from the first one.
        connection.data_received(b"Host: pantau\r\n")
        await asyncio.sleep(READ_TIMEOUT_S / 2 + 0.05)
        assert status_line(transport) == b"HTTP/1.1 408 Request Timeout"
        assert transport.eof_written and transport.ended is None
        connection.data_received(b"Content-Type: application/json\r\n")
        await asyncio.sleep(0.2)
        return connection, transport

    connection, transport = asyncio.run(scenario())
    handler = handler_of(connection)
    assert handler.received == b"POST /v1/readings HTTP/1.1\r\nHost: pantau\r\n"
    assert transport.ended == "closed" and handler.lost
    body = json.loads(transport.written.partition(b"\r\n\r\n")[2])
    assert body["error"] == (
        "the request did not arrive whole within 0.2 s of its first byte "
        "(ingest.http_read_timeout_s)"
    )
    assert guard._stats.snapshot().timed_out == 1


def test_a_request_whose_body_is_in_is_never_hurried(guard: ConnectionGuard) -> None:
    async def scenario() -> FakeTransport:
        connection, transport = connect(guard)
        connection.data_received(b"POST /v1/readings HTTP/1.1\r\n...")
        connection.body_read()
        # Waiting for Kafka, for longer than a request may take to arrive.
        await asyncio.sleep(READ_TIMEOUT_S * 2)
        assert transport.ended is None
        connection.answered(body_complete=True)
        await asyncio.sleep(0.3)
        return transport

    transport = asyncio.run(scenario())
    # Idle after its answer, the connection was closed without a word.
    assert (transport.written, transport.ended) == (b"", "closed")


def test_a_request_sent_during_the_answer_before_gets_its_own_deadline(
    guard: ConnectionGuard,
) -> None:
    async def scenario() -> FakeTransport:
        connection, transport = connect(guard)
        connection.data_received(b"POST /v1/readings HTTP/1.1\r\n...")
        connection.body_read()
        connection.data_received(b"POST /v1/readings HTTP/1.1\r\n")
        await asyncio.sleep(READ_TIMEOUT_S * 2)
        # Not answered 408 ahead of the answer to the first request.
        assert transport.written == b""
        connection.answered(body_complete=True)
        await asyncio.sleep(READ_TIMEOUT_S + 0.05)
        return transport

    transport = asyncio.run(scenario())
    assert status_line(transport) == b"HTTP/1.1 408 Request Timeout"


def test_a_client_that_does_not_read_its_answer_is_cut_off(guard: ConnectionGuard) -> None:
    async def scenario() -> tuple[FakeTransport, FakeTransport]:
        _idle, unread = connect(guard, unsent=4096)
        slow, stuck = connect(guard, unsent=4096)
        slow.data_received(b"POST /v1/readings HTTP/1.1\r\n")
        await asyncio.sleep(0.3)
        return unread, stuck

    unread, stuck = asyncio.run(scenario())
    assert (unread.ended, unread.written) == ("aborted", b"")
    # No 408 either: it would land inside the answer still queued.
    assert (stuck.ended, stuck.written) == ("aborted", b"")


def test_a_connection_answered_before_its_body_was_read_does_not_linger(
    guard: ConnectionGuard,
) -> None:
    async def scenario() -> FakeTransport:
        connection, transport = connect(guard)
        connection.data_received(b"POST /v1/readings HTTP/1.1\r\nContent-Length: 9000\r\n\r\n")
        connection.request_started(body_complete=False)
        connection.answered(body_complete=False)
        connection.data_received(b"[" * 100)
        await asyncio.sleep(0.3)
        return transport

    transport = asyncio.run(scenario())
    # aiohttp answered (401, 413, ...) and did not close after its lingering: closed for it.
    assert (transport.ended, transport.written) == ("closed", b"")


def test_connections_beyond_the_cap_are_answered_503_until_one_closes(
    guard: ConnectionGuard,
) -> None:
    async def scenario() -> tuple[FakeTransport, GuardedConnection]:
        _first, first_transport = connect(guard)
        connect(guard)
        refused, refused_transport = connect(guard)
        refused.data_received(b"GET /healthz HTTP/1.1\r\n\r\n")
        assert refused._inner is None
        first_transport.close()
        await asyncio.sleep(0)
        admitted, _transport = connect(guard)
        await asyncio.sleep(0.15)
        return refused_transport, admitted

    refused_transport, admitted = asyncio.run(scenario())
    head, _, body = refused_transport.written.partition(b"\r\n\r\n")
    assert head.split(b"\r\n")[0] == b"HTTP/1.1 503 Service Unavailable"
    assert b"Retry-After: 5" in head.split(b"\r\n")
    assert json.loads(body)["error"] == (
        "too many open connections (2, ingest.http_max_connections): try again shortly"
    )
    assert refused_transport.ended == "closed"
    assert isinstance(admitted._inner, FakeHandler)
    assert guard._stats.snapshot().refused == 1


def test_a_client_gone_in_the_middle_of_its_request_gives_its_place_back_quietly(
    guard: ConnectionGuard,
) -> None:
    async def scenario() -> tuple[FakeTransport, GuardedConnection]:
        gone, gone_transport = connect(guard)
        connect(guard)
        gone.data_received(b"POST /v1/readings HTTP/1.1\r\n")
        gone.eof_received()
        await asyncio.sleep(0.15)
        later, _transport = connect(guard)
        return gone_transport, later

    gone_transport, later = asyncio.run(scenario())
    assert (gone_transport.ended, gone_transport.written) == ("closed", b"")
    assert isinstance(later._inner, FakeHandler)
    assert guard._stats.snapshot().timed_out == 0
