"""Gateway secrets, the broker's access files, the secrets file: pure, no sockets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from pantau.access import SECRETS, broker_files, ensure_secrets
from pantau.credentials import (
    CredentialError,
    hash_secret,
    new_secret,
    parse_hash,
    stable_salt,
    stable_suffix,
    verify_secret,
)
from pantau.settings import (
    MIN_SECRET_CHARS,
    Settings,
    SettingsError,
    load_settings,
    read_env_file,
    settings_from_mapping,
)

SENSORS = [
    {"id": "aq-01", "type": "air_quality"},
    {"id": "aq-02", "type": "air_quality"},
    {"id": "wl-01", "type": "water_level"},
]
A, B, C = "a" * 20, "b" * 20, "c" * 20


def settings_with(gateways: list[dict[str, object]], **mqtt: object) -> Settings:
    return settings_from_mapping(
        {"sensors": SENSORS, "gateways": gateways, "mqtt": {"password": "i" * 20, **mqtt}},
        Path("."),
    )


def loaded_with(tmp_path: Path, gateways: list[dict[str, object]], **mqtt: object) -> Settings:
    """As `pantau` loads them: from a file, with errors worded for people."""
    config = tmp_path / "pantau.yaml"
    document = {"sensors": SENSORS, "gateways": gateways, "mqtt": {"password": "i" * 20, **mqtt}}
    config.write_text(yaml.safe_dump(document))
    return load_settings(config, {})


def test_a_hash_checks_its_secret_and_no_other() -> None:
    secret = new_secret()
    assert len(secret) >= MIN_SECRET_CHARS
    hashed = hash_secret(secret)
    assert hashed.startswith("$7$20000$")
    assert verify_secret(secret, hashed)
    assert not verify_secret(secret + "x", hashed)
    # Salted: the same secret hashes differently, unless the salt is given.
    assert hash_secret(secret) != hashed
    salt = stable_salt("gw", secret)
    assert hash_secret(secret, salt=salt) == hash_secret(secret, salt=salt)
    assert stable_salt("gw-2", secret) != salt


def test_mosquittos_own_hashes_are_understood() -> None:
    # As `mosquitto_passwd -b file alice s3cret` wrote it (101 iterations, its default).
    line = (
        "$7$101$PKEwsa9RXvwJZ9jn$WYI5pfP0vRxoExYxZA6XY2KHfzw5k898uLv4dsTHRrEzZBgue65YLkCPOyuK8w"
        "w2+tJeRMp9Lm6wxHHATKMLDg=="
    )
    assert parse_hash(line)[0] == 101
    assert verify_secret("s3cret", line)


@pytest.mark.parametrize(
    "hashed",
    ["", "plain-text", "$6$101$c2FsdA==$aGFzaA==", "$7$x$c2FsdA==$aGFzaA==", "$7$101$!!$aGFzaA==",
     "$7$101$c2FsdA==$aGFzaA=="],
)  # fmt: skip
def test_what_is_not_a_hash_is_refused_with_a_reason(hashed: str) -> None:
    with pytest.raises(CredentialError):
        parse_hash(hashed)


def test_the_ingest_client_id_suffix_needs_the_password() -> None:
    one = stable_suffix("password-one-long", "pantau-ingest", "host")
    assert one == stable_suffix("password-one-long", "pantau-ingest", "host")
    assert one != stable_suffix("password-two-long", "pantau-ingest", "host")
    assert one != stable_suffix("password-one-long", "pantau-ingest", "other-host")


def test_the_broker_files_grant_each_gateway_its_own_sensors_only() -> None:
    settings = settings_with(
        [
            {"id": "gw-a", "sensors": ["aq-01", "aq-02"], "secret": A},
            {"id": "gw-b", "sensors": ["wl-01"], "secret_hash": hash_secret(B)},
            {"id": "gw-gone", "sensors": ["aq-01"], "secret": C, "revoked": True},
            {"id": "gw-none", "sensors": ["aq-01"]},
        ]
    )
    passwd, acl = broker_files(settings)
    users = dict(line.split(":", 1) for line in passwd.splitlines())
    assert set(users) == {"pantau-ingest", "gw-a", "gw-b"}
    assert verify_secret(A, users["gw-a"]) and verify_secret(B, users["gw-b"])
    assert verify_secret("i" * 20, users["pantau-ingest"])
    assert acl.split("\n\n") == [
        "# Made by `pantau` from the sensor and gateway registry; edits are overwritten.\n"
        "user pantau-ingest\ntopic read pantau/sensors/+",
        "user gw-a\ntopic write pantau/sensors/aq-01\ntopic write pantau/sensors/aq-02",
        "user gw-b\ntopic write pantau/sensors/wl-01\n",
    ]
    # Made again from unchanged settings: the same files (no needless broker reload).
    assert broker_files(settings) == (passwd, acl)
    _, dev_acl = broker_files(settings, any_prefix=True)
    assert "topic read +/sensors/+" in dev_acl
    assert "topic write +/sensors/wl-01" in dev_acl


@pytest.mark.parametrize(
    ("gateways", "problem"),
    [
        ([{"id": "gw", "sensors": ["aq-99"], "secret": A}], "sensors not in the registry: aq-99"),
        ([{"id": "gw", "sensors": ["aq-01"], "secret": A, "secret_hash": hash_secret(A)}],
         "set secret_hash or secret, not both"),
        ([{"id": "gw", "sensors": ["aq-01"], "secret_hash": "$7$nope"}], "secret_hash:"),
        ([{"id": "gw", "sensors": ["aq-01"], "secret": "short"}], "at least 16 characters"),
        ([{"id": "pantau-ingest", "sensors": ["aq-01"], "secret": A}], "the ingest's MQTT user"),
        ([{"id": "gw", "sensors": ["aq-01"], "secret": A}, {"id": "gw", "sensors": ["aq-02"],
          "secret": B}], "used twice"),
    ],
)  # fmt: skip
def test_a_bad_registry_is_refused_with_the_reason(
    gateways: list[dict[str, object]], problem: str, tmp_path: Path
) -> None:
    with pytest.raises(SettingsError) as caught:
        loaded_with(tmp_path, gateways)
    assert problem in str(caught.value)
    # The reason never quotes a secret, nor what was given as one.
    assert A not in str(caught.value) and "'short'" not in str(caught.value)


def test_a_short_password_is_refused_and_a_blank_one_is_none(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="at least 16 characters") as caught:
        loaded_with(tmp_path, [], password="too-short")
    assert "too-short" not in str(caught.value)
    settings = settings_from_mapping({"mqtt": {"password": "  "}}, Path("."))
    assert settings.mqtt.password is None
    with pytest.raises(SettingsError, match="PANTAU_MQTT_PASSWORD"):
        settings.mqtt.require_login()
    settings_from_mapping({"mqtt": {"allow_anonymous": True}}, Path(".")).mqtt.require_login()


def test_a_sensors_sender_is_known_only_when_one_gateway_may_send_for_it() -> None:
    settings = settings_with(
        [
            {"id": "gw-a", "sensors": ["aq-01", "aq-02"], "secret": A},
            {"id": "gw-b", "sensors": ["aq-02", "wl-01"], "secret": B},
            {"id": "gw-gone", "sensors": ["wl-01"], "secret": C, "revoked": True},
        ]
    )
    assert settings.gateway_of_sensor() == {"aq-01": "gw-a", "wl-01": "gw-b"}


def test_secrets_init_writes_what_is_missing_and_keeps_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "secrets.env"
    development = [s for s in SECRETS if s.development]
    assert ensure_secrets(path, development) == [s.name for s in development]
    assert os.stat(path).st_mode & 0o777 == 0o600
    first = read_env_file(path)
    assert ensure_secrets(path, development) == []
    assert read_env_file(path) == first
    added = ensure_secrets(path, SECRETS)
    assert set(added) == {s.name for s in SECRETS} - set(first)
    assert {k: v for k, v in read_env_file(path).items() if k in first} == first


def test_the_secrets_file_fills_what_the_environment_lacks(tmp_path: Path) -> None:
    config = tmp_path / "configs" / "pantau.yaml"
    config.parent.mkdir()
    config.write_text("mqtt:\n  password: ${PANTAU_MQTT_PASSWORD:-}\n")
    secrets = tmp_path / ".pantau" / "secrets.env"
    secrets.parent.mkdir()
    secrets.write_text("# made for the test\nPANTAU_MQTT_PASSWORD=" + "f" * 20 + "\n")
    loaded = load_settings(config, {})
    assert loaded.mqtt.password is not None
    assert loaded.mqtt.password.get_secret_value() == "f" * 20
    # The environment wins; another file can be named.
    env = {"PANTAU_MQTT_PASSWORD": "e" * 20}
    assert load_settings(config, env).mqtt.password.get_secret_value() == "e" * 20  # type: ignore[union-attr]
    other = tmp_path / "other.env"
    other.write_text("PANTAU_MQTT_PASSWORD=" + "o" * 20 + "\n")
    named = load_settings(config, {"PANTAU_SECRETS_FILE": str(other)})
    assert named.mqtt.password.get_secret_value() == "o" * 20  # type: ignore[union-attr]
    secrets.write_text("not a line of NAME=value\n")
    with pytest.raises(SettingsError, match="expected NAME=value"):
        load_settings(config, {})
