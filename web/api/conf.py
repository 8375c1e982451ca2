"""REST API settings that web/config/settings.py imports: DRF, drf-spectacular, image URLs."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from typing import Any

from servicekit.settings import SettingsError, env_float, env_str

ENV = os.environ

REST_FRAMEWORK: dict[str, Any] = {
    # Token first: a request without credentials is then answered 401 with
    # `WWW-Authenticate: Token`, not 403. Session log-ins work too, with CSRF checks.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "web.api.pagination.PagePagination",
    "PAGE_SIZE": 20,
    # JSON in and out; uploads as multipart. No browsable API: the docs page is /api/v1/docs/.
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": [
        "rest_framework.parsers.JSONParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    # The API's rates (web/api/throttles.py) are named by ApiView, so every operation has
    # them whatever is set here; the schema and docs views, which hold no data, have none.
    "DEFAULT_THROTTLE_CLASSES": [],
    # Every error, whatever raised it: {"error": {"code", "message", "request_id"}}.
    "EXCEPTION_HANDLER": "web.api.exceptions.exception_handler",
    "DATETIME_FORMAT": "iso-8601",
    "COERCE_DECIMAL_TO_STRING": False,
}

SPECTACULAR_SETTINGS: dict[str, Any] = {
    "TITLE": "medimg API",
    "DESCRIPTION": (
        "Diagnoses of medical images by the models behind the medimg gateway. "
        "The shipped models are demonstrations trained on generated images: "
        "not for clinical use. Authenticate with `Authorization: Token <key>` "
        "(POST /api/v1/auth/token/) or a browser session (with its CSRF token). "
        'Every error answers `{"error": {"code", "message", "request_id"}}`.'
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # The schema and the docs page describe the API to anybody; they hold no data.
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    "COMPONENT_SPLIT_REQUEST": True,
    # Links from the create operations' ids to the `{id}` operations, and the errors any
    # operation may answer (web/api/schema.py).
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "web.api.schema.add_common_errors",
        "web.api.schema.add_links",
    ],
    # Swagger UI and Redoc from drf-spectacular-sidecar's static files: no CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}


def _networks(name: str) -> list[str]:
    """Returns a comma-separated list of CIDR networks, each checked; a bad one stops the start."""
    networks = []
    for item in env_str(ENV, name, "").split(","):
        if not item.strip():
            continue
        try:
            networks.append(str(ipaddress.ip_network(item.strip(), strict=False)))
        except ValueError:
            raise SettingsError(f"{name} must list CIDR networks, got {item.strip()!r}") from None
    return networks


# Seconds an `image_url` fetch may take in all: name lookup, connection and every byte.
WEB_IMAGE_URL_TIMEOUT_SECONDS = env_float(
    ENV, "WEB_IMAGE_URL_TIMEOUT_SECONDS", 10.0, minimum=0.1, maximum=120.0
)
# Networks an `image_url` may point into although they are not public (loopback, private):
# empty, and meant only for tests and private deployments that serve images internally.
WEB_IMAGE_URL_ALLOW_NETWORKS = _networks("WEB_IMAGE_URL_ALLOW_NETWORKS")


def parse_rate(rate: str) -> tuple[int, dt.timedelta]:
    """Returns `N/second|minute|hour|day` (DRF's notation, `N/m` too) as a count and a window."""
    count, _, period = rate.partition("/")
    seconds = {"s": 1, "m": 60, "h": 3600, "d": 86400}.get(period.strip()[:1].lower())
    if not count.strip().isdigit() or int(count) < 1 or seconds is None:
        raise ValueError(f"a rate is N/second, N/minute, N/hour or N/day, got {rate!r}")
    return int(count), dt.timedelta(seconds=seconds)


def _rate(name: str, default: str) -> str:
    """Returns a rate setting, checked; a bad one stops the start with its name."""
    value = env_str(ENV, name, default).strip()
    try:
        parse_rate(value)
    except ValueError as error:
        raise SettingsError(f"{name}: {error}") from None
    return value


# API requests per authenticated user, per anonymous client address (IPv6: per /64), uploads
# per user (POST diagnoses/, POST series/), and token requests per client address.
WEB_API_RATE_USER = _rate("WEB_API_RATE_USER", "600/minute")
WEB_API_RATE_ANON = _rate("WEB_API_RATE_ANON", "60/minute")
WEB_API_RATE_UPLOAD = _rate("WEB_API_RATE_UPLOAD", "30/minute")
WEB_API_RATE_TOKEN = _rate("WEB_API_RATE_TOKEN", "20/minute")
