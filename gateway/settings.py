"""The gateway's settings, read once from GATEWAY_* environment variables and validated."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from gateway.registry import (
    Route,
    RouteError,
    check_one_trainer,
    load_registry_file,
    parse_routes_spec,
)
from gateway.upstream import RetryPolicy
from servicekit.settings import (
    ServerSettings,
    SettingsError,
    env_float,
    env_int,
    env_path,
    env_secret,
    env_str,
)

PREFIX = "GATEWAY_"
DEFAULT_PORT = 50051


@dataclass(frozen=True)
class UpstreamTls:
    """Files that make the gateway's channels to services TLS (and mTLS with cert + key)."""

    ca_file: Path
    cert_file: Path | None
    key_file: Path | None
    server_name: str | None


@dataclass(frozen=True)
class GatewaySettings:
    """Everything the gateway reads from its environment; see gateway/README.md."""

    server: ServerSettings
    routes: Mapping[str, Route]
    state_dir: Path
    default_deadline_s: float
    max_deadline_s: float
    series_deadline_s: float
    retry: RetryPolicy
    model_info_ttl_s: float
    model_info_timeout_s: float
    # Seconds between two readings of the trainer's published models (ListPublishedModels).
    trainer_poll_s: float
    upstream_tls: UpstreamTls | None
    admin_token: str | None = field(default=None, repr=False)

    @property
    def state_file(self) -> Path:
        """Returns the file that keeps the routes added at run time."""
        return self.state_dir / "routes.json"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> GatewaySettings:
        """Reads and validates every GATEWAY_* variable; raises SettingsError naming the bad one."""
        env = os.environ if env is None else env
        max_deadline = env_float(
            env, f"{PREFIX}MAX_DEADLINE_SECONDS", 300.0, minimum=0.1, maximum=86400.0
        )
        return cls(
            server=ServerSettings.from_env(PREFIX, default_port=DEFAULT_PORT, env=env),
            routes=MappingProxyType(read_configured_routes(env)),
            state_dir=Path(env_str(env, f"{PREFIX}STATE_DIR", "var/gateway")).absolute(),
            default_deadline_s=_deadline(env, "DEFAULT_DEADLINE_SECONDS", 30.0, max_deadline),
            max_deadline_s=max_deadline,
            series_deadline_s=_deadline(env, "SERIES_DEADLINE_SECONDS", 300.0, max_deadline),
            retry=_retry_policy(env),
            model_info_ttl_s=env_float(
                env, f"{PREFIX}MODEL_INFO_TTL_SECONDS", 10.0, minimum=0.0, maximum=86400.0
            ),
            model_info_timeout_s=env_float(
                env, f"{PREFIX}MODEL_INFO_TIMEOUT_SECONDS", 2.0, minimum=0.05, maximum=60.0
            ),
            trainer_poll_s=env_float(
                env, f"{PREFIX}TRAINER_POLL_SECONDS", 5.0, minimum=0.1, maximum=3600.0
            ),
            upstream_tls=_upstream_tls(env),
            admin_token=env_secret(env, f"{PREFIX}ADMIN_TOKEN"),
        )


def read_configured_routes(env: Mapping[str, str]) -> dict[str, Route]:
    """Returns GATEWAY_REGISTRY_FILE's routes, overridden disease by disease by GATEWAY_ROUTES."""
    routes: dict[str, Route] = {}
    registry_file = env_path(env, f"{PREFIX}REGISTRY_FILE")
    if registry_file is not None:
        try:
            routes.update(load_registry_file(registry_file))
        except RouteError as exc:
            raise SettingsError(f"{PREFIX}REGISTRY_FILE {str(registry_file)!r}: {exc}") from None
    spec = env_str(env, f"{PREFIX}ROUTES", "")
    try:
        routes.update(parse_routes_spec(spec))
    except RouteError as exc:
        raise SettingsError(f"{PREFIX}ROUTES: {exc}") from None
    try:
        check_one_trainer(routes.values())
    except RouteError as exc:
        raise SettingsError(f"{PREFIX}REGISTRY_FILE and {PREFIX}ROUTES together: {exc}") from None
    return routes


def _deadline(env: Mapping[str, str], suffix: str, default: float, max_deadline: float) -> float:
    name = f"{PREFIX}{suffix}"
    value = env_float(env, name, min(default, max_deadline), minimum=0.1, maximum=86400.0)
    if value > max_deadline:
        raise SettingsError(
            f"{name} ({value}) must not exceed {PREFIX}MAX_DEADLINE_SECONDS ({max_deadline})"
        )
    return value


def _retry_policy(env: Mapping[str, str]) -> RetryPolicy:
    initial_ms = env_float(env, f"{PREFIX}RETRY_INITIAL_BACKOFF_MS", 50.0, minimum=1.0)
    max_ms = env_float(env, f"{PREFIX}RETRY_MAX_BACKOFF_MS", 1000.0, minimum=1.0, maximum=60000.0)
    if max_ms < initial_ms:
        raise SettingsError(
            f"{PREFIX}RETRY_MAX_BACKOFF_MS ({max_ms}) must be at least "
            f"{PREFIX}RETRY_INITIAL_BACKOFF_MS ({initial_ms})"
        )
    return RetryPolicy(
        attempts=env_int(env, f"{PREFIX}RETRY_ATTEMPTS", 3, minimum=1, maximum=10),
        initial_backoff_s=initial_ms / 1000.0,
        max_backoff_s=max_ms / 1000.0,
    )


def _upstream_tls(env: Mapping[str, str]) -> UpstreamTls | None:
    ca_file = env_path(env, f"{PREFIX}UPSTREAM_TLS_CA_FILE")
    cert_file = env_path(env, f"{PREFIX}UPSTREAM_TLS_CERT_FILE")
    key_file = env_path(env, f"{PREFIX}UPSTREAM_TLS_KEY_FILE")
    server_name = env_str(env, f"{PREFIX}UPSTREAM_TLS_SERVER_NAME", "") or None
    if (cert_file is None) != (key_file is None):
        raise SettingsError(
            f"set both {PREFIX}UPSTREAM_TLS_CERT_FILE and {PREFIX}UPSTREAM_TLS_KEY_FILE, or neither"
        )
    if ca_file is None:
        if cert_file is not None or server_name is not None:
            raise SettingsError(
                f"{PREFIX}UPSTREAM_TLS_CERT_FILE, _KEY_FILE and _SERVER_NAME "
                f"need {PREFIX}UPSTREAM_TLS_CA_FILE"
            )
        return None
    return UpstreamTls(ca_file, cert_file, key_file, server_name)
