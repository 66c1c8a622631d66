"""Kafka: the brokers, how to reach them (TLS, SASL), topic partitions and names."""

from __future__ import annotations

from typing import Any, Literal, Self

from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from pantau.settings.base import ConfigPath, Section, StrongSecret, _section


class TopicPartitions(Section):
    """Partition counts; keyed by camera or sensor id, so per-source order holds."""

    frames: int = Field(12, ge=1, description="cctv.frames.v1: bounds detector parallelism")
    detections: int = Field(12, ge=1, description="detections.v1")
    readings: int = Field(6, ge=1, description="sensors.readings.v1")
    camera_health: int = Field(3, ge=1, description="cameras.health.v1 and cameras.view.v1")
    events: int = Field(3, ge=1, description="events.dumping.v1, alerts.v1, notifications.v1")
    metrics: int = Field(1, ge=1, description="pipeline.metrics.v1")
    dead_letters: int = Field(1, ge=1, description="every *.dlq.v1 topic")


class Replication(Section):
    """How many brokers keep a copy of a topic's partitions, and how many copies must have a
    record before a producer with acks=all is told it is stored. With `replicas: 3` and
    `min_insync: 2` one broker may be lost without losing a record or stopping the pipeline;
    with two lost, producers are refused (and retry) rather than keep one copy only."""

    replicas: int = Field(1, ge=1, le=9, description="copies of each partition")
    min_insync: int = Field(
        1, ge=1, le=9, description="copies that must have a record before it counts as stored"
    )

    @model_validator(mode="after")
    def fits(self) -> Self:
        if self.min_insync > self.replicas:
            raise ValueError(
                f"min_insync ({self.min_insync}) cannot exceed replicas ({self.replicas}): "
                "no record could ever be stored"
            )
        return self


class TopicReplication(Section):
    """Replication per class of topic. One broker (development): 1 / 1 everywhere. A cluster:
    data, state and dead letters 3 / 2; frames 2 / 1 (bulky, kept hours, and a lost frame is
    one picture of many)."""

    frames: Replication = _section()
    data: Replication = Field(
        default_factory=dict,
        validate_default=True,
        description="readings, windows, detections, camera health and view, dumping events, "
        "alerts, actions, notifications, metrics",
    )
    state: Replication = Field(
        default_factory=dict,
        validate_default=True,
        description="detect.state.v1 and the stream processor's changelog and repartition topics",
    )
    dead_letters: Replication = _section()


class KafkaSettings(Section):
    bootstrap_servers: str = Field("localhost:9092", description="host:port[,host:port...]")
    topic_prefix: str = Field(
        "", pattern=r"^[A-Za-z0-9._-]*$", description="prefix for every topic name (isolates sites)"
    )
    client_id: str = Field("pantau", description="client id prefix shown in broker logs")
    replication: TopicReplication = _section()
    partitions: TopicPartitions = _section()
    max_message_bytes: int = Field(
        1_000_000, ge=10_000, description="largest message produced; the broker's default limit"
    )
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT",
        description="how every client reaches the brokers: SASL_SSL (TLS and a user: a city "
        "network), SASL_PLAINTEXT (a user, unencrypted: a closed network), SSL (TLS, the "
        "client known by its certificate), PLAINTEXT (neither: the development broker on "
        "this machine; for any other address start-up logs it as an open door)",
    )
    sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"] = Field(
        "SCRAM-SHA-512",
        description="how SASL_* proves the password: SCRAM never sends it; PLAIN sends it as "
        "it is, so only inside TLS (SASL_SSL)",
    )
    sasl_username: str | None = Field(None, description="the user Pantau logs in as (SASL_*)")
    sasl_password: StrongSecret = Field(
        None,
        description="its password, from the environment (PANTAU__KAFKA__SASL_PASSWORD); "
        "never logged",
    )
    ssl_ca_file: Literal["system"] | ConfigPath | None = Field(
        None,
        description="SSL and SASL_SSL: the CA certificates (PEM) that signed the brokers' "
        "certificates, or `system` to trust the operating system's store (a public CA)",
    )
    ssl_check_hostname: bool = Field(
        True,
        description="the broker's certificate must name the host dialled (off only for "
        "brokers reached by an address their certificate does not name)",
    )
    ssl_cert_file: ConfigPath | None = Field(
        None,
        description="this client's certificate (PEM), for brokers that know clients by "
        "certificate; required with SSL",
    )
    ssl_key_file: ConfigPath | None = Field(
        None, description="the private key (PEM) of ssl_cert_file"
    )
    ssl_key_password: SecretStr | None = Field(
        None, description="the password of an encrypted ssl_key_file, from the environment"
    )

    @model_validator(mode="before")
    @classmethod
    def replication_per_class(cls, data: Any) -> Any:
        if isinstance(data, dict) and "replication_factor" in data:
            raise ValueError(
                "kafka.replication_factor is replaced by kafka.replication, per class of topic: "
                "frames, data, state, dead_letters, each with replicas and min_insync"
            )
        return data

    @field_validator(
        "sasl_username", "sasl_password", "ssl_ca_file", "ssl_key_password", mode="before"
    )
    @classmethod
    def blank_is_unset(cls, value: Any) -> Any:
        # `${PANTAU_KAFKA_PASSWORD:-}` with the variable unset means "not set", not the empty
        # password; a number written in YAML is the text it looks like (and a type error would
        # show the value).
        if isinstance(value, str) and not value.strip():
            return None
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
        return value

    @model_validator(mode="after")
    def verify_security(self) -> Self:
        protocol = self.security_protocol
        sasl = protocol.startswith("SASL_")
        tls = protocol in ("SSL", "SASL_SSL")
        if sasl and (self.sasl_username is None or self.sasl_password is None):
            raise self._refused(
                "security_protocol",
                protocol,
                "SASL needs kafka.sasl_username and kafka.sasl_password (the password from the "
                "environment: PANTAU__KAFKA__SASL_PASSWORD)",
            )
        if not sasl and (self.sasl_username is not None or self.sasl_password is not None):
            raise self._refused(
                "security_protocol",
                protocol,
                "kafka.sasl_username or kafka.sasl_password is set, but this protocol sends no "
                "credentials: choose SASL_SSL or SASL_PLAINTEXT",
            )
        if protocol == "SASL_PLAINTEXT" and self.sasl_mechanism == "PLAIN":
            raise self._refused(
                "sasl_mechanism",
                self.sasl_mechanism,
                "PLAIN sends the password as it is, and SASL_PLAINTEXT does not encrypt: use "
                "SCRAM-SHA-512, or SASL_SSL",
            )
        if tls and self.ssl_ca_file is None:
            raise self._refused(
                "security_protocol",
                protocol,
                "TLS needs kafka.ssl_ca_file: the CA certificates (PEM) that signed the "
                "brokers' certificates, or `system` for the operating system's store",
            )
        if protocol == "SSL" and (self.ssl_cert_file is None or self.ssl_key_file is None):
            raise self._refused(
                "security_protocol",
                protocol,
                "SSL knows this client by its certificate: set kafka.ssl_cert_file and "
                "kafka.ssl_key_file (or log in with a user: SASL_SSL)",
            )
        if (self.ssl_cert_file is None) != (self.ssl_key_file is None):
            field = "ssl_cert_file" if self.ssl_key_file is None else "ssl_key_file"
            raise self._refused(
                field,
                str(getattr(self, field)),
                "kafka.ssl_cert_file and kafka.ssl_key_file go together: set both or neither",
            )
        tls_only = [
            name
            for name in ("ssl_ca_file", "ssl_cert_file", "ssl_key_file", "ssl_key_password")
            if getattr(self, name) is not None
        ]
        if not tls and tls_only:
            raise self._refused(
                "security_protocol",
                protocol,
                f"kafka.{tls_only[0]} is set, but this protocol does not use TLS: SSL and "
                "SASL_SSL do",
            )
        return self

    @staticmethod
    def _refused(field: str, value: str, message: str) -> ValidationError:
        """The error for one field, showing only that field's value: a plain ValueError here
        would show the whole section as it came, the password included."""
        from pydantic_core import InitErrorDetails, PydanticCustomError

        return ValidationError.from_exception_data(
            "KafkaSettings",
            [
                InitErrorDetails(
                    type=PydanticCustomError("kafka_security", message),
                    loc=(field,),
                    input=value,
                )
            ],
        )

    @property
    def first_port(self) -> int:
        first = self.bootstrap_servers.split(",")[0].strip()
        return int(first.rsplit(":", 1)[1]) if ":" in first else 9092
