"""What every Kafka client Pantau builds has in common: its security (protocol, SASL user,
TLS) from the settings, whatever its library, so that none is left plaintext by accident; the
readiness probe; and the errors that say the broker is away or refused this client."""

from __future__ import annotations

import ipaddress
import logging
import ssl
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, TypeVar

from kafka.errors import KafkaError

from pantau.settings import KafkaSettings, SettingsError

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
