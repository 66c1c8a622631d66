"""Kafka producer, consumer and admin helpers (kafka-python), shared by every stage.

Constructors here only build clients from settings; what to consume and when to commit is
the stage's business. Consumers never auto-commit: a stage commits offsets only after what it
produced from them is safely stored.

Every client Pantau builds, whatever its library, takes its security (protocol, SASL user,
TLS) from `security_options`, so that none is left plaintext by accident.
"""

from __future__ import annotations

import ipaddress
import logging
import ssl
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from kafka import (
    ConsumerRebalanceListener,
    KafkaAdminClient,
    KafkaConsumer,
    KafkaProducer,
    TopicPartition,
)
from kafka.errors import KafkaError, TopicAlreadyExistsError
from kafka.future import Future

from pantau.codec import encode
from pantau.ids import SeqCounter
from pantau.messages import Message
from pantau.poison import SourceKind, dead_letter
from pantau.settings import KafkaSettings, SettingsError
from pantau.topics import TopicSpec, dead_letter_name

if TYPE_CHECKING:
    from pantau.consumers import Record

log = logging.getLogger(__name__)

_Client = TypeVar("_Client")


class KafkaUnavailable(RuntimeError):
    """The broker did not answer a metadata request in time."""


class KafkaRefused(KafkaUnavailable):
    """The broker refused this client (its user and password, or the TLS handshake): waiting
    does not help, the settings must change."""


Library = Literal["kafka-python", "confluent", "aiokafka", "faust"]

# Bootstrap lists already warned about in this process: once per process is "at start-up".
_WARNED_OPEN: set[str] = set()


def security_options(settings: KafkaSettings, library: Library) -> dict[str, Any]:
    """The settings' security as `library`'s client options: keyword arguments of kafka-python's
    and aiokafka's clients, librdkafka configuration properties (confluent), or faust.App
    settings (faust). The password is in them, so they are never logged."""
    _warn_if_open(settings)
    protocol = settings.security_protocol
    sasl = protocol.startswith("SASL_")
    tls = protocol in ("SSL", "SASL_SSL")
    password = settings.sasl_password.get_secret_value() if settings.sasl_password else None
    if tls:
        _require_files(settings)
    if library == "confluent":
        options: dict[str, Any] = {"security.protocol": protocol.lower()}
        if sasl:
            options["sasl.mechanism"] = settings.sasl_mechanism
            options["sasl.username"] = settings.sasl_username
            options["sasl.password"] = password
        if tls:
            # The wheels carry their own OpenSSL, which finds the system's CA store only when
            # asked to probe for it.
            ca = settings.ssl_ca_file
            options["ssl.ca.location"] = "probe" if ca == "system" else str(ca)
            options["ssl.endpoint.identification.algorithm"] = (
                "https" if settings.ssl_check_hostname else "none"
            )
            if settings.ssl_cert_file is not None and settings.ssl_key_file is not None:
                options["ssl.certificate.location"] = str(settings.ssl_cert_file)
                options["ssl.key.location"] = str(settings.ssl_key_file)
                if settings.ssl_key_password is not None:
                    options["ssl.key.password"] = settings.ssl_key_password.get_secret_value()
        return options
    context = ssl_context(settings) if tls else None
    if library == "faust":
        from faust.auth import SASLCredentials, SSLCredentials

        # faust hands these to every aiokafka client it makes (consumer, producer, topic
        # creation); SASL_SSL is SASL with a TLS context.
        if sasl:
            credentials = SASLCredentials(
                username=settings.sasl_username,
                password=password,
                ssl_context=context,
                mechanism=settings.sasl_mechanism,
            )
            return {"broker_credentials": credentials}
        if context is not None:
            return {"broker_credentials": SSLCredentials(context)}
        return {}
    # kafka-python and aiokafka share these names.
    options = {"security_protocol": protocol}
    if sasl:
        options["sasl_mechanism"] = settings.sasl_mechanism
        options["sasl_plain_username"] = settings.sasl_username
        options["sasl_plain_password"] = password
    if context is not None:
        options["ssl_context"] = context
    return options


def ssl_context(settings: KafkaSettings) -> ssl.SSLContext:
    """The TLS context of the Python clients: the brokers' CA (or the system's store), the
    host name check, and this client's certificate where it has one."""
    ca = settings.ssl_ca_file
    try:
        # Without a CA file the default context loads the system's store.
        context = ssl.create_default_context(cafile=None if ca in (None, "system") else str(ca))
        context.check_hostname = settings.ssl_check_hostname
        if settings.ssl_cert_file is not None and settings.ssl_key_file is not None:
            key_password = settings.ssl_key_password
            context.load_cert_chain(
                settings.ssl_cert_file,
                settings.ssl_key_file,
                password=key_password.get_secret_value() if key_password else None,
            )
    except (OSError, ssl.SSLError) as exc:
        raise SettingsError(
            f"kafka: the TLS files cannot be used (ssl_ca_file {ca}, ssl_cert_file "
            f"{settings.ssl_cert_file}, ssl_key_file {settings.ssl_key_file}): "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    return context


def _require_files(settings: KafkaSettings) -> None:
    # librdkafka would only say so when it first connects, in its own words.
    for name in ("ssl_ca_file", "ssl_cert_file", "ssl_key_file"):
        path = getattr(settings, name)
        if isinstance(path, Path) and not path.is_file():
            raise SettingsError(f"kafka.{name}: {path} does not exist or is not a file")


def _warn_if_open(settings: KafkaSettings) -> None:
    if settings.security_protocol != "PLAINTEXT" or settings.bootstrap_servers in _WARNED_OPEN:
        return
    _WARNED_OPEN.add(settings.bootstrap_servers)
    remote = [s for s in _servers(settings) if not _is_loopback(s)]
    if remote:
        log.warning(
            "Kafka at %s is reached over PLAINTEXT (kafka.security_protocol): no login and no "
            "encryption, anyone on the network can read and write every topic; only a "
            "broker on this machine should be, use SASL_SSL for %s",
            settings.bootstrap_servers,
            ", ".join(remote),
        )


def _servers(settings: KafkaSettings) -> list[str]:
    return [s.strip() for s in settings.bootstrap_servers.split(",") if s.strip()]


def _is_loopback(server: str) -> bool:
    """Whether host[:port] (an IPv6 address in brackets) names this machine."""
    host = server
    if host.startswith("["):
        host = host[1:].split("]", 1)[0]
    elif host.count(":") == 1:
        host = host.rsplit(":", 1)[0]
    host = host.lower().rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def producer(settings: KafkaSettings, name: str, **overrides: Any) -> KafkaProducer:
    config: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap_servers,
        "client_id": f"{settings.client_id}-{name}",
        **security_options(settings, "kafka-python"),
        # Idempotence: broker-side dedup of producer retries, so a retry never doubles a record.
        "enable_idempotence": True,
        "acks": "all",
        "linger_ms": 5,
        "max_request_size": settings.max_message_bytes + 64 * 1024,
        "request_timeout_ms": 30_000,
    }
    config.update(overrides)
    return _explained(settings, KafkaProducer, config)


def consumer(
    settings: KafkaSettings,
    group_id: str | None,
    topics: Sequence[str],
    name: str,
    *,
    listener: ConsumerRebalanceListener | None = None,
    **overrides: Any,
) -> KafkaConsumer:
    config: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap_servers,
        "client_id": f"{settings.client_id}-{name}",
        **security_options(settings, "kafka-python"),
        "group_id": group_id,
        "enable_auto_commit": False,
        # A new group starts from the oldest retained record: nothing produced before the first
        # start of a consumer is skipped.
        "auto_offset_reset": "earliest",
        "max_partition_fetch_bytes": settings.max_message_bytes + 128 * 1024,
        # A crashed member's partitions move to the others after this long (default 45 s);
        # a clean shutdown leaves the group at once.
        "session_timeout_ms": 10_000,
        "heartbeat_interval_ms": 2_000,
    }
    config.update(overrides)
    client: KafkaConsumer = _explained(settings, KafkaConsumer, config)
    if topics:
        if listener is None:
            client.subscribe(list(topics))
        else:
            client.subscribe(list(topics), listener=listener)
    return client


def admin(settings: KafkaSettings) -> KafkaAdminClient:
    config: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap_servers,
        "client_id": f"{settings.client_id}-admin",
        "request_timeout_ms": 15_000,
        **security_options(settings, "kafka-python"),
    }
    return _explained(settings, KafkaAdminClient, config)


# How long the probe may take to say why a kafka-python client could not be built.
_EXPLAIN_WITHIN_S = 2.0


def _explained(
    settings: KafkaSettings, factory: Callable[..., _Client], config: dict[str, Any]
) -> _Client:
    """`factory(**config)`; a refused login raised as KafkaRefused. kafka-python reports one
    as a bootstrap that timed out, like a broker that is down: the probe tells which."""
    try:
        return factory(**config)
    except KafkaError as exc:
        if settings.security_protocol == "PLAINTEXT":
            raise  # nothing to refuse
        try:
            wait_until_ready(settings, timeout_s=_EXPLAIN_WITHIN_S)
        except KafkaRefused as refused:
            raise refused from exc
        except KafkaUnavailable:
            pass
        raise


# Each metadata request of the readiness probe waits at most this long, so that a refusal
# reported meanwhile is seen within seconds.
_PROBE_EVERY_S = 2.0


def wait_until_ready(settings: KafkaSettings, timeout_s: float = 60.0) -> None:
    """Block until the broker answers a metadata request, or raise KafkaUnavailable; at once
    KafkaRefused when it refuses this client's login or TLS handshake.

    The probe is librdkafka's: it reports a refused login as such, where kafka-python retries
    it like a broker that is down until its bootstrap times out."""
    from confluent_kafka import KafkaError as RdKafkaError
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    refusals = {RdKafkaError._AUTHENTICATION, RdKafkaError._SSL}
    errors: list[RdKafkaError] = []
    config: dict[str, Any] = {
        "bootstrap.servers": settings.bootstrap_servers,
        "client.id": f"{settings.client_id}-probe",
        **security_options(settings, "confluent"),
        "error_cb": errors.append,
        # The errors reach error_cb; librdkafka's own log lines would repeat them on stderr.
        "log_level": 0,
    }
    try:
        client = AdminClient(config)
    except KafkaException as exc:
        # librdkafka checks its configuration up front: a CA or key file it cannot read.
        raise SettingsError(f"kafka: the client settings cannot be used: {exc}") from exc
    deadline = time.monotonic() + timeout_s
    last_error = "no answer"
    while (remaining := deadline - time.monotonic()) > 0:
        try:
            client.list_topics(timeout=min(remaining, _PROBE_EVERY_S))
            return
        except KafkaException as exc:
            last_error = exc.args[0].str() if exc.args else str(exc)
        client.poll(0)  # serves error_cb
        for error in errors:
            if error.code() in refusals:
                raise KafkaRefused(_refusal_text(settings, error.str()))
        if errors:
            last_error = errors[-1].str()
        errors.clear()
        time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))
    hint = "start it with `pantau services up`"
    if settings.security_protocol == "PLAINTEXT":
        hint += (
            "; a broker that wants TLS or a login drops PLAINTEXT clients: see "
            "kafka.security_protocol"
        )
    raise KafkaUnavailable(
        f"Kafka at {settings.bootstrap_servers} did not answer within {timeout_s:.0f} s "
        f"({last_error}); {hint}"
    )


def _refusal_text(settings: KafkaSettings, reason: str) -> str:
    if settings.security_protocol.startswith("SASL_") and "SASL" in reason:
        return (
            f"Kafka at {settings.bootstrap_servers} refused the login of user "
            f"{settings.sasl_username!r} ({settings.sasl_mechanism} over "
            f"{settings.security_protocol}): {reason}; check kafka.sasl_username and the "
            "password (PANTAU__KAFKA__SASL_PASSWORD)"
        )
    return (
        f"Kafka at {settings.bootstrap_servers} refused the connection "
        f"({settings.security_protocol}): {reason}; check kafka.security_protocol, "
        "kafka.ssl_ca_file and kafka.ssl_check_hostname"
    )


def ensure_topics(settings: KafkaSettings, specs: Iterable[TopicSpec]) -> list[str]:
    """Create the topics that do not exist yet; returns the names created."""
    wanted = {spec.name: spec for spec in specs}
    client = admin(settings)
    try:
        existing = set(client.list_topics())
        missing = [spec for name, spec in wanted.items() if name not in existing]
        if not missing:
            return []
        request = {
            spec.name: {
                "num_partitions": spec.partitions,
                "replication_factor": settings.replication_factor,
                "configs": dict(spec.config),
            }
            for spec in missing
        }
        result = client.create_topics(request, raise_errors=False)
        created = []
        for topic in result.get("topics", []):
            code = topic.get("error_code", 0)
            if code == 0:
                created.append(topic["name"])
            elif code != TopicAlreadyExistsError.errno:
                raise KafkaError(
                    f"creating topic {topic['name']!r} failed: error {code} "
                    f"{topic.get('error_message') or ''}".strip()
                )
        if created:
            client.wait_for_topics(created, timeout_ms=20_000)
            log.info("created topics: %s", ", ".join(sorted(created)))
        return created
    finally:
        client.close()


def message_counts(settings: KafkaSettings, topics: Iterable[str]) -> dict[str, int]:
    """Records currently retained per topic (end minus beginning offsets); 0 if absent."""
    client = _offsets_reader(settings)
    try:
        counts: dict[str, int] = {}
        for topic in topics:
            partitions = client.partitions_for_topic(topic) or set()
            tps = [TopicPartition(topic, p) for p in partitions]
            if not tps:
                counts[topic] = 0
                continue
            ends = client.end_offsets(tps)
            begins = client.beginning_offsets(tps)
            counts[topic] = sum(ends[tp] - begins[tp] for tp in tps)
        return counts
    finally:
        client.close()


def _offsets_reader(settings: KafkaSettings) -> KafkaConsumer:
    """A group-less consumer used only to read partition offsets."""
    config: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap_servers,
        "client_id": f"{settings.client_id}-stats",
        "enable_auto_commit": False,
        **security_options(settings, "kafka-python"),
    }
    client: KafkaConsumer = _explained(settings, KafkaConsumer, config)
    return client


def group_lag(settings: KafkaSettings, group_id: str, topics: Iterable[str]) -> int:
    """Records in `topics` not yet committed by `group_id`."""
    return sum(end - done for done, end in group_positions(settings, group_id, topics).values())


def group_positions(
    settings: KafkaSettings, group_id: str, topics: Iterable[str]
) -> dict[tuple[str, int], tuple[int, int]]:
    """Per (topic, partition): where `group_id` has committed to (or the log start), and the end."""
    client = _offsets_reader(settings)
    admin_client = admin(settings)
    try:
        committed = committed_offsets(admin_client, group_id)
        positions: dict[tuple[str, int], tuple[int, int]] = {}
        for topic in topics:
            partitions = client.partitions_for_topic(topic) or set()
            tps = [TopicPartition(topic, p) for p in partitions]
            if not tps:
                continue
            ends = client.end_offsets(tps)
            begins = client.beginning_offsets(tps)
            for tp in tps:
                meta = committed.get(tp)
                done = meta.offset if meta is not None and meta.offset >= 0 else begins[tp]
                positions[(tp.topic, tp.partition)] = (min(done, ends[tp]), ends[tp])
        return positions
    finally:
        admin_client.close()
        client.close()


# How long a group's offsets may be unreadable because the broker has no coordinator yet.
_COORDINATOR_WAIT_S = 30.0


def committed_offsets(admin_client: KafkaAdminClient, group_id: str) -> dict[Any, Any]:
    """The group's committed offsets. A fresh broker answers "coordinator not available"
    until it has created its offsets topic on the first group request: retried for a while."""
    deadline = time.monotonic() + _COORDINATOR_WAIT_S
    while True:
        try:
            offsets: dict[Any, Any] = admin_client.list_group_offsets(group_id).get(group_id, {})
            return offsets
        except KafkaError as exc:
            if not exc.retriable or time.monotonic() >= deadline:
                raise
            log.debug("offsets of group %s not readable yet: %s", group_id, exc)
            time.sleep(0.5)


def delete_topics(settings: KafkaSettings, prefix: str) -> list[str]:
    """Delete every topic whose name starts with `prefix` (test runs, benchmarks)."""
    client = admin(settings)
    try:
        names = [t for t in client.list_topics() if t.startswith(prefix)]
        if names:
            client.delete_topics(names, timeout_ms=30_000)
        return names
    finally:
        client.close()


class DeadLetters:
    """Publishes rejected input, whole (up to `MAX_ORIGINAL_BYTES`) and with the reason, to a
    dead-letter topic."""

    def __init__(self, client: KafkaProducer, stage: str) -> None:
        self._producer = client
        self._stage = stage
        self._seq = SeqCounter()

    def send(
        self,
        topic: str,
        *,
        original: bytes,
        error: str,
        source_kind: SourceKind,
        source_topic: str,
        partition: int | None = None,
        offset: int | None = None,
        source_key: str | None = None,
    ) -> Future:
        letter = dead_letter(
            stage=self._stage,
            seq=next(self._seq),
            source_kind=source_kind,
            source_topic=source_topic,
            original=original,
            error=error,
            partition=partition,
            offset=offset,
            source_key=source_key,
        )
        log.warning(
            "dead letter from %s %s (partition %s, offset %s) to %s: %s",
            source_kind,
            letter.source_topic,
            partition,
            offset,
            topic,
            letter.error,
        )
        return publish(self._producer, topic, letter)

    def reject(self, record: Record, error: str) -> Future:
        """Dead-letter a consumed record to its topic's dead-letter twin."""
        return self.send(
            dead_letter_name(record.topic),
            original=record.value or b"",
            error=error,
            source_kind="kafka",
            source_topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            source_key=record.key.decode(errors="replace") if record.key else None,
        )


def publish(client: KafkaProducer, topic: str, message: Message) -> Future:
    """Send one message, keyed by its source id."""
    return client.send(topic, key=message.key, value=encode(message))
