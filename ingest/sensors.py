"""Sensor ingest: MQTT → validation → `sensors.readings.v1`; bad payloads → dead letters.

Nothing is acknowledged to the MQTT broker before Kafka has it: the subscription is a
persistent session with manual acknowledgement, and a message is acked only from the Kafka
delivery callback (of the reading, or of its dead letter). If Kafka fails for good the
process stops without acking, and the broker redelivers the unacked messages to the next run.

A reading whose seq this process already ingested for its sensor is dead-lettered as a
duplicate (and acked, like any dead letter). The memory of seqs is in this process only, so a
QoS 1 redelivery to the next run, of a message Kafka had but the broker never saw acked,
passes again. That is fine: the reading's id is stable (`stable_id`), so the copy is stored
once downstream.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import paho.mqtt.client as mqtt
from kafka import KafkaProducer
from paho.mqtt.enums import CallbackAPIVersion

from ingest.validation import SeqTracker, parse_reading, verify_units
from pantau.credentials import stable_suffix
from pantau.ids import utcnow
from pantau.kafka import DeadLetters, publish
from pantau.messages import SensorReading
from pantau.poison import guard
from pantau.settings import MqttSettings, Settings
from pantau.topics import Topics

log = logging.getLogger(__name__)


@dataclass
class SensorStats:
    accepted: int = 0
    rejected: int = 0
    failed: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


class SensorIngest:
    """Validates one payload at a time and hands it to Kafka; `ack` runs once Kafka has it."""

    def __init__(
        self,
        settings: Settings,
        producer: KafkaProducer,
        topics: Topics,
        *,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        verify_units(settings.sensors)
        self._settings = settings
        self._registry = settings.sensor_registry()
        # The broker lets only a sensor's gateway publish on its topic (the ACL made from the
        # registry), so the topic says who sent it; with an anonymous broker nobody is known.
        self._senders = {} if settings.mqtt.allow_anonymous else settings.gateway_of_sensor()
        self._seqs = SeqTracker()
        self._producer = producer
        self._topics = topics
        self._dead_letters = DeadLetters(producer, stage="ingest.sensors")
        self._clock = clock
        self.stats = SensorStats()
        self.fatal = threading.Event()

    def topic_sensor_id(self, mqtt_topic: str) -> str | None:
        prefix = self._settings.mqtt.topic_prefix.rstrip("/") + "/"
        if not mqtt_topic.startswith(prefix):
            return None
        return mqtt_topic[len(prefix) :].split("/", 1)[0] or None

    def handle(self, mqtt_topic: str, payload: bytes, ack: Callable[[], None]) -> None:
        """Validate and hand to Kafka. Whatever the payload provokes, it ends as a reading or
        a dead letter; only Kafka refusing a record (infrastructure) raises or sets `fatal`."""
        sensor_hint = self.topic_sensor_id(mqtt_topic)
        reasons: list[str] = []
        reading = guard(
            lambda: self._validated(payload, sensor_hint),
            reasons.append,
            where=f"an MQTT message on {mqtt_topic}",
        )
        if reading is None:
            with self.stats.lock:
                self.stats.rejected += 1
            future = self._dead_letters.send(
                self._topics.dead_letters(self._topics.readings),
                original=payload,
                error=reasons[0],
                source_kind="mqtt",
                source_topic=mqtt_topic,
                source_key=sensor_hint,
            )
        else:
            with self.stats.lock:
                self.stats.accepted += 1
            future = publish(self._producer, self._topics.readings, reading)
        future.add_callback(lambda _metadata: ack())
        future.add_errback(self._delivery_failed)

    def _validated(self, payload: bytes, sensor_hint: str | None) -> SensorReading:
        ingest = self._settings.ingest
        reading = parse_reading(
            payload,
            topic_sensor_id=sensor_hint,
            registry=self._registry,
            now=self._clock(),
            max_future_skew_s=ingest.max_future_skew_s,
            earliest=ingest.earliest_observation,
            max_bytes=ingest.max_reading_bytes,
            gateway=self._senders.get(sensor_hint) if sensor_hint is not None else None,
        )
        self._seqs.claim(reading)
        return reading

    def _delivery_failed(self, exc: BaseException) -> None:
        with self.stats.lock:
            self.stats.failed += 1
        log.critical("Kafka did not take a reading (%s); stopping without acknowledging it", exc)
        self.fatal.set()


def mqtt_client(
    settings: MqttSettings,
    *,
    client_id: str,
    persistent: bool,
    username: str | None,
    password: str | None,
) -> mqtt.Client:
    """A client for the broker in the settings (TLS when it says so), logging in as
    `username` (None: anonymously, only where the settings allow it)."""
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        clean_session=not persistent,
        manual_ack=persistent,
    )
    if username is not None:
        client.username_pw_set(username, password)
    if settings.tls:
        client.tls_set(ca_certs=str(settings.ca_file) if settings.ca_file is not None else None)
    return client


def ingest_client_id(settings: MqttSettings) -> str:
    """The ingest's persistent session id: the configured start, this host, and a suffix made
    from the password. It stays the same across restarts (the broker keeps the session and
    the readings queued for it), and no client without the password can take the session
    over by connecting with the same id."""
    host = socket.gethostname()
    if settings.shared_group is not None and settings.member:
        # Each member of a shared subscription keeps its own session.
        host = f"{host}-m{settings.member}"
    if settings.password is None:
        return f"{settings.client_id}-{host}"
    suffix = stable_suffix(settings.password.get_secret_value(), settings.client_id, host)
    return f"{settings.client_id}-{host}-{suffix}"


def subscription_of(settings: MqttSettings) -> str:
    """What the ingest subscribes to: every sensor's topic, alone or as one of a group."""
    topics = settings.topic_prefix.rstrip("/") + "/+"
    if settings.shared_group is None:
        return topics
    return f"$share/{settings.shared_group}/{topics}"


def ingest_login(settings: MqttSettings) -> tuple[str | None, str | None]:
    """The ingest's (user, password); SettingsError when it has none and anonymity was not
    chosen. Anonymity is logged: it is an open door."""
    if settings.password is None:
        settings.require_login()
        log.warning(
            "MQTT: connecting anonymously (mqtt.allow_anonymous): anyone reaching the broker "
            "can read and send readings"
        )
        return None, None
    return settings.username, settings.password.get_secret_value()


# How paho words the broker's refusals of a login (MQTT 3.1.1 and 5).
_LOGIN_REFUSED = frozenset(
    {"Not authorized", "Bad user name or password", "Banned", "Bad authentication method"}
)


def run_mqtt_ingest(
    settings: Settings,
    producer: KafkaProducer,
    topics: Topics,
    stop: threading.Event,
    *,
    alive: Callable[[], None] = lambda: None,
) -> SensorStats:
    """Subscribe and ingest until `stop` is set or Kafka fails; returns the counters.

    The MQTT network loop runs on a thread of ours, watched: if it ends for any reason but a
    stop, or a message's handling raises, the ingest stops with an error instead of living on
    without a subscription. `alive` is called about once a second while all is well.
    """
    ingest = SensorIngest(settings, producer, topics)
    subscription = subscription_of(settings.mqtt)
    unshared = subscription_of(settings.mqtt.model_copy(update={"shared_group": None}))
    username, password = ingest_login(settings.mqtt)
    client = mqtt_client(
        settings.mqtt,
        client_id=ingest_client_id(settings.mqtt),
        persistent=True,
        username=username,
        password=password,
    )
    failure: list[str] = []

    def fail(reason: str) -> None:
        if not failure:
            failure.append(reason)
        ingest.fatal.set()

    def on_connect(
        client: mqtt.Client, _userdata: object, _flags: object, reason: object, _props: object
    ) -> None:
        if getattr(reason, "is_failure", False):
            log.error("MQTT connection refused: %s", reason)
            if str(reason) in _LOGIN_REFUSED:
                # A wrong password does not mend itself by retrying: stop, and say why.
                fail(f"the MQTT broker refused the login of {username or 'an anonymous client'}"
                     f" ({reason})")  # fmt: skip
            return
        client.subscribe(subscription, qos=settings.mqtt.qos)
        if subscription != unshared:
            # A persistent session keeps its subscriptions: a member whose session once held
            # the plain subscription (a single ingest before the group) would get every
            # reading besides its share.
            client.unsubscribe(unshared)
        log.info(
            "MQTT connected to %s:%d, subscribed to %s",
            settings.mqtt.host,
            settings.mqtt.port,
            subscription,
        )

    def on_disconnect(
        _client: mqtt.Client, _userdata: object, _flags: object, reason: object, _props: object
    ) -> None:
        if not stop.is_set():
            log.warning("MQTT connection lost (%s); reconnecting", reason)

    def on_message(client: mqtt.Client, _userdata: object, message: mqtt.MQTTMessage) -> None:
        mid, qos = message.mid, message.qos

        def ack() -> None:
            if qos > 0:
                client.ack(mid, qos)

        try:
            ingest.handle(message.topic, bytes(message.payload), ack)
        except Exception as exc:
            # Bad input never gets here (it is dead-lettered); this is Kafka refusing a send.
            log.critical("handing an MQTT message to Kafka failed: %s", exc, exc_info=exc)
            fail(f"Kafka refused a record ({type(exc).__name__}: {exc})")

    def network() -> None:
        try:
            client.loop_forever(retry_first_connection=True)
        except BaseException as exc:
            log.critical("the MQTT network loop failed: %s", exc, exc_info=exc)
            fail(f"the MQTT network loop failed ({type(exc).__name__}: {exc})")
        else:
            if not stop.is_set():
                fail("the MQTT network loop ended")

    client.on_connect = on_connect
    client.on_disconnect = on_disconnect
    client.on_message = on_message
    client.reconnect_delay_set(min_delay=1, max_delay=30)
    client.connect_async(
        settings.mqtt.host, settings.mqtt.port, keepalive=settings.mqtt.keepalive_s
    )
    loop = threading.Thread(target=network, name="mqtt-network", daemon=True)
    loop.start()
    try:
        while not stop.is_set() and not ingest.fatal.is_set():
            alive()
            stop.wait(0.5)
            if not loop.is_alive() and not stop.is_set():
                fail("the MQTT network loop ended")
    finally:
        # Flush first: delivery callbacks ack to MQTT, and the network loop must still run to
        # send those acks before the disconnect.
        producer.flush(timeout=30)
        stop.set()
        client.disconnect()
        loop.join(timeout=10)
    if ingest.fatal.is_set():
        reason = failure[0] if failure else "Kafka delivery failed"
        raise RuntimeError(f"{reason}; unacknowledged readings stay with the MQTT broker")
    return ingest.stats
