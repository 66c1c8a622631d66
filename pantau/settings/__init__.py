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

from pantau.settings.base import (
    CONSOLE_ROLE,
    MIN_SECRET_CHARS,
    WRITER_ROLE,
    ConfigPath,
    Location,
    Section,
    SettingsError,
    SourceId,
    StrongSecret,
)
from pantau.settings.cameras import CameraSettings, MotionSettings, ZoneSettings
from pantau.settings.console import ConsoleSettings
from pantau.settings.detector import (
    AutoDetector,
    ClassName,
    ClassThreshold,
    DetectorSettings,
    DetectSettings,
    DumpingSettings,
    EvidenceSettings,
    OnnxDetector,
    OpenVinoDetector,
    RegionSettings,
    TrackerSettings,
    UltralyticsDetector,
    ViewSettings,
)
from pantau.settings.ingest import IngestSettings
from pantau.settings.kafka import KafkaSettings, Replication, TopicPartitions, TopicReplication
from pantau.settings.loader import (
    DEFAULT_CONFIG,
    ENV_PREFIX,
    SECRETS_FILE_ENV,
    expand_variables,
    load_settings,
    read_env_file,
    secrets_file,
    settings_from_mapping,
    with_secrets,
)
from pantau.settings.mqtt import GatewaySettings, MqttSettings
from pantau.settings.notify import EmailSettings, NotifySettings, Route, TelegramSettings
from pantau.settings.postgres import PostgresSettings
from pantau.settings.root import Settings
from pantau.settings.runtime import DebugSettings, LoggingSettings, RuntimeSettings
from pantau.settings.sensors import Levels, SensorSettings, SensorType
from pantau.settings.storage import (
    RetentionSettings,
    ServicesSettings,
    SinkSettings,
    StorageSettings,
)
from pantau.settings.streams import (
    OpenBurningRule,
    PlaceRule,
    RateOfChangeRule,
    RiverDumpingRule,
    Rule,
    Severity,
    StaleRule,
    StreamsSettings,
    ThresholdRule,
    TpsOverflowRule,
)

__all__ = [
    "CONSOLE_ROLE",
    "DEFAULT_CONFIG",
    "ENV_PREFIX",
    "MIN_SECRET_CHARS",
    "SECRETS_FILE_ENV",
    "WRITER_ROLE",
    "AutoDetector",
    "CameraSettings",
    "ClassName",
    "ClassThreshold",
    "ConfigPath",
    "ConsoleSettings",
    "DebugSettings",
    "DetectSettings",
    "DetectorSettings",
    "DumpingSettings",
    "EmailSettings",
    "EvidenceSettings",
    "GatewaySettings",
    "IngestSettings",
    "KafkaSettings",
    "Levels",
    "Location",
    "LoggingSettings",
    "MotionSettings",
    "MqttSettings",
    "NotifySettings",
    "OnnxDetector",
    "OpenBurningRule",
    "OpenVinoDetector",
    "PlaceRule",
    "PostgresSettings",
    "RateOfChangeRule",
    "RegionSettings",
    "Replication",
    "RetentionSettings",
    "RiverDumpingRule",
    "Route",
    "Rule",
    "RuntimeSettings",
    "Section",
    "SensorSettings",
    "SensorType",
    "ServicesSettings",
    "Settings",
    "SettingsError",
    "Severity",
    "SinkSettings",
    "SourceId",
    "StaleRule",
    "StorageSettings",
    "StreamsSettings",
    "StrongSecret",
    "TelegramSettings",
    "ThresholdRule",
    "TopicPartitions",
    "TopicReplication",
    "TpsOverflowRule",
    "TrackerSettings",
    "UltralyticsDetector",
    "ViewSettings",
    "ZoneSettings",
    "expand_variables",
    "load_settings",
    "read_env_file",
    "secrets_file",
    "settings_from_mapping",
    "with_secrets",
]
