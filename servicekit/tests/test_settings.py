"""Settings parsing: good values are read, bad ones stop the start naming the variable."""

from pathlib import Path

import pytest

from servicekit.settings import (
    BatcherSettings,
    ServerSettings,
    SettingsError,
    env_bool,
    env_float,
    env_int,
    env_secret,
)


def test_it_reads_defaults_when_nothing_is_set() -> None:
    settings = ServerSettings.from_env("SKIN_", default_port=50061, env={})
    assert settings.address == "127.0.0.1:50061"
    assert settings.max_message_bytes == 64 * 1024 * 1024
    assert settings.tls is None
    assert settings.component == "skin"


def test_it_reads_every_server_variable() -> None:
    env = {
        "GATEWAY_HOST": "0.0.0.0",
        "GATEWAY_PORT": "6000",
        "GATEWAY_METRICS_PORT": "9100",
        "GATEWAY_MAX_MESSAGE_BYTES": str(8 * 1024 * 1024),
        "GATEWAY_GRACE_SECONDS": "2.5",
        "GATEWAY_LOG_FORMAT": "json",
        "GATEWAY_LOG_LEVEL": "DEBUG",
    }
    settings = ServerSettings.from_env("GATEWAY_", default_port=1, env=env)
    assert (settings.host, settings.port, settings.metrics_port) == ("0.0.0.0", 6000, 9100)
    assert settings.grace_seconds == 2.5
    assert (settings.log_format, settings.log_level) == ("json", "DEBUG")


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("MRI_PORT", "abc", "MRI_PORT must be an integer, got 'abc'"),
        ("MRI_PORT", "70000", "MRI_PORT must be at most 65535"),
        ("MRI_GRACE_SECONDS", "soon", "MRI_GRACE_SECONDS must be a number"),
        ("MRI_GRACE_SECONDS", "nan", "MRI_GRACE_SECONDS must be a number"),
        ("MRI_LOG_FORMAT", "xml", "MRI_LOG_FORMAT must be one of text, json"),
        ("MRI_MAX_MESSAGE_BYTES", "10", "MRI_MAX_MESSAGE_BYTES must be at least"),
        ("MRI_TLS_CERT_FILE", "/nonexistent/cert.pem", "MRI_TLS_CERT_FILE points to"),
    ],
)
def test_it_names_the_variable_of_a_bad_value(name: str, value: str, message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        ServerSettings.from_env("MRI_", default_port=1, env={name: value})


def test_it_refuses_a_certificate_without_its_key(tmp_path: Path) -> None:
    cert = tmp_path / "cert.pem"
    cert.write_text("x")
    with pytest.raises(SettingsError, match="set both MRI_TLS_CERT_FILE and MRI_TLS_KEY_FILE"):
        ServerSettings.from_env("MRI_", default_port=1, env={"MRI_TLS_CERT_FILE": str(cert)})


def test_it_reads_batcher_limits() -> None:
    env = {"SKIN_BATCH_MAX_SIZE": "8", "SKIN_BATCH_MAX_WAIT_MS": "5", "SKIN_QUEUE_MAX_SIZE": "3"}
    assert BatcherSettings.from_env("SKIN_", env=env) == BatcherSettings(8, 5.0, 3)
    with pytest.raises(SettingsError, match="SKIN_BATCH_MAX_SIZE must be at least 1"):
        BatcherSettings.from_env("SKIN_", env={"SKIN_BATCH_MAX_SIZE": "0"})


def test_booleans_must_be_clear() -> None:
    assert env_bool({"X": "yes"}, "X", False) is True
    assert env_bool({"X": "off"}, "X", True) is False
    with pytest.raises(SettingsError, match="X must be one of"):
        env_bool({"X": "maybe"}, "X", False)


def test_blank_means_default() -> None:
    assert env_int({"X": "  "}, "X", 7) == 7
    assert env_float({}, "X", 1.5) == 1.5


def test_a_secret_can_come_from_a_mounted_file(tmp_path: Path) -> None:
    secret_file = tmp_path / "token"
    secret_file.write_text("s3cret\n")
    assert env_secret({"TOKEN_FILE": str(secret_file)}, "TOKEN") == "s3cret"
    assert env_secret({"TOKEN": "direct"}, "TOKEN") == "direct"
    assert env_secret({}, "TOKEN") is None
    with pytest.raises(SettingsError, match="set TOKEN or TOKEN_FILE, not both"):
        env_secret({"TOKEN": "a", "TOKEN_FILE": str(secret_file)}, "TOKEN")
    with pytest.raises(SettingsError, match="TOKEN_FILE: cannot read"):
        env_secret({"TOKEN_FILE": str(tmp_path / "missing")}, "TOKEN")


def test_connections_are_recycled_after_five_minutes_unless_told_otherwise() -> None:
    from servicekit.server import server_options

    default = dict(server_options(ServerSettings.from_env("X_", default_port=1, env={})))
    assert default["grpc.max_connection_age_ms"] == 300_000
    assert default["grpc.max_connection_age_grace_ms"] == 300_000
    env = {"X_MAX_CONNECTION_AGE_SECONDS": "0"}
    unlimited = dict(server_options(ServerSettings.from_env("X_", default_port=1, env=env)))
    assert "grpc.max_connection_age_ms" not in unlimited
