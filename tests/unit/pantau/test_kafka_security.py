"""Kafka security settings: what validates, what is refused and how it is said (never with the
password), and how `pantau.kafka.security_options` maps them onto each client library."""

from __future__ import annotations

import logging
import shutil
import ssl
import subprocess
from pathlib import Path
from typing import Any

import pytest
from faust.auth import SASLCredentials, SSLCredentials
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

from pantau import kafka
from pantau.settings import KafkaSettings, SettingsError, load_settings, settings_from_mapping

PASSWORD = "hunter2-Kafka-Mojokerto"
SASL = {"security_protocol": "SASL_PLAINTEXT", "sasl_username": "pantau", "sasl_password": PASSWORD}
SASL_SSL = {**SASL, "security_protocol": "SASL_SSL"}


def kafka_settings(base_dir: Path = Path("/srv/pantau"), **values: Any) -> KafkaSettings:
    return settings_from_mapping({"kafka": values}, base_dir).kafka


def load(tmp_path: Path, kafka_yaml: str, environ: dict[str, str] | None = None) -> KafkaSettings:
    config = tmp_path / "pantau.yaml"
    config.write_text("kafka:\n" + "".join(f"  {line}\n" for line in kafka_yaml.splitlines()))
    return load_settings(config, environ or {}).kafka


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A CA and a client certificate signed by it (PEM), made with the openssl tool."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.fail("the openssl tool is not installed (Debian package openssl)", pytrace=False)
    folder = tmp_path_factory.mktemp("pki")

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], cwd=folder, check=True, capture_output=True)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
        "-days", "2", "-subj", "/CN=Pantau test CA")  # fmt: skip
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "client.key", "-out", "client.csr",
        "-subj", "/CN=pantau")  # fmt: skip
    run("x509", "-req", "-in", "client.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "client.pem", "-days", "2")  # fmt: skip
    return {name: folder / name for name in ("ca.pem", "client.pem", "client.key")}


# ------------------------------------------------------------------ settings


def test_plaintext_is_the_default_and_needs_nothing_else() -> None:
    settings = kafka_settings()
    assert settings.security_protocol == "PLAINTEXT"
    assert settings.sasl_password is None and settings.ssl_ca_file is None


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (
            {"security_protocol": "SASL_SSL", "ssl_ca_file": "system"},
            "SASL needs kafka.sasl_username and kafka.sasl_password",
        ),
        (
            {**SASL, "sasl_password": "  "},
            "SASL needs kafka.sasl_username and kafka.sasl_password",
        ),
        (
            {**SASL, "sasl_mechanism": "PLAIN"},
            "PLAIN sends the password as it is",
        ),
        (
            {"sasl_username": "pantau", "sasl_password": PASSWORD},
            "this protocol sends no credentials",
        ),
        (
            {**SASL, "security_protocol": "SASL_SSL"},
            "TLS needs kafka.ssl_ca_file",
        ),
        (
            {"security_protocol": "SSL", "ssl_ca_file": "ca.pem"},
            "SSL knows this client by its certificate",
        ),
        (
            {**SASL, "security_protocol": "SASL_SSL", "ssl_ca_file": "ca.pem",
             "ssl_cert_file": "client.pem"},
            "kafka.ssl_cert_file and kafka.ssl_key_file go together",
        ),
        (
            {**SASL, "ssl_ca_file": "ca.pem"},
            "kafka.ssl_ca_file is set, but this protocol does not use TLS",
        ),
        (
            {"security_protocol": "SASL_SCRAM"},
            "Input should be 'PLAINTEXT', 'SSL', 'SASL_PLAINTEXT' or 'SASL_SSL'",
        ),
    ],
)  # fmt: skip
def test_security_settings_that_cannot_work_are_refused_without_showing_the_password(
    tmp_path: Path, values: dict[str, Any], expected: str
) -> None:
    text = "\n".join(f"{key}: {value!r}" for key, value in values.items())
    with pytest.raises(SettingsError) as refused:
        load(tmp_path, text)
    assert expected in str(refused.value)
    assert PASSWORD not in str(refused.value)


def test_a_password_written_as_a_number_is_text_and_never_shown(tmp_path: Path) -> None:
    number = "1234567890123456789"
    settings = load(
        tmp_path,
        f"security_protocol: SASL_SSL\nsasl_username: pantau\nsasl_password: {number}\n"
        "ssl_ca_file: system",
    )
    assert settings.sasl_password is not None
    assert settings.sasl_password.get_secret_value() == number
    with pytest.raises(SettingsError) as refused:
        load(tmp_path, f"sasl_username: pantau\nsasl_password: {number}")
    assert number not in str(refused.value)


def test_a_short_password_is_refused_without_showing_it(tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as refused:
        load(tmp_path, "security_protocol: SASL_PLAINTEXT\nsasl_username: pantau\n"
             "sasl_password: kafka-123")  # fmt: skip
    assert "kafka.sasl_password: " in str(refused.value)
    assert "at least 16 characters" in str(refused.value)
    assert "kafka-123" not in str(refused.value)


def test_the_password_comes_from_the_environment_and_errors_name_the_variable(
    tmp_path: Path,
) -> None:
    environ = {
        "PANTAU__KAFKA__SECURITY_PROTOCOL": "SASL_SSL",
        "PANTAU__KAFKA__SASL_USERNAME": "pantau",
        "PANTAU__KAFKA__SASL_PASSWORD": PASSWORD,
        "PANTAU__KAFKA__SSL_CA_FILE": "certs/kafka-ca.pem",
    }
    settings = load(tmp_path, "bootstrap_servers: kafka.mojokerto.example:9093", environ)
    assert settings.sasl_password is not None
    assert settings.sasl_password.get_secret_value() == PASSWORD
    # Relative to the config file's folder, like every path.
    assert settings.ssl_ca_file == tmp_path / "certs" / "kafka-ca.pem"
    assert PASSWORD not in repr(settings)

    del environ["PANTAU__KAFKA__SASL_USERNAME"]
    with pytest.raises(SettingsError) as refused:
        load(tmp_path, "bootstrap_servers: kafka.mojokerto.example:9093", environ)
    assert str(refused.value).startswith(
        "environment variable PANTAU__KAFKA__SECURITY_PROTOCOL: kafka.security_protocol: SASL needs"
    )
    assert PASSWORD not in str(refused.value)


def test_the_system_store_is_said_by_name() -> None:
    settings = kafka_settings(**SASL_SSL, ssl_ca_file="system")
    assert settings.ssl_ca_file == "system"


# ------------------------------------------------------------------ options per library


def test_plaintext_options_of_every_library() -> None:
    settings = kafka_settings()
    assert kafka.security_options(settings, "kafka-python") == {"security_protocol": "PLAINTEXT"}
    assert kafka.security_options(settings, "aiokafka") == {"security_protocol": "PLAINTEXT"}
    assert kafka.security_options(settings, "confluent") == {"security.protocol": "plaintext"}
    assert kafka.security_options(settings, "faust") == {}


def test_a_scram_login_in_every_library() -> None:
    settings = kafka_settings(**SASL)
    expected = {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "pantau",
        "sasl_plain_password": PASSWORD,
    }
    assert kafka.security_options(settings, "kafka-python") == expected
    assert kafka.security_options(settings, "aiokafka") == expected
    assert kafka.security_options(settings, "confluent") == {
        "security.protocol": "sasl_plaintext",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "pantau",
        "sasl.password": PASSWORD,
    }
    # What faust hands to each aiokafka client it makes.
    credentials = kafka.security_options(settings, "faust")["broker_credentials"]
    assert isinstance(credentials, SASLCredentials)
    assert credentials_to_aiokafka_auth(credentials) == {**expected, "ssl_context": None}


def test_sasl_over_tls_with_the_brokers_ca(pki: dict[str, Path]) -> None:
    settings = kafka_settings(
        **SASL_SSL, sasl_mechanism="SCRAM-SHA-256", ssl_ca_file=str(pki["ca.pem"])
    )
    assert kafka.security_options(settings, "confluent") == {
        "security.protocol": "sasl_ssl",
        "sasl.mechanism": "SCRAM-SHA-256",
        "sasl.username": "pantau",
        "sasl.password": PASSWORD,
        "ssl.ca.location": str(pki["ca.pem"]),
        "ssl.endpoint.identification.algorithm": "https",
    }
    options = kafka.security_options(settings, "kafka-python")
    context = options.pop("ssl_context")
    assert options == {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-256",
        "sasl_plain_username": "pantau",
        "sasl_plain_password": PASSWORD,
    }
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    # The brokers' CA alone, not the system's store.
    issuers = [dict(item[0] for item in ca["subject"]) for ca in context.get_ca_certs()]
    assert issuers == [{"commonName": "Pantau test CA"}]

    aiokafka = credentials_to_aiokafka_auth(
        kafka.security_options(settings, "faust")["broker_credentials"]
    )
    assert aiokafka["security_protocol"] == "SASL_SSL"
    assert aiokafka["sasl_mechanism"] == "SCRAM-SHA-256"
    assert aiokafka["ssl_context"].check_hostname


def test_the_system_store_and_no_host_name_check() -> None:
    settings = kafka_settings(**SASL_SSL, ssl_ca_file="system", ssl_check_hostname=False)
    confluent = kafka.security_options(settings, "confluent")
    # librdkafka's own OpenSSL finds the system's store only when told to look for it.
    assert confluent["ssl.ca.location"] == "probe"
    assert confluent["ssl.endpoint.identification.algorithm"] == "none"
    context = kafka.security_options(settings, "kafka-python")["ssl_context"]
    assert context.verify_mode == ssl.CERT_REQUIRED and not context.check_hostname


def test_a_client_certificate_for_ssl(pki: dict[str, Path]) -> None:
    settings = kafka_settings(
        security_protocol="SSL", ssl_ca_file=str(pki["ca.pem"]),
        ssl_cert_file=str(pki["client.pem"]), ssl_key_file=str(pki["client.key"]),
    )  # fmt: skip
    confluent = kafka.security_options(settings, "confluent")
    assert confluent["security.protocol"] == "ssl"
    assert confluent["ssl.certificate.location"] == str(pki["client.pem"])
    assert confluent["ssl.key.location"] == str(pki["client.key"])
    assert "sasl.password" not in confluent
    credentials = kafka.security_options(settings, "faust")["broker_credentials"]
    assert isinstance(credentials, SSLCredentials)
    assert credentials_to_aiokafka_auth(credentials)["security_protocol"] == "SSL"


def test_a_missing_tls_file_is_a_settings_error_naming_it(tmp_path: Path) -> None:
    settings = kafka_settings(tmp_path, **SASL_SSL, ssl_ca_file="missing-ca.pem")
    for library in ("kafka-python", "confluent", "faust"):
        with pytest.raises(SettingsError, match=r"kafka\.ssl_ca_file: .*missing-ca\.pem"):
            kafka.security_options(settings, library)  # type: ignore[arg-type]


def test_a_ca_file_that_is_no_certificate_is_a_settings_error(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("not a certificate\n")
    settings = kafka_settings(**SASL_SSL, ssl_ca_file=str(ca))
    with pytest.raises(SettingsError, match="the TLS files cannot be used"):
        kafka.security_options(settings, "kafka-python")
    # librdkafka reads it when the client is made, before any connection.
    with pytest.raises(SettingsError, match=r"ssl\.ca\.location failed"):
        kafka.wait_until_ready(settings, timeout_s=1)


# ------------------------------------------------------------------ the open door


@pytest.fixture
def fresh_warnings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kafka.clients, "_WARNED_OPEN", set())


@pytest.mark.parametrize(
    ("servers", "warned"),
    [
        ("localhost:9092", False),
        ("127.0.0.1:9092,localhost:9093", False),
        ("[::1]:9092", False),
        ("kafka:9092", True),
        ("localhost:9092,10.20.0.5:9092", True),
        ("[fd00::5]:9092", True),
    ],
)
def test_plaintext_beyond_this_machine_is_logged_as_an_open_door(
    fresh_warnings: None, caplog: pytest.LogCaptureFixture, servers: str, warned: bool
) -> None:
    settings = kafka_settings(bootstrap_servers=servers)
    with caplog.at_level(logging.WARNING, logger="pantau.kafka.clients"):
        kafka.security_options(settings, "kafka-python")
        kafka.security_options(settings, "confluent")
    warnings = [r.getMessage() for r in caplog.records if r.name == "pantau.kafka.clients"]
    if warned:
        # Once per process, at the first client it builds.
        assert len(warnings) == 1
        assert "PLAINTEXT" in warnings[0] and "SASL_SSL" in warnings[0]
    else:
        assert warnings == []


def test_a_login_to_a_remote_broker_is_no_open_door(
    fresh_warnings: None, caplog: pytest.LogCaptureFixture
) -> None:
    settings = kafka_settings(bootstrap_servers="kafka:9092", **SASL)
    with caplog.at_level(logging.DEBUG, logger="pantau.kafka.clients"):
        kafka.security_options(settings, "kafka-python")
    assert caplog.records == []
