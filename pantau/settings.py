"""One validated, frozen settings object for every Pantau process.

Settings come from a YAML file plus environment overrides and are loaded once, at the entry
point, then passed down. Rules:

- every section rejects unknown keys, so a misspelt key is an error that names the key and
  where it came from (the file, or the environment variable);
- `${VAR}` and `${VAR:-default}` inside YAML strings are replaced from the environment, which
  is how secrets (camera URLs with credentials, passwords) stay out of the file;
- `PANTAU__SECTION__KEY=value` overrides one key (list items by index:
  `PANTAU__CAMERAS__0__FPS=2`); values starting with `[` or `{` are parsed as YAML;
- relative paths in the file are relative to the file's folder.
"""

from __future__ import annotations

import difflib
import os.path
import re
import types
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal, Self, Union, get_args, get_origin

import yaml
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    field_validator,
    model_validator,
)

ENV_PREFIX = "PANTAU__"
DEFAULT_CONFIG = Path("configs/pantau.yaml")
# Role names are part of the schema (migrations grant to them), so they are not settings.
WRITER_ROLE = "pantau_writer"
CONSOLE_ROLE = "pantau_console"

_ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"


def _number_from_text(value: Any) -> Any:
    # Values from the environment (overrides, ${VAR}) are text; pydantic turns "320" into an
    # int for an int field, but not for a choice of numbers.
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return value


_SECRET_KEYS = frozenset(
    {
        "url", "password", "writer_password", "grafana_password", "analyst_password", "token",
        "webhooks", "secret", "secret_hash", "sasl_password", "ssl_key_password",
    }
)  # fmt: skip


class SettingsError(Exception):
    """The configuration is unusable; the message says where and why, one problem per line."""


def _resolve_path(value: Path, info: ValidationInfo) -> Path:
    base = (info.context or {}).get("base_dir")
    value = value.expanduser()
    if base is not None and not value.is_absolute():
        # normpath rather than resolve(): keep symlinks as the deployer wrote them.
        return Path(os.path.normpath(Path(base) / value))
    return value


ConfigPath = Annotated[Path, AfterValidator(_resolve_path)]
SourceId = Annotated[
    str, Field(pattern=_ID_PATTERN, description="lower-case id: a-z, 0-9, _ and -")
]


def _section() -> Any:
    """Default for a nested section: validated like file input, so relative paths in its
    defaults resolve against the config file's folder too."""
    return Field(default_factory=dict, validate_default=True)


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Location(Section):
    lat: float = Field(ge=-90, le=90, description="latitude, WGS84 degrees")
    lon: float = Field(ge=-180, le=180, description="longitude, WGS84 degrees")
    desa: str | None = Field(None, description="desa / kelurahan (village) name")
    kecamatan: str | None = Field(None, description="kecamatan (district) name")


# Shortest password, token or shared secret Pantau accepts for its own doors.
MIN_SECRET_CHARS = 16


def _strong_secret(value: SecretStr | None) -> SecretStr | None:
    # `password: ${PANTAU_MQTT_PASSWORD:-}` with the variable unset means "no password", not
    # the empty one.
    if value is None or not value.get_secret_value().strip():
        return None
    if len(value.get_secret_value()) < MIN_SECRET_CHARS:
        raise ValueError(
            f"a secret must have at least {MIN_SECRET_CHARS} characters "
            "(`pantau secrets init` makes strong ones)"
        )
    return value


# A secret of one of Pantau's own doors, from the environment: blank is none, short is refused.
StrongSecret = Annotated[SecretStr | None, AfterValidator(_strong_secret)]


class TopicPartitions(Section):
    """Partition counts; keyed by camera or sensor id, so per-source order holds."""

    frames: int = Field(12, ge=1, description="cctv.frames.v1: bounds detector parallelism")
    detections: int = Field(12, ge=1, description="detections.v1")
    readings: int = Field(6, ge=1, description="sensors.readings.v1")
    camera_health: int = Field(3, ge=1, description="cameras.health.v1 and cameras.view.v1")
    events: int = Field(3, ge=1, description="events.dumping.v1, alerts.v1, notifications.v1")
    metrics: int = Field(1, ge=1, description="pipeline.metrics.v1")
    dead_letters: int = Field(1, ge=1, description="every *.dlq.v1 topic")


class KafkaSettings(Section):
    bootstrap_servers: str = Field("localhost:9092", description="host:port[,host:port...]")
    topic_prefix: str = Field(
        "", pattern=r"^[A-Za-z0-9._-]*$", description="prefix for every topic name (isolates sites)"
    )
    client_id: str = Field("pantau", description="client id prefix shown in broker logs")
    replication_factor: int = Field(1, ge=1, description="replication factor for created topics")
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


class PostgresSettings(Section):
    host: str = Field("localhost", description="database host")
    port: int = Field(5432, ge=1, le=65535)
    dbname: str = Field("pantau", description="database name")
    user: str = Field("pantau", description="owner role: runs migrations")
    password: StrongSecret = Field(None, description="owner password (from the environment)")
    writer_password: StrongSecret = Field(
        None, description="password of the pantau_writer role the sink writes as"
    )
    grafana_password: StrongSecret = Field(
        None, description="password of the pantau_grafana role Grafana reads as"
    )
    analyst_password: StrongSecret = Field(
        None, description="password of the pantau_analyst role (read-only SQL)"
    )
    console_password: StrongSecret = Field(
        None, description="password of the pantau_console role the incident console uses"
    )
    sslmode: Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"] = "prefer"
    connect_timeout_s: int = Field(5, ge=1, le=120)

    def connect_kwargs(
        self, role: Literal["owner", "writer", "console"] = "owner"
    ) -> dict[str, str | int]:
        """Keyword arguments for a libpq connection as the given role."""
        user, password = {
            "owner": (self.user, self.password),
            "writer": (WRITER_ROLE, self.writer_password),
            "console": (CONSOLE_ROLE, self.console_password),
        }[role]
        kwargs: dict[str, str | int] = {
            "host": self.host,
            "port": self.port,
            "dbname": self.dbname,
            "user": user,
            "sslmode": self.sslmode,
            "connect_timeout": self.connect_timeout_s,
            "application_name": f"pantau-{role}",
        }
        if password is not None:
            kwargs["password"] = password.get_secret_value()
        return kwargs


class MqttSettings(Section):
    host: str = Field("localhost", description="MQTT broker host")
    port: int = Field(1883, ge=1, le=65535)
    username: str = Field(
        "pantau-ingest", min_length=1, description="the ingest's own user on the broker"
    )
    password: StrongSecret = Field(
        None, description="the ingest's password (from the environment: PANTAU_MQTT_PASSWORD)"
    )
    allow_anonymous: bool = Field(
        False,
        description="connect without a user, to a broker that allows it: an open door, "
        "logged as such at start-up; Pantau's own brokers refuse anonymous clients",
    )
    tls: bool = Field(False, description="connect with TLS (the broker's TLS listener)")
    ca_file: ConfigPath | None = Field(
        None, description="CA certificate that signed the broker's (default: the system's)"
    )
    topic_prefix: str = Field(
        "pantau/sensors", description="sensors publish readings on PREFIX/<sensor_id>"
    )
    qos: Annotated[Literal[0, 1, 2], BeforeValidator(_number_from_text)] = Field(
        1, description="1: the broker keeps readings while ingest is down"
    )
    client_id: str = Field(
        "pantau-ingest-sensors",
        description="start of the persistent session's client id; the host and a suffix only "
        "the password can make follow, so no other client can take the session over",
    )
    keepalive_s: int = Field(30, ge=5)

    def require_login(self) -> None:
        """SettingsError unless the ingest has a password or anonymity was chosen."""
        if self.password is None and not self.allow_anonymous:
            raise SettingsError(
                "mqtt.password is not set: the broker refuses anonymous clients. Set "
                "PANTAU_MQTT_PASSWORD (`pantau secrets init` makes one), or, for a broker that "
                "allows them, mqtt.allow_anonymous: true"
            )


class GatewaySettings(Section):
    """A device that sends readings: a sensor's own modem, or a gateway speaking for several.
    One secret is its MQTT password (its id is the user name) and its HTTP bearer token."""

    id: SourceId
    name: str = ""
    sensors: tuple[SourceId, ...] = Field(
        min_length=1, description="the only sensors it may send readings for"
    )
    secret_hash: str | None = Field(
        None,
        description="its secret's PBKDF2 hash in Mosquitto's format ($7$...), from "
        "`pantau gateways add`: the registry never holds the secret itself",
    )
    secret: StrongSecret = Field(
        None,
        description="its secret in plain text, from the environment (development and tests); "
        "hashed when the settings are loaded",
    )
    revoked: bool = Field(
        False, description="a stolen or retired device: refused by MQTT and HTTP alike"
    )

    @model_validator(mode="after")
    def verify_secret(self) -> Self:
        if self.secret_hash is not None and self.secret is not None:
            raise ValueError("set secret_hash or secret, not both")
        if self.secret_hash is not None:
            from pantau.credentials import CredentialError, parse_hash

            try:
                parse_hash(self.secret_hash)
            except CredentialError as exc:
                raise ValueError(f"secret_hash: {exc}") from exc
        return self

    @property
    def can_log_in(self) -> bool:
        return not self.revoked and (self.secret_hash is not None or self.secret is not None)


class ZoneSettings(Section):
    """An area of a camera's view; corners are fractions of the width and height (0..1)."""

    id: SourceId
    name: str = ""
    kind: Literal["watch", "fixture", "ignore"] = Field(
        "watch", description="watch for dumping / objects that belong there / never look"
    )
    polygon: tuple[tuple[float, float], ...] = Field(min_length=3)
    dwell_s: float = Field(30.0, gt=0, description="unattended this long before an alert")

    @field_validator("polygon")
    @classmethod
    def verify_inside_frame(
        cls, polygon: tuple[tuple[float, float], ...]
    ) -> tuple[tuple[float, float], ...]:
        outside = [p for p in polygon if not (0 <= p[0] <= 1 and 0 <= p[1] <= 1)]
        if outside:
            raise ValueError(f"corners are fractions of the frame (0..1), got {outside[0]}")
        return polygon


class MotionSettings(Section):
    """The motion gate next to the camera: which sampled frames are published for detection."""

    enabled: bool = Field(True, description="off: every sampled frame is published")
    # After the gate's downscale (to 96-191 px wide) and blur, sensor noise stays within a few
    # grey levels; a person against pavement differs by tens.
    threshold: float = Field(
        20.0,
        gt=0,
        le=255,
        description="grey-level change (0-255, after brightness normalisation) that counts a "
        "pixel as changed",
    )
    # 0.3% of a 640x360 frame is about 26x26 px: a person far down a street, not a flicker.
    min_area: float = Field(
        0.003, gt=0, lt=1, description="fraction of the frame that must change to be motion"
    )
    hold_s: float = Field(
        3.0, ge=0, description="keep publishing this long after the last motion (people pausing)"
    )
    static_interval_s: float = Field(
        2.0,
        gt=0,
        description="without motion, still publish one frame this often, so that an object "
        "that arrived and stopped is seen (and an alert due in a still scene waits at most "
        "this long for its frame)",
    )
    background_s: float = Field(
        5.0, gt=0, description="time constant of the background: how fast a stopped change fades"
    )


class CameraSettings(Section):
    id: SourceId
    name: str = Field("", description="human-readable name shown on the wall")
    url: SecretStr = Field(
        description="RTSP / HTTP URL or a video file path; may carry credentials"
    )
    fps: float = Field(5.0, gt=0, le=30, description="frames per second sampled for detection")
    max_width: int = Field(
        640, ge=160, le=3840, description="frames are resized down to this width"
    )
    jpeg_quality: int = Field(80, ge=30, le=100)
    location: Location | None = None
    enabled: bool = True
    zones: tuple[ZoneSettings, ...] = ()
    motion: MotionSettings | None = Field(
        None, description="this camera's motion gate keys; unset keys come from ingest.motion"
    )

    def motion_gate(self, default: MotionSettings) -> MotionSettings:
        """The gate settings in force: `default` (ingest.motion) with this camera's keys."""
        if self.motion is None:
            return default
        given = {key: getattr(self.motion, key) for key in self.motion.model_fields_set}
        return default.model_copy(update=given)

    @field_validator("url")
    @classmethod
    def resolve_file_url(cls, value: SecretStr, info: ValidationInfo) -> SecretStr:
        """A video file given as a relative path is relative to the config file too."""
        raw = value.get_secret_value()
        if not raw.strip():
            raise ValueError("url must not be empty")
        if "://" in raw:
            return value
        return SecretStr(str(_resolve_path(Path(raw), info)))


SensorType = Literal["air_quality", "water_level", "waste_container"]


class Levels(Section):
    """A sensor's own alarm levels for one quantity, overriding the rule's."""

    raise_above: float = Field(description="raise at or above this value")
    clear_below: float = Field(description="clear below this value (hysteresis)")

    @model_validator(mode="after")
    def verify_hysteresis(self) -> Self:
        if self.clear_below > self.raise_above:
            raise ValueError("clear_below must not be above raise_above")
        return self


class SensorSettings(Section):
    id: SourceId
    type: SensorType
    name: str = ""
    location: Location | None = None
    tps: bool = Field(
        False, description="a waste container at a TPS (tempat penampungan sementara)"
    )
    units: dict[str, str] = Field(
        default_factory=dict,
        description="unit the device reports per quantity when not the standard one, e.g. "
        "{waterLevel: cm}; readings are converted on ingest",
    )
    thresholds: dict[str, Levels] = Field(
        default_factory=dict, description="per quantity: this sensor's alarm levels"
    )


# COCO: person, bicycle, car, motorcycle, bus, truck; backpack, handbag, suitcase, bottle.
_TRACKED_CLASSES = (0, 1, 2, 3, 5, 7, 24, 26, 28, 39)


class TrackerSettings(Section):
    """ByteTrack per camera: the same object keeps its track id from frame to frame."""

    enabled: bool = Field(True, description="off: detections carry no track ids")
    classes: tuple[int, ...] = Field(
        _TRACKED_CLASSES, description="class ids that get track ids (people, vehicles, carriables)"
    )
    # Without motion the camera still publishes a frame every ingest.motion.static_interval_s
    # (1-2 s): 5 s lets a standing person survive a missed detection between such frames.
    buffer_s: float = Field(
        5.0,
        gt=0,
        description="seconds of frame time a lost track waits to be found again; "
        "after that the object gets a new id",
    )
    high_confidence: float = Field(
        0.25, gt=0, lt=1, description="boxes at least this confident are matched first"
    )
    low_confidence: float = Field(
        0.1, gt=0, lt=1, description="boxes between this and high_confidence only extend tracks"
    )
    new_track_confidence: float = Field(
        0.25, gt=0, lt=1, description="an unmatched box at least this confident starts a track"
    )
    match_iou: float = Field(
        0.2, gt=0, lt=1, description="least overlap of a track's predicted box and a detection"
    )

    @model_validator(mode="after")
    def verify_confidence_order(self) -> Self:
        if self.low_confidence >= self.high_confidence:
            raise ValueError(
                f"tracker.low_confidence ({self.low_confidence}) must be below "
                f"tracker.high_confidence ({self.high_confidence})"
            )
        return self


# What the dumping logic looks at, by COCO name, with the least confidence a box needs.
# Vehicles stand higher: parked-car false positives (shadows, stalls) would be taken for owners.
# Carriables lower: a bag on the ground is small and often half hidden, and a missed one is a
# missed event, while a false one only raises the confidence of an object already static.
_KEPT_CLASSES: dict[str, float] = {
    "person": 0.35,
    "bicycle": 0.4,
    "car": 0.4,
    "motorcycle": 0.4,
    "bus": 0.4,
    "truck": 0.4,
    "backpack": 0.25,
    "handbag": 0.25,
    "suitcase": 0.25,
    "bottle": 0.25,
}

ClassName = Annotated[str, Field(min_length=1)]
ClassThreshold = Annotated[float, Field(gt=0, lt=1)]


class _DetectorBase(Section):
    model: ConfigPath = Field(description="local model path; weights are never downloaded")
    imgsz: Annotated[Literal[320, 640], BeforeValidator(_number_from_text)] = Field(
        640, description="network input size"
    )
    confidence: float = Field(
        0.25,
        gt=0,
        lt=1,
        description="the network's own floor: boxes below it never leave the network, "
        "whatever `classes` says",
    )
    iou: float = Field(0.45, gt=0, lt=1, description="NMS: overlap above which boxes merge")
    device: str = Field("cpu", description="cpu, cuda:0, ...")
    max_batch: int = Field(4, ge=1, le=64, description="frames per inference call")
    classes: dict[ClassName, ClassThreshold] = Field(
        default_factory=lambda: dict(_KEPT_CLASSES),
        min_length=1,
        description="class name -> least confidence: only these classes are tracked, "
        "stored and used by the dumping logic; every other box is dropped before tracking "
        "(the trash-bag class of dumping.trash_bag_class is kept as well). A name the model "
        "does not know stops the detector at start-up",
    )
    tracker: TrackerSettings = Field(default_factory=TrackerSettings)

    @model_validator(mode="after")
    def verify_class_thresholds(self) -> Self:
        """A threshold written below the network's floor would never apply: say so rather
        than let the file promise boxes that never come (the defaults are left alone)."""
        if "classes" not in self.model_fields_set:
            return self
        below = [f"{n} ({v:g})" for n, v in self.classes.items() if v < self.confidence]
        if below:
            raise ValueError(
                f"detector.classes: {', '.join(below)} {'is' if len(below) == 1 else 'are'} "
                f"below detector.confidence ({self.confidence:g}), which the network applies "
                "first; lower detector.confidence or raise the threshold"
            )
        return self

    @field_validator("classes", mode="before")
    @classmethod
    def verify_classes_mapping(cls, value: Any) -> Any:
        if isinstance(value, list | tuple):
            raise ValueError(
                "expected class name -> least confidence (e.g. person: 0.35), got a list"
            )
        return value


class UltralyticsDetector(_DetectorBase):
    """A PyTorch `.pt` checkpoint through ultralytics (a folder ultralytics exported loads too,
    which configs written before `type: openvino` existed rely on)."""

    type: Literal["ultralytics"] = Field("ultralytics", description="detector backend")


class OpenVinoDetector(_DetectorBase):
    """An `*_openvino_model` folder exported by ultralytics (e.g. the shared int8 model), run
    on the OpenVINO runtime. Exports are static: `imgsz` must be the size it was exported at.
    `device`: cpu, or intel:gpu / intel:npu."""

    type: Literal["openvino"] = Field("openvino", description="detector backend")

    @field_validator("model")
    @classmethod
    def verify_folder(cls, value: Path) -> Path:
        # Ultralytics tells an OpenVINO export from other formats by this folder suffix.
        if not value.name.endswith("_openvino_model"):
            raise ValueError(
                "type openvino expects an exported folder named *_openvino_model, got "
                f"{value.name}; a .pt is type ultralytics, an .onnx is type onnx"
            )
        return value


class OnnxDetector(_DetectorBase):
    """An `.onnx` export run with ONNX Runtime directly (letterbox, decoding and NMS are ours);
    make one from a `.pt` with `pantau detector-export --format onnx --imgsz N`."""

    type: Literal["onnx"] = Field("onnx", description="detector backend")

    @field_validator("model")
    @classmethod
    def verify_onnx_file(cls, value: Path) -> Path:
        if value.suffix != ".onnx":
            raise ValueError(
                f"type onnx expects an .onnx file, got {value.name}; export one from a .pt "
                "with `pantau detector-export --format onnx`"
            )
        return value


_DETECTOR_TYPES: dict[str, type[_DetectorBase]] = {
    "ultralytics": UltralyticsDetector,
    "openvino": OpenVinoDetector,
    "onnx": OnnxDetector,
}


def _pick_detector(value: Any, handler: ValidatorFunctionWrapHandler, info: ValidationInfo) -> Any:
    """Dispatch on `type` ourselves rather than with pydantic's discriminator: errors then read
    `detector.imgsz` (no tag in the path), and configs without `type` stay ultralytics."""
    if not isinstance(value, Mapping):
        return handler(value)
    kind = value.get("type", "ultralytics")
    model = _DETECTOR_TYPES.get(kind) if isinstance(kind, str) else None
    if model is None:
        raise ValueError(
            f"unknown detector type {kind!r}; expected one of: {', '.join(_DETECTOR_TYPES)}"
        )
    return model.model_validate(value, context=info.context)


DetectorSettings = Annotated[
    UltralyticsDetector | OpenVinoDetector | OnnxDetector, WrapValidator(_pick_detector)
]


class DetectSettings(Section):
    group_id: str = Field("pantau-detect", description="Kafka consumer group of the detectors")
    snapshot_dir: ConfigPath | None = Field(
        None, description="where the latest annotated frame per camera is written (PNG)"
    )
    snapshot_interval_s: float = Field(
        10.0, gt=0, description="at most one snapshot per camera per (a PNG costs about 8 ms)"
    )
    state_interval_s: float = Field(
        10.0,
        gt=0,
        le=3600,
        description="each camera's detector state (background, objects, open cases) is "
        "written to detect.state.v1 at least this often, and after every frame batch that "
        "moved one of its events on; a restarted detector resumes from the latest",
    )
    max_frame_age_s: float = Field(
        3.0,
        ge=0,
        description="frames captured longer ago are skipped, not queued, when the detector "
        "falls behind (0: never skip)",
    )
    # Read from the JPEG header before decoding: a small JPEG may claim a huge picture, and
    # decoding it would allocate width x height x 3 bytes (8000x8000: 192 MB).
    max_frame_width: int = Field(
        4096,
        gt=0,
        le=65_535,
        description="wider frames are dead letters, refused before their JPEG is decoded",
    )
    max_frame_height: int = Field(
        4096,
        gt=0,
        le=65_535,
        description="taller frames are dead letters, refused before their JPEG is decoded",
    )


class EvidenceSettings(Section):
    """The evidence pack of each dumping event: stills, owner crop and clip."""

    dir: ConfigPath = Field(
        Path("../.pantau/evidence"),
        validate_default=True,
        description="evidence store root (a filesystem path)",
    )
    pre_roll_s: float = Field(20.0, ge=0, description="the clip starts this long before the drop")
    post_roll_s: float = Field(
        5.0, ge=0, description="and ends this long after the alert (the clip follows the alert)"
    )
    blur_bystanders: bool = Field(True, description="pixelate people other than the owner")
    keep_originals: bool = Field(False, description="also keep unblurred copies (restricted)")
    jpeg_quality: int = Field(85, ge=30, le=100)
    buffer_s: float = Field(
        120.0, gt=0, description="frames kept per camera: pre-roll + dwell + confirmation"
    )


# Seconds from a drop until the dumping logic starts its dwell: the static-object model
# confirms an object after a few seconds still, and the owner usually stands by it a little.
_CONFIRM_AND_LEAVE_S = 20.0


class ViewSettings(Section):
    """The camera-view check: a moved, covered or blurred camera raises a camera-health alarm
    instead of dumping alarms, and the scene models relearn the new view quietly."""

    enabled: bool = Field(True, description="watch every camera's view in `pantau detect`")
    relearn_s: float = Field(
        30.0, gt=0, le=600, description="after a move, seconds the scene models relearn quietly"
    )
    moved_after_s: float = Field(
        3.0,
        ge=0,
        le=60,
        description="seconds the view must stay changed to count as moved (a bus passing in "
        "front of the lens only holds the frames)",
    )
    tamper_after_s: float = Field(
        2.0, ge=0, le=60, description="seconds covered or blurred before the tamper alarm"
    )
    moved_frac: float = Field(
        0.6,
        gt=0,
        lt=1,
        description="share of the scene's outline (strong edges) no longer where it was, above "
        "which the view has moved",
    )
    uniform_spread: float = Field(
        6.0,
        ge=0,
        lt=128,
        description="grey-level standard deviation (0-255) below which the picture is covered",
    )
    blur_ratio: float = Field(
        0.4,
        ge=0,
        lt=1,
        description="detail below this share of the camera's usual detail: the picture is "
        "blurred (out of focus, smeared lens)",
    )


class DumpingSettings(Section):
    """Thresholds of the dumping logic (distances in multiples of the owner's box size)."""

    enabled: bool = Field(True, description="run the dumping logic in `pantau detect`")
    default_dwell_s: float = Field(
        30.0, gt=0, description="dwell of the whole frame when a camera has no watch zone"
    )
    attend_ratio: float = Field(0.75, gt=0, description="owner this near attends the object")
    associate_ratio: float = Field(1.5, gt=0, description="owner search radius at appearance")
    max_age_s: float = Field(3600.0, gt=0, description="an uncleaned object expires after this")
    trash_bag_class: int | None = Field(
        None, ge=0, description="class id of a trash-bag class, when the model has one"
    )
    evidence: EvidenceSettings = _section()
    view: ViewSettings = _section()


class IngestSettings(Section):
    heartbeat_interval_s: float = Field(5.0, gt=0, description="camera heartbeat period")
    motion: MotionSettings = Field(
        default_factory=MotionSettings,
        description="every camera's motion gate (a camera's own `motion` keys override)",
    )
    reconnect_initial_s: float = Field(1.0, gt=0)
    reconnect_max_s: float = Field(30.0, gt=0)
    max_future_skew_s: float = Field(
        120.0, ge=0, description="readings stamped further in the future are rejected"
    )
    earliest_observation: AwareDatetime = Field(
        datetime(2015, 1, 1, tzinfo=UTC),
        description="readings stamped before this are rejected (a clock that was never set)",
    )
    max_reading_bytes: int = Field(
        256 * 1024,
        ge=1024,
        le=16 * 1024 * 1024,
        description="largest MQTT payload or HTTP item taken as one reading; larger is refused",
    )
    # This machine only, unless set: a listener on the network is a choice, and without TLS
    # one that start-up warns about (gateway secrets would cross the network in clear text).
    http_host: str = Field(
        "127.0.0.1",
        description="address `pantau ingest http` listens on (0.0.0.0: every interface; "
        "with http_tls_cert and http_tls_key, as gateways' secrets cross the network)",
    )
    http_port: int = Field(8088, ge=1, le=65535, description="port of `pantau ingest http`")
    http_max_items: int = Field(
        5000, ge=1, description="most readings in one POST /v1/readings; more is refused (413)"
    )
    http_max_body_bytes: int = Field(
        4 * 1024 * 1024,
        ge=1024,
        description="largest POST /v1/readings body in bytes; larger is refused (413)",
    )
    http_allow_anonymous: bool = Field(
        False,
        description="take POST /v1/readings without credentials, for any sensor: an open "
        "door, logged as such at start-up (readings then name no gateway); otherwise every "
        "request must come from a registered gateway (Bearer <id>.<secret>, or Basic)",
    )
    http_tls_cert: ConfigPath | None = Field(
        None,
        description="certificate chain (PEM) served for HTTPS; set together with http_tls_key",
    )
    http_tls_key: ConfigPath | None = Field(
        None,
        description="private key (PEM, not encrypted) of http_tls_cert; keep it readable by "
        "the ingest only",
    )
    # 10 s: a gateway's batch of a few hundred readings takes milliseconds on a working link;
    # a client still sending after 10 s is broken or hostile, and holds a connection meanwhile.
    http_read_timeout_s: float = Field(
        10.0,
        gt=0,
        le=300,
        description="a request's headers and body must arrive within this many seconds of its "
        "first byte, else it is answered 408 and its connection closed",
    )
    http_max_connections: int = Field(
        256,
        ge=1,
        le=10_000,
        description="most client connections open at once; a further one is answered 503 "
        "and closed",
    )

    @model_validator(mode="after")
    def verify_http_tls(self) -> Self:
        if (self.http_tls_cert is None) != (self.http_tls_key is None):
            raise ValueError(
                "ingest.http_tls_cert and ingest.http_tls_key go together: set both (HTTPS) "
                "or neither"
            )
        return self


class SinkSettings(Section):
    group_id: str = Field("pantau-sink", description="Kafka consumer group of the sink")
    client: Literal["confluent", "kafka-python"] = Field(
        "confluent",
        description="Kafka client of the sink: librdkafka consumes about 8x faster here",
    )
    batch_max_rows: int = Field(20_000, ge=1, description="flush when this many rows are buffered")
    workers: int = Field(
        1, ge=1, le=64, description="sink processes (Python decodes on one core each)"
    )
    flush_interval_s: float = Field(0.5, gt=0, le=1.0, description="and at least this often")
    retry_initial_s: float = Field(0.5, gt=0, description="first back-off when the database fails")
    retry_max_s: float = Field(15.0, gt=0)
    detection_sample_s: float = Field(
        1.0, ge=0, description="store a tracked object's box at most once per this (0: all)"
    )
    metrics_interval_s: float = Field(10.0, gt=0, description="how often the sink records metrics")


class RetentionSettings(Section):
    raw_days: int = Field(90, ge=1, description="readings, detections, health, metrics")
    rollup_days: int = Field(730, ge=1, description="hourly and daily rollups")
    incident_days: int = Field(730, ge=1, description="dumping events, alerts, notifications")


class StorageSettings(Section):
    timescale: Literal["auto", "on", "off"] = Field(
        "auto", description="use TimescaleDB when the extension is available (auto)"
    )
    retention: RetentionSettings = _section()
    compress_after_days: int = Field(7, ge=1, description="TimescaleDB: compress older chunks")
    partitions_ahead_days: int = Field(
        7, ge=1, description="PostgreSQL: daily partitions created this far ahead"
    )
    analyst_evidence_access: bool = Field(
        False, description="may pantau_analyst read the evidence references of dumping events"
    )


class ServicesSettings(Section):
    """Native development services (`pantau services`); deployments use docker-compose."""

    state_dir: ConfigPath = Field(
        Path("../.pantau"), validate_default=True, description="data, logs and caches"
    )
    kafka_controller_port: int = Field(9093, ge=1, le=65535)


Severity = Literal["critical", "major", "minor", "warning", "info"]


class _RuleBase(Section):
    id: SourceId = Field(description="the alarm type this rule raises, e.g. pm25-high")
    sensor_type: SensorType | None = Field(None, description="only sensors of this type")
    sensors: tuple[SourceId, ...] = Field((), description="only these sensors (empty: all)")
    tps_only: bool = Field(False, description="only containers at a TPS")
    severity: Severity = "major"

    def applies_to(self, sensor: SensorSettings) -> bool:
        if self.sensor_type is not None and sensor.type != self.sensor_type:
            return False
        if self.sensors and sensor.id not in self.sensors:
            return False
        return not (self.tps_only and not sensor.tps)


class ThresholdRule(_RuleBase):
    """Raise when a quantity reaches `raise_above`; clear only once it falls below `clear_below`."""

    type: Literal["threshold"] = "threshold"
    quantity: str
    raise_above: float
    clear_below: float
    critical_above: float | None = Field(None, description="escalate to critical at or above")

    @model_validator(mode="after")
    def verify_hysteresis(self) -> Self:
        if self.clear_below > self.raise_above:
            raise ValueError(f"rule {self.id}: clear_below must not be above raise_above")
        return self


class RateOfChangeRule(_RuleBase):
    """Raise when a quantity rises faster than `rise` per `period_s` (e.g. a river rising)."""

    type: Literal["rate_of_change"] = "rate_of_change"
    quantity: str
    rise: float = Field(gt=0, description="raise when it rose at least this much ...")
    period_s: float = Field(600.0, gt=0, description="... within this many seconds")


class StaleRule(_RuleBase):
    """Raise when a sensor has sent nothing for `after_s`; clear on its next reading."""

    type: Literal["stale"] = "stale"
    after_s: float = Field(gt=0)


Rule = Annotated[ThresholdRule | RateOfChangeRule | StaleRule, Field(discriminator="type")]


class StreamsSettings(Section):
    """The stream processors (faust): windows, rules, camera health, alarm lifecycle."""

    app_id: str = Field("pantau-streams", description="faust app id (consumer group, tables)")
    data_dir: ConfigPath = Field(
        Path("../.pantau/streams"), validate_default=True, description="faust's local state"
    )
    window_s: int = Field(60, ge=1, description="tumbling window of the reading statistics")
    window_grace_s: float = Field(
        10.0, ge=0, description="readings this late still count in their window"
    )
    camera_offline_after_s: float = Field(
        30.0, gt=0, description="no heartbeat for this long: camera offline alarm"
    )
    check_interval_s: float = Field(1.0, gt=0, description="how often timers look for silence")
    stall_after_s: float = Field(
        60.0,
        gt=0,
        description="an input partition with records waiting and no commit for this long "
        "restarts the worker",
    )
    cooldown_s: float = Field(
        300.0,
        ge=0,
        description="a condition returning this soon after its clear re-opens the same alarm "
        "without a new notification",
    )
    camera_severity: Severity = "major"
    camera_view_severity: Severity = Field(
        "major",
        description="camera_view_changed: the detector saw the camera turned onto another "
        "view; its zones must be checked",
    )
    camera_tamper_severity: Severity = Field(
        "major",
        description="camera_tampered: the picture is covered or blurred (a fogged lens at "
        "dawn too, hence not critical by default: critical ignores quiet hours)",
    )
    dumping_severity: Severity = "major"
    escalate_after_s: dict[Severity, Annotated[float, Field(gt=0)]] = Field(
        default_factory=dict,
        description="an alarm still OPEN (nobody acknowledged it) this long after it opened, "
        "by severity, is sent once more, to the routes of escalation_level 1; a severity not "
        "listed is never passed on",
    )
    cleanup_confirm_s: float = Field(
        600.0,
        gt=0,
        description="a dumping alarm resolved while its object is still on camera this long "
        "after the resolve is re-opened (once); the camera seeing the spot cleaned confirms it",
    )
    rules: tuple[Rule, ...] = ()


class Route(Section):
    """Who hears about which alarms, and how."""

    name: str = Field(description="shown in logs and the delivery log")
    alarm_types: tuple[str, ...] = Field((), description="only these alarm types (empty: all)")
    desa: tuple[str, ...] = Field((), description="only alarms in these desa (empty: all)")
    kecamatan: tuple[str, ...] = Field(
        (), description="only alarms in these kecamatan (empty: all)"
    )
    escalation_level: int = Field(
        0,
        ge=0,
        le=1,
        description="0: the alarms as they happen; 1: the next level (e.g. the kecamatan "
        "coordinator), which hears of an alarm only once nobody acknowledged it within "
        "streams.escalate_after_s, and of its later changes",
    )
    min_severity: Severity = "info"
    telegram_chat_ids: tuple[str, ...] = ()
    emails: tuple[str, ...] = ()
    webhooks: tuple[str, ...] = Field((), description="URLs that receive a JSON POST")
    quiet_hours: tuple[str, str] | None = Field(
        None,
        description='("22:00", "06:00") local time: nothing but critical alarms then',
    )


class TelegramSettings(Section):
    base_url: str = Field("https://api.telegram.org", description="Bot API base URL")
    token: SecretStr | None = Field(None, description="bot token (from the environment)")
    buttons: bool = Field(
        True,
        description="alarm messages carry buttons (Terima, Berangkat, Selesai, Alarm keliru) "
        "that `pantau telegram` answers",
    )
    updates: Literal["polling", "webhook"] = Field(
        "polling",
        description="how `pantau telegram` receives button presses: long polling (getUpdates, "
        "works behind NAT) or a webhook Telegram calls",
    )
    poll_timeout_s: int = Field(25, ge=1, le=50, description="long-polling wait per request")
    webhook_host: str = Field("127.0.0.1", description="webhook mode: listen address")
    webhook_port: int = Field(8443, ge=1, le=65535, description="webhook mode: listen port")
    webhook_secret: SecretStr | None = Field(
        None,
        description="webhook mode: the secret Telegram sends back in "
        "X-Telegram-Bot-Api-Secret-Token (setWebhook's secret_token); required there",
    )
    action_wait_s: float = Field(
        8.0,
        gt=0,
        le=14,
        description="how long a button press waits for the stream processor's decision "
        "before it is answered as sent (Telegram wants an answer within 15 s)",
    )
    photo_wait_s: float = Field(
        3600.0, gt=0, description="after Selesai, how long the bot waits for the photo"
    )
    link_code_ttl_s: float = Field(
        86400.0, gt=0, description="a one-time link code (`pantau users link`) lasts this long"
    )

    @model_validator(mode="after")
    def verify_webhook(self) -> Self:
        if self.updates == "webhook" and self.webhook_secret is None:
            raise ValueError(
                "notify.telegram.updates: webhook needs notify.telegram.webhook_secret (from "
                "the environment), or anyone could send the bot button presses"
            )
        return self


class EmailSettings(Section):
    host: str = "localhost"
    port: int = Field(25, ge=1, le=65535)
    starttls: bool = False
    username: str | None = None
    password: SecretStr | None = None
    sender: str = Field("pantau@localhost", description="From: address")


class NotifySettings(Section):
    group_id: str = Field("pantau-notify", description="Kafka consumer group of the notifier")
    language: Literal["id", "en"] = Field("id", description="Bahasa Indonesia or English")
    incident_url: str = Field(
        "http://localhost:8090/incidents/{alarm_id}",
        description="link in every message; {alarm_id} is replaced",
    )
    retry_initial_s: float = Field(2.0, gt=0)
    retry_max_s: float = Field(300.0, gt=0)
    max_attempts: int = Field(20, ge=1, description="then the delivery is marked failed")
    timeout_s: float = Field(10.0, gt=0, description="per delivery attempt")
    telegram: TelegramSettings = _section()
    email: EmailSettings = _section()
    routes: tuple[Route, ...] = ()


class ConsoleSettings(Section):
    """The incident console (`pantau console`): web pages and the REST API for the people
    who act on alarms."""

    # This machine only, unless set: like the HTTP ingest, a listener on the network is a
    # choice, and without TLS one that start-up warns about (passwords cross the network).
    host: str = Field(
        "127.0.0.1",
        description="address the console listens on (0.0.0.0: every interface; then with "
        "tls_cert and tls_key, or behind a TLS proxy)",
    )
    port: int = Field(8090, ge=1, le=65535, description="port of `pantau console`")
    public_url: str = Field(
        "http://localhost:8090",
        description="the console as people reach it; links on the wall and in notifications",
    )
    tls_cert: ConfigPath | None = Field(
        None, description="certificate chain (PEM) served for HTTPS; set with tls_key"
    )
    tls_key: ConfigPath | None = Field(None, description="private key (PEM) of tls_cert")
    trusted_proxies: tuple[str, ...] = Field(
        (),
        description="addresses of the TLS proxies in front of the console, whose "
        "X-Forwarded-For and X-Forwarded-Proto are believed (the client's address then "
        "counts for login limits and the audit log); empty: the connection's own address",
    )
    session_hours: float = Field(
        12.0, gt=0, le=24 * 30, description="a login lasts this long without use"
    )
    secure_cookies: bool | None = Field(
        None,
        description="mark the session cookie Secure (only sent over HTTPS); default: when "
        "public_url is https",
    )
    login_attempts: int = Field(
        5, ge=1, le=1000, description="failed logins per user and per address per window"
    )
    login_window_s: float = Field(
        300.0, gt=0, description="the window of login_attempts; then it is refused (429)"
    )
    max_upload_bytes: int = Field(
        10 * 1024 * 1024,
        ge=64 * 1024,
        le=100 * 1024 * 1024,
        description="largest photo uploaded with an action",
    )
    language: Literal["id", "en"] = Field("id", description="default language of the pages")
    map_tiles_url: str | None = Field(
        None,
        description="map tile URL template ({z}/{x}/{y}) for the incident map, e.g. an "
        "offline tile server; none: coordinates are shown as text",
    )

    @model_validator(mode="after")
    def verify_tls(self) -> Self:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError(
                "console.tls_cert and console.tls_key go together: set both or neither"
            )
        if self.map_tiles_url is not None and not self.map_tiles_url.strip():
            # An empty environment variable in the YAML: no tile server.
            object.__setattr__(self, "map_tiles_url", None)
        return self

    @property
    def cookies_secure(self) -> bool:
        if self.secure_cookies is not None:
            return self.secure_cookies
        return self.public_url.startswith("https://")

    def incident_url(self, alarm_id: str) -> str:
        return f"{self.public_url.rstrip('/')}/incidents/{alarm_id}"


class RuntimeSettings(Section):
    """How long-running commands are kept alive (`pantau sink`, `pantau detect`, ...): each
    runs its stage in worker processes under a supervisor that restarts a worker that exits
    with an error or stops making progress, with back-off."""

    supervise: bool = Field(
        True, description="run the stage under the supervisor (off: one bare process)"
    )
    restart_initial_s: float = Field(1.0, gt=0, description="first wait before a restart")
    restart_max_s: float = Field(60.0, gt=0, description="longest wait between restarts")
    restart_reset_after_s: float = Field(
        60.0, gt=0, description="a worker that ran this long starts the back-off afresh"
    )
    stall_after_s: float = Field(
        120.0,
        ge=0,
        description="a worker whose loop has not come round for this long is restarted (0: never)",
    )
    status_dir: ConfigPath = Field(
        Path("../.pantau/health"),
        validate_default=True,
        description="where each supervisor writes its status (`pantau health` reads it)",
    )
    status_interval_s: float = Field(
        10.0, gt=0, description="how often status and `up` metrics are written"
    )


class LoggingSettings(Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


class DebugSettings(Section):
    failpoints: tuple[str, ...] = Field(
        (), description="named points where a process exits abruptly (crash-recovery tests)"
    )


class Settings(Section):
    site: str = Field("mojokerto", description="deployment name")
    timezone: str = Field("Asia/Jakarta", description="time zone for people (WIB)")
    kafka: KafkaSettings = _section()
    postgres: PostgresSettings = _section()
    mqtt: MqttSettings = _section()
    cameras: tuple[CameraSettings, ...] = ()
    sensors: tuple[SensorSettings, ...] = ()
    gateways: tuple[GatewaySettings, ...] = Field(
        (), description="who may send readings, for which sensors, with which secret"
    )
    detector: DetectorSettings | None = None
    detect: DetectSettings = _section()
    dumping: DumpingSettings = _section()
    ingest: IngestSettings = _section()
    sink: SinkSettings = _section()
    streams: StreamsSettings = _section()
    notify: NotifySettings = _section()
    console: ConsoleSettings = _section()
    storage: StorageSettings = _section()
    services: ServicesSettings = _section()
    runtime: RuntimeSettings = _section()
    logging: LoggingSettings = _section()
    debug: DebugSettings = _section()

    @model_validator(mode="after")
    def verify_unique_ids(self) -> Self:
        groups: list[tuple[str, tuple[CameraSettings | SensorSettings | ZoneSettings, ...]]] = [
            ("camera", self.cameras),
            ("sensor", self.sensors),
        ]
        groups += [(f"camera {c.id}: zone", c.zones) for c in self.cameras]
        for kind, items in groups:
            seen: set[str] = set()
            for item in items:
                if item.id in seen:
                    raise ValueError(f"{kind} id {item.id!r} is used twice")
                seen.add(item.id)
        return self

    @model_validator(mode="after")
    def verify_rule_sensors(self) -> Self:
        known = {sensor.id for sensor in self.sensors}
        for rule in self.streams.rules:
            unknown = [s for s in rule.sensors if s not in known]
            if unknown:
                raise ValueError(f"streams rule {rule.id}: unknown sensors {', '.join(unknown)}")
        return self

    @model_validator(mode="after")
    def verify_reconnect_bounds(self) -> Self:
        if self.ingest.reconnect_max_s < self.ingest.reconnect_initial_s:
            raise ValueError("ingest.reconnect_max_s must be >= ingest.reconnect_initial_s")
        return self

    @model_validator(mode="after")
    def verify_evidence_buffer(self) -> Self:
        """At the alert the frames from before the drop must still be buffered: the drop
        lies the dwell time, plus the seconds an object takes to be confirmed and its
        owner to leave, before it."""
        if not self.dumping.enabled:
            return self
        evidence = self.dumping.evidence
        for camera in self.cameras:
            dwell = max(
                (z.dwell_s for z in camera.zones if z.kind == "watch"),
                default=self.dumping.default_dwell_s,
            )
            needed = evidence.pre_roll_s + dwell + _CONFIRM_AND_LEAVE_S
            if evidence.buffer_s < needed:
                raise ValueError(
                    f"dumping.evidence.buffer_s ({evidence.buffer_s:g} s) must cover pre_roll_s "
                    f"+ the longest dwell + {_CONFIRM_AND_LEAVE_S:g} s = {needed:g} s for "
                    f"camera {camera.id}"
                )
        return self

    def camera(self, camera_id: str) -> CameraSettings:
        for camera in self.cameras:
            if camera.id == camera_id:
                return camera
        known = ", ".join(c.id for c in self.cameras) or "none"
        raise SettingsError(f"camera {camera_id!r} is not configured (configured: {known})")

    def sensor_registry(self) -> dict[str, SensorSettings]:
        return {sensor.id: sensor for sensor in self.sensors}

    def gateway_of_sensor(self) -> dict[str, str]:
        """sensor id → the one gateway that may send for it (sensors that several gateways
        that can log in may send for are left out: the sender is not known from the sensor
        alone)."""
        owners: dict[str, list[str]] = {}
        for gateway in self.gateways:
            if not gateway.can_log_in:
                continue
            for sensor_id in gateway.sensors:
                owners.setdefault(sensor_id, []).append(gateway.id)
        return {sensor: ids[0] for sensor, ids in owners.items() if len(ids) == 1}

    @model_validator(mode="after")
    def verify_gateways(self) -> Self:
        known = {sensor.id for sensor in self.sensors}
        seen: set[str] = set()
        for gateway in self.gateways:
            if gateway.id in seen:
                raise ValueError(f"gateway id {gateway.id!r} is used twice")
            seen.add(gateway.id)
            if gateway.id == self.mqtt.username:
                raise ValueError(f"gateway {gateway.id}: its id is the ingest's MQTT user name")
            unknown = sorted(set(gateway.sensors) - known)
            if unknown:
                raise ValueError(
                    f"gateway {gateway.id}: sensors not in the registry: {', '.join(unknown)}"
                )
        return self


# --------------------------------------------------------------------------- loading


_YamlLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


SECRETS_FILE_ENV = "PANTAU_SECRETS_FILE"


def secrets_file(config_path: Path, environ: Mapping[str, str]) -> Path:
    """Where secrets are kept outside the environment: $PANTAU_SECRETS_FILE, else
    `.pantau/secrets.env` beside the configuration's folder (the development services'
    state folder, where `pantau services up` makes one)."""
    named = environ.get(SECRETS_FILE_ENV)
    if named:
        return Path(named)
    return Path(os.path.abspath(config_path)).parent.parent / ".pantau" / "secrets.env"


def read_env_file(path: Path) -> dict[str, str]:
    """`NAME=value` lines (the format of docker compose's .env); blank lines and # comments
    are skipped, values are taken as they stand."""
    values: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        name, sep, value = stripped.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name.strip()):
            raise SettingsError(f"{path}:{number}: expected NAME=value")
        values[name.strip()] = value.strip()
    return values


def with_secrets(config_path: Path, environ: Mapping[str, str]) -> dict[str, str]:
    """The environment, completed from the secrets file (if there is one) for the names it
    does not set itself: the environment always wins."""
    path = secrets_file(config_path, environ)
    if not path.is_file():
        return dict(environ)
    return {**read_env_file(path), **environ}


def load_settings(path: Path, environ: Mapping[str, str]) -> Settings:
    """Read, interpolate, override and validate; raises SettingsError with every problem.
    Secrets missing from `environ` are taken from the secrets file (`with_secrets`)."""
    environ = with_secrets(path, environ)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SettingsError(f"{path}: config file not found") from None
    except OSError as exc:
        raise SettingsError(f"{path}: cannot read config file: {exc.strerror}") from exc
    try:
        # libyaml's parser where PyYAML has it: every command reads the file at start-up, and
        # the pure-Python one takes tens of milliseconds on a config with hundreds of sensors.
        raw = yaml.load(text, Loader=_YamlLoader)  # noqa: S506 (a safe loader)
    except yaml.YAMLError as exc:
        raise SettingsError(f"{path}: not valid YAML: {exc}") from exc
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise SettingsError(
            f"{path}: expected a mapping at the top level, got {type(raw).__name__}"
        )

    problems: list[str] = []
    data = _interpolate(raw, environ, (), path, problems)
    from_env = _apply_env_overrides(data, environ, problems)
    if problems:
        raise SettingsError("\n".join(problems))
    try:
        return Settings.model_validate(data, context={"base_dir": path.absolute().parent})
    except ValidationError as exc:
        raise SettingsError(_format_errors(exc, path, from_env)) from exc


def settings_from_mapping(data: Mapping[str, Any], base_dir: Path) -> Settings:
    """Validate an in-memory mapping (tests, tools); relative paths resolve against base_dir."""
    return Settings.model_validate(dict(data), context={"base_dir": base_dir})


_VAR = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\}")


def expand_variables(text: str, environ: Mapping[str, str], unset: Callable[[str], str]) -> str:
    """`${VAR}` and `${VAR:-default}` in `text` from `environ`: a variable that is set wins,
    even when set to nothing; else its default; else `unset(name)` gives the text to put
    there, or raises."""

    def substitute(match: re.Match[str]) -> str:
        name, default = match.group("name"), match.group("default")
        if name in environ:
            return environ[name]
        if default is not None:
            return default
        return unset(name)

    return _VAR.sub(substitute, text)


def _interpolate(
    node: Any,
    environ: Mapping[str, str],
    loc: tuple[str | int, ...],
    path: Path,
    problems: list[str],
) -> Any:
    if isinstance(node, dict):
        return {k: _interpolate(v, environ, (*loc, k), path, problems) for k, v in node.items()}
    if isinstance(node, list):
        return [_interpolate(v, environ, (*loc, i), path, problems) for i, v in enumerate(node)]
    if isinstance(node, str) and "${" in node:

        def unset(name: str) -> str:
            problems.append(
                f"{path}: {_loc_text(loc)}: environment variable {name} is not set "
                "(and the value gives no default)"
            )
            return ""

        return expand_variables(node, environ, unset)
    return node


def _apply_env_overrides(
    data: dict[str, Any], environ: Mapping[str, str], problems: list[str]
) -> dict[tuple[str | int, ...], str]:
    origin: dict[tuple[str | int, ...], str] = {}
    for name in sorted(environ):
        if not name.startswith(ENV_PREFIX):
            continue
        parts = [p.lower() for p in name[len(ENV_PREFIX) :].split("__") if p]
        if not parts:
            problems.append(f"environment variable {name}: names no setting")
            continue
        raw_value = environ[name]
        value: Any = raw_value
        if raw_value.lstrip().startswith(("[", "{")):
            try:
                value = yaml.safe_load(raw_value)
            except yaml.YAMLError as exc:
                problems.append(f"environment variable {name}: not valid YAML: {exc}")
                continue
        node: Any = data
        loc: tuple[str | int, ...] = ()
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            key: str | int = int(part) if part.isdigit() else part
            if isinstance(node, list):
                if not isinstance(key, int) or key >= len(node):
                    problems.append(
                        f"environment variable {name}: {_loc_text(loc)} has {len(node)} items; "
                        f"{part!r} is not one of their indexes"
                    )
                    break
            elif not isinstance(node, dict):
                problems.append(f"environment variable {name}: {_loc_text(loc)} is not a section")
                break
            loc = (*loc, key)
            if last:
                node[key] = value
                origin[loc] = name
            else:
                if isinstance(node, dict) and key not in node:
                    node[key] = {}
                node = node[key]
    return origin


def _loc_text(loc: tuple[str | int, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def _format_errors(
    exc: ValidationError, path: Path, from_env: Mapping[tuple[str | int, ...], str]
) -> str:
    lines = []
    for error in exc.errors(include_url=False):
        loc = tuple(
            p for p in error["loc"] if not (isinstance(p, str) and p.startswith("function-"))
        )
        origin = str(path)
        for i in range(len(loc), 0, -1):
            if loc[:i] in from_env:
                origin = f"environment variable {from_env[loc[:i]]}"
                break
        where = _loc_text(loc)
        if error["type"] == "extra_forbidden":
            key = loc[-1] if loc else "?"
            message = f"unknown key {key!r}"
            candidates = _known_keys(loc[:-1])
            close = difflib.get_close_matches(str(key), candidates, n=1)
            if close:
                message += f" (did you mean {close[0]!r}?)"
            elif candidates:
                message += f" (known keys: {', '.join(sorted(candidates))})"
        else:
            message = error["msg"]
            secret = any(isinstance(p, str) and p in _SECRET_KEYS for p in loc)
            given = error.get("input")
            # Only a single value is quoted: a whole section may hold a secret (a gateway's
            # `secret`, a camera's URL) that must not reach a terminal or a log.
            scalar = isinstance(given, str | int | float | bool) or given is None
            if error["type"] != "missing" and not secret and "input" in error and scalar:
                shown = repr(given)
                message += f" (got {shown[:80]})"
        lines.append(f"{origin}: {where}: {message}")
    return "\n".join(lines)


def _known_keys(loc: tuple[str | int, ...]) -> list[str]:
    """Field names of the section at `loc`, for 'did you mean' hints."""
    model: Any = Settings
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part) if _is_model(model) else None
        if field is None:
            return []
        model = _model_of(field.annotation)
        if model is None:
            return []
    return list(model.model_fields) if _is_model(model) else []


def _is_model(obj: Any) -> bool:
    return isinstance(obj, type) and issubclass(obj, BaseModel)


def _model_of(annotation: Any) -> Any:
    if _is_model(annotation):
        return annotation
    origin = get_origin(annotation)
    if origin in (tuple, list, Union, types.UnionType):
        for arg in get_args(annotation):
            found = _model_of(arg)
            if found is not None:
                return found
    if origin is Annotated:
        return _model_of(get_args(annotation)[0])
    return None
