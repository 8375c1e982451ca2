"""The receiver's settings, read once from DICOM_* environment variables and validated."""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from servicekit.settings import (
    MIB,
    SettingsError,
    env_choice,
    env_float,
    env_int,
    env_str,
)

PREFIX = "DICOM_"
DEFAULT_PORT = 11112
GIB = 1024 * MIB
# An AE title: 1 to 16 characters of the default repertoire, no backslash or control
# characters, not only spaces (PS3.5 6.2, VR AE).
_AE_TITLE = re.compile(r"[\x20-\x5b\x5d-\x7e]{1,16}")
_HOST_PORT = re.compile(r"(?P<host>[A-Za-z0-9.\-]+|\[[0-9A-Fa-f:.]+\]):(?P<port>[0-9]{1,5})")


@dataclass(frozen=True)
class Peer:
    """A DICOM node: its AE title and where it listens."""

    ae_title: str
    host: str
    port: int

    def __str__(self) -> str:
        """Returns the peer as AE@host:port, the form DICOM_DESTINATION takes."""
        return f"{self.ae_title}@{self.host}:{self.port}"


@dataclass(frozen=True)
class ReceiverSettings:
    """Everything the receiver reads from its environment; see dicom_receiver/README.md."""

    ae_title: str
    port: int
    bind_address: str
    gateway_address: str
    destination: Peer | None
    spool_dir: Path
    stable_age_s: float
    max_association_bytes: int
    max_association_instances: int
    max_instance_bytes: int
    max_study_bytes: int
    min_free_bytes: int
    max_associations: int
    max_concurrent_studies: int
    network_timeout_s: float
    analysis_timeout_s: float
    retry_attempts: int
    retry_backoff_s: float
    grace_s: float
    log_level: str
    log_format: str

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ReceiverSettings:
        """Reads and validates every DICOM_* variable; raises SettingsError naming the bad one."""
        env = os.environ if env is None else env
        default_spool = Path(tempfile.gettempdir()) / "medimg-dicom-receiver"
        return cls(
            ae_title=parse_ae_title(
                f"{PREFIX}AE_TITLE", env_str(env, f"{PREFIX}AE_TITLE", "MEDIMG")
            ),
            port=env_int(env, f"{PREFIX}PORT", DEFAULT_PORT, minimum=0, maximum=65535),
            bind_address=env_str(env, f"{PREFIX}BIND_ADDRESS", "127.0.0.1"),
            gateway_address=parse_address(
                f"{PREFIX}GATEWAY_ADDRESS",
                env_str(env, f"{PREFIX}GATEWAY_ADDRESS", "127.0.0.1:50051"),
            ),
            destination=parse_destination(
                f"{PREFIX}DESTINATION", env_str(env, f"{PREFIX}DESTINATION", "")
            ),
            spool_dir=Path(env_str(env, f"{PREFIX}SPOOL_DIR", str(default_spool))).absolute(),
            stable_age_s=env_float(
                env, f"{PREFIX}STABLE_AGE_SECONDS", 60.0, minimum=0.1, maximum=86400.0
            ),
            max_association_bytes=env_int(
                env, f"{PREFIX}MAX_ASSOCIATION_BYTES", 4 * GIB, minimum=MIB
            ),
            max_association_instances=env_int(
                env, f"{PREFIX}MAX_ASSOCIATION_INSTANCES", 10_000, minimum=1
            ),
            max_instance_bytes=env_int(
                env, f"{PREFIX}MAX_INSTANCE_BYTES", 256 * MIB, minimum=64 * 1024
            ),
            max_study_bytes=env_int(env, f"{PREFIX}MAX_STUDY_BYTES", 2 * GIB, minimum=MIB),
            min_free_bytes=env_int(env, f"{PREFIX}MIN_FREE_BYTES", GIB, minimum=0),
            max_associations=env_int(env, f"{PREFIX}MAX_ASSOCIATIONS", 8, minimum=1, maximum=256),
            max_concurrent_studies=env_int(
                env, f"{PREFIX}MAX_CONCURRENT_STUDIES", 1, minimum=1, maximum=64
            ),
            network_timeout_s=env_float(
                env, f"{PREFIX}NETWORK_TIMEOUT_SECONDS", 60.0, minimum=1.0, maximum=3600.0
            ),
            analysis_timeout_s=env_float(
                env, f"{PREFIX}ANALYSIS_TIMEOUT_SECONDS", 300.0, minimum=1.0, maximum=86400.0
            ),
            retry_attempts=env_int(env, f"{PREFIX}RETRY_ATTEMPTS", 5, minimum=1, maximum=100),
            retry_backoff_s=env_float(
                env, f"{PREFIX}RETRY_BACKOFF_SECONDS", 1.0, minimum=0.0, maximum=3600.0
            ),
            grace_s=env_float(env, f"{PREFIX}GRACE_SECONDS", 10.0, minimum=0.0, maximum=600.0),
            log_level=env_choice(
                env, f"{PREFIX}LOG_LEVEL", "INFO", ("DEBUG", "INFO", "WARNING", "ERROR")
            ),
            log_format=env_choice(env, f"{PREFIX}LOG_FORMAT", "text", ("text", "json")),
        )


def parse_ae_title(name: str, value: str) -> str:
    """Returns a valid AE title, or raises SettingsError naming the variable."""
    if not _AE_TITLE.fullmatch(value) or not value.strip():
        raise SettingsError(
            f"{name} must be 1 to 16 printable ASCII characters without a backslash, got {value!r}"
        )
    return value


def parse_address(name: str, value: str) -> str:
    """Returns host:port unchanged when it is one, or raises SettingsError naming the variable."""
    match = _HOST_PORT.fullmatch(value)
    if match is None or not 1 <= int(match["port"]) <= 65535:
        raise SettingsError(f"{name} must be host:port with a port from 1 to 65535, got {value!r}")
    return value


def parse_destination(name: str, value: str) -> Peer | None:
    """Returns the peer of AE@host:port, None for "", or raises SettingsError naming the variable.

    The AE title may not hold "@": the last "@" splits it from the address.
    """
    if not value:
        return None
    ae_title, at, address = value.rpartition("@")
    if not at:
        raise SettingsError(
            f"{name} must be AE@host:port (such as ORTHANC@pacs:4242), got {value!r}"
        )
    parse_ae_title(name, ae_title)
    parse_address(name, address)
    host, _, port = address.rpartition(":")
    return Peer(ae_title, host.strip("[]"), int(port))
