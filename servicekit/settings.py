"""Reads and validates settings from environment variables; a bad value names its variable."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

MIB = 1024 * 1024


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


def _raw(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name)
    if value is None or value.strip() == "":
        return None
    return value.strip()


def env_str(env: Mapping[str, str], name: str, default: str) -> str:
    """Returns the variable's text, or default when unset or blank."""
    value = _raw(env, name)
    return default if value is None else value


def env_int(
    env: Mapping[str, str],
    name: str,
    default: int,
    *,
    minimum: int | None = None,
    maximum: int | None = None,
) -> int:
    """Returns the variable as an integer within [minimum, maximum]."""
    return _env_number(env, name, default, int, "an integer", minimum, maximum)


def env_float(
    env: Mapping[str, str],
    name: str,
    default: float,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
) -> float:
    """Returns the variable as a number within [minimum, maximum]."""
    return _env_number(env, name, default, float, "a number", minimum, maximum)


NumberT = TypeVar("NumberT", int, float)


def _env_number(
    env: Mapping[str, str],
    name: str,
    default: NumberT,
    parse: Callable[[str], NumberT],
    noun: str,
    minimum: NumberT | None,
    maximum: NumberT | None,
) -> NumberT:
    value = _raw(env, name)
    if value is None:
        return default
    try:
        number = parse(value)
    except ValueError:
        raise SettingsError(f"{name} must be {noun}, got {value!r}") from None
    if number != number:  # NaN compares unequal to itself
        raise SettingsError(f"{name} must be {noun}, got {value!r}")
    _check_range(name, number, minimum, maximum)
    return number


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def env_bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    """Returns the variable as a boolean; anything but a clear yes or no is refused."""
    value = _raw(env, name)
    if value is None:
        return default
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise SettingsError(f"{name} must be one of true/false/1/0/yes/no/on/off, got {value!r}")


def env_choice(env: Mapping[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    """Returns the variable's text, which must be one of choices."""
    value = env_str(env, name, default)
    if value not in choices:
        raise SettingsError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return value


def env_path(env: Mapping[str, str], name: str, *, must_exist: bool = True) -> Path | None:
    """Returns the variable as a path, or None when unset; an existing file when must_exist."""
    value = _raw(env, name)
    if value is None:
        return None
    path = Path(value)
    if must_exist and not path.is_file():
        raise SettingsError(f"{name} points to {value!r}, which is not a readable file")
    return path


def env_secret(env: Mapping[str, str], name: str) -> str | None:
    """Returns a secret from NAME, or from the file named by NAME_FILE (a mounted Secret)."""
    direct = _raw(env, name)
    file_name = _raw(env, f"{name}_FILE")
    if direct is not None and file_name is not None:
        raise SettingsError(f"set {name} or {name}_FILE, not both")
    if file_name is None:
        return direct
    try:
        return Path(file_name).read_text().strip()
    except OSError as exc:
        raise SettingsError(f"{name}_FILE: cannot read {file_name!r} ({exc.strerror})") from None


def _check_range(name: str, number: float, minimum: float | None, maximum: float | None) -> None:
    if minimum is not None and number < minimum:
        raise SettingsError(f"{name} must be at least {minimum}, got {number}")
    if maximum is not None and number > maximum:
        raise SettingsError(f"{name} must be at most {maximum}, got {number}")


@dataclass(frozen=True)
class TlsSettings:
    """Files of the server's certificate, its key and, for mTLS, the client CA."""

    cert_file: Path
    key_file: Path
    client_ca_file: Path | None


@dataclass(frozen=True)
class ServerSettings:
    """How one gRPC server listens, logs and shuts down; read with a component prefix."""

    component: str
    host: str
    port: int
    metrics_port: int
    max_message_bytes: int
    grace_seconds: float
    drain_delay_seconds: float
    max_connection_age_seconds: float  # 0: connections live as long as the client keeps them
    max_connection_age_grace_seconds: float
    tls: TlsSettings | None
    log_level: str
    log_format: str

    @property
    def address(self) -> str:
        """Returns the listening address as host:port."""
        return f"{self.host}:{self.port}"

    @classmethod
    def from_env(
        cls,
        prefix: str,
        *,
        default_port: int,
        env: Mapping[str, str] | None = None,
    ) -> ServerSettings:
        """Reads `{prefix}HOST`, `{prefix}PORT`, … (see servicekit/README.md)."""
        env = os.environ if env is None else env
        cert = env_path(env, f"{prefix}TLS_CERT_FILE")
        key = env_path(env, f"{prefix}TLS_KEY_FILE")
        client_ca = env_path(env, f"{prefix}TLS_CLIENT_CA_FILE")
        if (cert is None) != (key is None):
            raise SettingsError(
                f"set both {prefix}TLS_CERT_FILE and {prefix}TLS_KEY_FILE, or neither"
            )
        if client_ca is not None and cert is None:
            raise SettingsError(
                f"{prefix}TLS_CLIENT_CA_FILE needs {prefix}TLS_CERT_FILE and {prefix}TLS_KEY_FILE"
            )
        tls = TlsSettings(cert, key, client_ca) if cert is not None and key is not None else None
        return cls(
            component=prefix.rstrip("_").lower(),
            host=env_str(env, f"{prefix}HOST", "127.0.0.1"),
            port=env_int(env, f"{prefix}PORT", default_port, minimum=0, maximum=65535),
            metrics_port=env_int(env, f"{prefix}METRICS_PORT", 0, minimum=0, maximum=65535),
            max_message_bytes=env_int(
                env, f"{prefix}MAX_MESSAGE_BYTES", 64 * MIB, minimum=MIB, maximum=2047 * MIB
            ),
            grace_seconds=env_float(
                env, f"{prefix}GRACE_SECONDS", 10.0, minimum=0.0, maximum=600.0
            ),
            drain_delay_seconds=env_float(
                env, f"{prefix}DRAIN_DELAY_SECONDS", 0.0, minimum=0.0, maximum=120.0
            ),
            max_connection_age_seconds=env_float(
                env, f"{prefix}MAX_CONNECTION_AGE_SECONDS", 300.0, minimum=0.0, maximum=86400.0
            ),
            max_connection_age_grace_seconds=env_float(
                env,
                f"{prefix}MAX_CONNECTION_AGE_GRACE_SECONDS",
                300.0,
                minimum=0.0,
                maximum=86400.0,
            ),
            tls=tls,
            log_level=env_choice(
                env, f"{prefix}LOG_LEVEL", "INFO", ("DEBUG", "INFO", "WARNING", "ERROR")
            ),
            log_format=env_choice(env, f"{prefix}LOG_FORMAT", "text", ("text", "json")),
        )


@dataclass(frozen=True)
class BatcherSettings:
    """Limits of a dynamic batcher; read with a component prefix."""

    max_batch_size: int
    max_wait_ms: float
    max_queue_size: int

    @classmethod
    def from_env(cls, prefix: str, *, env: Mapping[str, str] | None = None) -> BatcherSettings:
        """Reads `{prefix}BATCH_MAX_SIZE`, `{prefix}BATCH_MAX_WAIT_MS`, `{prefix}QUEUE_MAX_SIZE`."""
        env = os.environ if env is None else env
        return cls(
            max_batch_size=env_int(env, f"{prefix}BATCH_MAX_SIZE", 16, minimum=1, maximum=1024),
            max_wait_ms=env_float(
                env, f"{prefix}BATCH_MAX_WAIT_MS", 0.0, minimum=0.0, maximum=1000.0
            ),
            max_queue_size=env_int(env, f"{prefix}QUEUE_MAX_SIZE", 256, minimum=1, maximum=100_000),
        )
