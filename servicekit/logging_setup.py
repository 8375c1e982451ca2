"""Configures logging once per process: readable in a terminal, JSON in Kubernetes."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

from servicekit.request_context import current_request_id
from servicekit.settings import ServerSettings

# Attributes every LogRecord has; anything else was passed with `extra=` and is logged.
_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
    "request_id",
    "taskName",
}


class RequestIdFilter(logging.Filter):
    """Stamps each record with the request id of the call that logged it."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Adds `request_id` to the record; never drops it."""
        if not getattr(record, "request_id", ""):
            record.request_id = current_request_id() or "-"
        return True


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD_ATTRS}


class JsonFormatter(logging.Formatter):
    """Writes one JSON object per line, the shape log collectors expect."""

    def __init__(self, component: str) -> None:
        super().__init__()
        self._component = component

    def format(self, record: logging.LogRecord) -> str:
        """Returns the record as a JSON line."""
        payload: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "component": self._component,
            "logger": record.name,
            "request_id": getattr(record, "request_id", "-"),
            "message": record.getMessage(),
            **_extras(record),
        }
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str)


class TextFormatter(logging.Formatter):
    """Writes a readable line with the request id and any structured fields."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s [%(request_id)s] %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        """Returns the record as one line, extras appended as key=value."""
        line = super().format(record)
        extras = _extras(record)
        if extras:
            line += " " + " ".join(f"{k}={v}" for k, v in extras.items())
        return line


def configure_logging(settings: ServerSettings) -> None:
    """Configures logging for a gRPC component from its server settings."""
    install_logging(
        component=settings.component, level=settings.log_level, log_format=settings.log_format
    )


def install_logging(*, component: str, level: str = "INFO", log_format: str = "text") -> None:
    """Installs one handler on the root logger; calling it again replaces it."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RequestIdFilter())
    formatter: logging.Formatter = (
        JsonFormatter(component) if log_format == "json" else TextFormatter()
    )
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
