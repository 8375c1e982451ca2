"""Django settings of the web tier, read once from the environment (web/README.md lists them)."""

from __future__ import annotations

import os
from pathlib import Path

import dj_database_url
import django_stubs_ext
from corsheaders.defaults import default_headers as cors_default_headers
from csp.constants import NONE as CSP_NONE
from csp.constants import SELF as CSP_SELF
from django.core.exceptions import ImproperlyConfigured

from servicekit.settings import (
    MIB,
    env_bool,
    env_choice,
    env_int,
    env_secret,
    env_str,
)

# Lets `forms.ModelForm[User]` and the like, which mypy needs, run at import time too.
django_stubs_ext.monkeypatch()

ENV = os.environ

# web/ (the package) and the checkout that holds it; development state lives in var/web/.
WEB_DIR = Path(__file__).resolve().parent.parent
BASE_DIR = WEB_DIR.parent
VAR_DIR = BASE_DIR / "var" / "web"


def env_list(name: str, default: str = "") -> list[str]:
    """Returns a comma-separated variable as a list of its non-blank items."""
    return [item.strip() for item in env_str(ENV, name, default).split(",") if item.strip()]


def env_dir(name: str, default: Path) -> Path:
    """Returns a folder setting as an absolute path; relative ones are taken from the checkout."""
    path = Path(env_str(ENV, name, str(default)))
    return (path if path.is_absolute() else BASE_DIR / path).resolve()


# --- core ------------------------------------------------------------------------------------
# Development mode: tracebacks in pages, a throwaway SECRET_KEY, plain HTTP. Off unless set.
DEBUG = env_bool(ENV, "WEB_DEBUG", False)
_secret = env_secret(ENV, "SECRET_KEY")
if _secret is None and not DEBUG:
    raise ImproperlyConfigured(
        "SECRET_KEY (or SECRET_KEY_FILE) is required; for development set WEB_DEBUG=true"
    )
# Only ever used with WEB_DEBUG=true: sessions signed with it are worthless elsewhere.
SECRET_KEY = _secret or "development-only-key-never-used-with-web-debug-off-0123456789"

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "corsheaders",
    "csp",
    "channels",
    "web.core",
    "web.accounts",
    "web.diagnoses",
    "web.api",
    # Swagger UI and Redoc files for /api/v1/docs/, served locally (no CDN).
    "drf_spectacular_sidecar",
    "web.series",
    "web.teach",
]

MIDDLEWARE = [
    # First: answers /healthz before host validation and the HTTPS redirect (probes).
    "web.core.middleware.HealthCheckMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Content-Security-Policy on every response (CONTENT_SECURITY_POLICY below).
    "web.core.middleware.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "web.core.middleware.RequestIdMiddleware",
    "corsheaders.middleware.CorsMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "web.core.middleware.LoginRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "web.config.urls"
ASGI_APPLICATION = "web.config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "web.core.context_processors.site",
            ],
        },
    },
]

# --- database, cache, channel layer ------------------------------------------------------------
DATABASE_URL = env_str(ENV, "DATABASE_URL", f"sqlite:///{VAR_DIR / 'db.sqlite3'}")
DATABASES = {
    "default": dj_database_url.parse(
        DATABASE_URL,
        conn_max_age=env_int(ENV, "WEB_DB_CONN_MAX_AGE", 0, minimum=0),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL and IMMEDIATE transactions: concurrent requests wait for the write lock instead
    # of failing with "database is locked".
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and env_bool(
    ENV, "WEB_DB_POOL", True
):
    # A psycopg pool per process: the ASGI handler runs each request's database work in a
    # fresh thread, so persistent connections (CONN_MAX_AGE) pile up, and a new connection per
    # request costs PostgreSQL a process fork; the pool reuses a few across threads.
    if DATABASES["default"]["CONN_MAX_AGE"]:
        raise ImproperlyConfigured("WEB_DB_CONN_MAX_AGE must be 0 with WEB_DB_POOL on")
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": env_int(ENV, "WEB_DB_POOL_MIN_SIZE", 2, minimum=0),
        "max_size": env_int(ENV, "WEB_DB_POOL_MAX_SIZE", 10, minimum=1),
        # Seconds a request waits for a free connection before it fails.
        "timeout": env_int(ENV, "WEB_DB_POOL_TIMEOUT_SECONDS", 10, minimum=1),
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env_str(ENV, "REDIS_URL", "")
if REDIS_URL:
    CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}
    }
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [REDIS_URL]},
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# --- accounts ----------------------------------------------------------------------------------
AUTH_USER_MODEL = "accounts.User"
LOGIN_URL = "accounts:login"
LOGIN_REDIRECT_URL = "core:home"
LOGOUT_REDIRECT_URL = "core:home"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {
        "NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
        "OPTIONS": {"min_length": 10},
    },
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# Failed log-ins slow down, never lock (web/README.md has the rule): attempts per (account,
# address) before delays, per client address, per account from all addresses; the first
# delay, doubled per attempt up to the caps; the window after which attempts are forgotten.
WEB_LOGIN_FREE_FAILURES = env_int(ENV, "WEB_LOGIN_FREE_FAILURES", 3, minimum=1)
WEB_LOGIN_MAX_FAILURES_PER_ADDRESS = env_int(
    ENV, "WEB_LOGIN_MAX_FAILURES_PER_ADDRESS", 20, minimum=1
)
WEB_LOGIN_MAX_FAILURES_PER_ACCOUNT = env_int(
    ENV, "WEB_LOGIN_MAX_FAILURES_PER_ACCOUNT", 20, minimum=1
)
WEB_LOGIN_WINDOW_SECONDS = env_int(ENV, "WEB_LOGIN_WINDOW_SECONDS", 900, minimum=60)
WEB_LOGIN_DELAY_BASE_SECONDS = env_int(ENV, "WEB_LOGIN_DELAY_BASE_SECONDS", 1, minimum=1)
WEB_LOGIN_MAX_DELAY_SECONDS = env_int(
    ENV, "WEB_LOGIN_MAX_DELAY_SECONDS", 300, minimum=1, maximum=WEB_LOGIN_WINDOW_SECONDS
)
WEB_LOGIN_ACCOUNT_MAX_DELAY_SECONDS = env_int(
    ENV, "WEB_LOGIN_ACCOUNT_MAX_DELAY_SECONDS", 30, minimum=1, maximum=WEB_LOGIN_WINDOW_SECONDS
)
# Days an address that logged in to an account stays exempt from that account's delay.
WEB_LOGIN_KNOWN_ADDRESS_DAYS = env_int(ENV, "WEB_LOGIN_KNOWN_ADDRESS_DAYS", 30, minimum=1)
# Failed log-ins of one account within the window that e-mail its owner (once per window).
WEB_LOGIN_NOTIFY_AFTER_FAILURES = env_int(ENV, "WEB_LOGIN_NOTIFY_AFTER_FAILURES", 5, minimum=1)
# Registration attempts per client address, and password-reset requests per client address
# and per e-mail address asked for (one mailbox cannot be flooded), within their windows.
WEB_REGISTER_MAX_PER_ADDRESS = env_int(ENV, "WEB_REGISTER_MAX_PER_ADDRESS", 20, minimum=1)
WEB_REGISTER_WINDOW_SECONDS = env_int(ENV, "WEB_REGISTER_WINDOW_SECONDS", 3600, minimum=1)
WEB_PASSWORD_RESET_MAX_PER_ADDRESS = env_int(
    ENV, "WEB_PASSWORD_RESET_MAX_PER_ADDRESS", 20, minimum=1
)
WEB_PASSWORD_RESET_MAX_PER_EMAIL = env_int(ENV, "WEB_PASSWORD_RESET_MAX_PER_EMAIL", 5, minimum=1)
WEB_PASSWORD_RESET_WINDOW_SECONDS = env_int(
    ENV, "WEB_PASSWORD_RESET_WINDOW_SECONDS", 3600, minimum=1
)
# Proxies in front of the web tier that append to X-Forwarded-For (1 behind the Ingress).
WEB_TRUSTED_PROXY_COUNT = env_int(ENV, "WEB_TRUSTED_PROXY_COUNT", 0, minimum=0, maximum=5)
# URL prefixes that LoginRequiredMiddleware leaves alone: the REST API answers 401 itself.
WEB_LOGIN_EXEMPT_PREFIXES = ("/api/", "/static/")
SESSION_COOKIE_AGE = env_int(ENV, "WEB_SESSION_SECONDS", 12 * 3600, minimum=300)

# --- HTTPS (on unless WEB_DEBUG; behind the Ingress the proxy header says what it received) ---
WEB_HTTPS = env_bool(ENV, "WEB_HTTPS", not DEBUG)
SECURE_SSL_REDIRECT = WEB_HTTPS
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
SESSION_COOKIE_SECURE = WEB_HTTPS
CSRF_COOKIE_SECURE = WEB_HTTPS
SECURE_HSTS_SECONDS = env_int(ENV, "WEB_HSTS_SECONDS", 31536000 if WEB_HTTPS else 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool(ENV, "WEB_HSTS_INCLUDE_SUBDOMAINS", WEB_HTTPS)
SECURE_HSTS_PRELOAD = env_bool(ENV, "WEB_HSTS_PRELOAD", WEB_HTTPS)
# The header a TLS-terminating proxy sets to "https"; "none" when nothing sits in front.
_proxy_header = env_str(
    ENV, "SECURE_PROXY_SSL_HEADER", "X-Forwarded-Proto" if WEB_HTTPS else "none"
)
SECURE_PROXY_SSL_HEADER = (
    None
    if _proxy_header.lower() == "none"
    else ("HTTP_" + _proxy_header.upper().replace("-", "_"), "https")
)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# Content-Security-Policy (django-csp; web/README.md, "Content-Security-Policy"): the site's
# own scripts, styles, images and fonts only; no inline script or style attribute; object
# URLs for the upload previews; the page's own websockets (added per request by the
# middleware); never framed. The API's docs pages loosen style-src for Swagger UI and Redoc.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [CSP_NONE],
        "script-src": [CSP_SELF],
        "style-src": [CSP_SELF],
        "img-src": [CSP_SELF, "blob:"],
        "font-src": [CSP_SELF],
        "connect-src": [CSP_SELF],
        "manifest-src": [CSP_SELF],
        "form-action": [CSP_SELF],
        "frame-ancestors": [CSP_NONE],
        "base-uri": [CSP_NONE],
        "object-src": [CSP_NONE],
    }
}
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"

# --- CORS (separate front-ends calling the REST API) ------------------------------------------
CORS_ALLOWED_ORIGINS = env_list("CORS_ALLOWED_ORIGINS")
CORS_URLS_REGEX = r"^/api/.*$"
# A separate front-end sends and reads the request id, and reads Retry-After and Location.
CORS_ALLOW_HEADERS = (*cors_default_headers, "x-request-id")
CORS_EXPOSE_HEADERS = ["X-Request-ID", "Retry-After", "Location"]

# --- static files and private uploads ---------------------------------------------------------
STATIC_URL = "/static/"
STATIC_ROOT = env_dir("WEB_STATIC_ROOT", VAR_DIR / "static")
# Uploaded images and series: private, served only through authorised views, never by URL.
MEDIA_ROOT = env_dir("WEB_MEDIA_ROOT", VAR_DIR / "media")
MEDIA_URL = "/private-media-is-never-served/"
if (
    MEDIA_ROOT == STATIC_ROOT
    or STATIC_ROOT in MEDIA_ROOT.parents
    or MEDIA_ROOT in (STATIC_ROOT.parents)
):
    raise ImproperlyConfigured("WEB_MEDIA_ROOT and WEB_STATIC_ROOT must not contain each other")
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    # Hashed, compressed names in production (after collectstatic); the app folders in debug.
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}
WHITENOISE_USE_FINDERS = DEBUG
WEB_MAX_IMAGE_BYTES = env_int(ENV, "WEB_MAX_IMAGE_BYTES", 20 * MIB, minimum=1024)
WEB_MAX_IMAGE_PIXELS = env_int(ENV, "WEB_MAX_IMAGE_PIXELS", 40_000_000, minimum=1)
WEB_MAX_SERIES_BYTES = env_int(ENV, "WEB_MAX_SERIES_BYTES", 1024 * MIB, minimum=MIB)
# The largest websocket message the server reads at all (consumers cap theirs lower).
WEB_WS_MAX_MESSAGE_BYTES = env_int(ENV, "WEB_WS_MAX_MESSAGE_BYTES", 4 * MIB, minimum=64 * 1024)
# Longest one MRI series job may run under Celery (WEB_SERIES_WORKER=celery).
WEB_SERIES_TASK_TIME_LIMIT_SECONDS = env_int(
    ENV, "WEB_SERIES_TASK_TIME_LIMIT_SECONDS", 3600, minimum=60
)
# --- series jobs: leases and automatic retries (web/README.md, "Series jobs") ---------------
# A running job's lease: its worker renews it every HEARTBEAT seconds; once it is LEASE
# seconds old (the worker died), the sweep, every SWEEP seconds, requeues the job.
WEB_SERIES_LEASE_SECONDS = env_int(ENV, "WEB_SERIES_LEASE_SECONDS", 10, minimum=3, maximum=600)
WEB_SERIES_HEARTBEAT_SECONDS = env_int(
    ENV, "WEB_SERIES_HEARTBEAT_SECONDS", 3, minimum=1, maximum=300
)
if WEB_SERIES_HEARTBEAT_SECONDS * 2 > WEB_SERIES_LEASE_SECONDS:
    # One late heartbeat must not cost a live worker its job.
    raise ImproperlyConfigured(
        "WEB_SERIES_HEARTBEAT_SECONDS must be at most half of WEB_SERIES_LEASE_SECONDS"
    )
WEB_SERIES_SWEEP_SECONDS = env_int(ENV, "WEB_SERIES_SWEEP_SECONDS", 5, minimum=1, maximum=300)
# A job failed for a transient reason (UNAVAILABLE, RESOURCE_EXHAUSTED, DEADLINE_EXCEEDED)
# runs again this many times, after RETRY_BASE, 2 x RETRY_BASE, ... seconds (at most
# RETRY_MAX), before it is failed for good (then retryable by hand).
WEB_SERIES_RETRIES = env_int(ENV, "WEB_SERIES_RETRIES", 4, minimum=0, maximum=20)
WEB_SERIES_RETRY_BASE_SECONDS = env_int(
    ENV, "WEB_SERIES_RETRY_BASE_SECONDS", 10, minimum=1, maximum=3600
)
WEB_SERIES_RETRY_MAX_SECONDS = env_int(
    ENV, "WEB_SERIES_RETRY_MAX_SECONDS", 300, minimum=1, maximum=86400
)
# --- end of series jobs -------------------------------------------------------------------
# The teachable machine's websockets and uploads: one webcam frame, frames per second on
# one prediction socket, images per upload request, and how long a training may stream.
WEB_TEACH_MAX_FRAME_BYTES = env_int(ENV, "WEB_TEACH_MAX_FRAME_BYTES", MIB, minimum=16 * 1024)
WEB_TEACH_MAX_FRAMES_PER_SECOND = env_int(ENV, "WEB_TEACH_MAX_FRAMES_PER_SECOND", 15, minimum=1)
WEB_TEACH_MAX_UPLOAD_FILES = env_int(ENV, "WEB_TEACH_MAX_UPLOAD_FILES", 50, minimum=1, maximum=90)
WEB_TEACH_TRAIN_TIMEOUT_SECONDS = env_int(ENV, "WEB_TEACH_TRAIN_TIMEOUT_SECONDS", 3600, minimum=60)
# Bodies other than files (JSON, form fields) stay small; files spool to disk above 2.5 MB.
DATA_UPLOAD_MAX_MEMORY_SIZE = 2 * MIB
FILE_UPLOAD_PERMISSIONS = 0o600
FILE_UPLOAD_DIRECTORY_PERMISSIONS = 0o700

# --- the gateway -------------------------------------------------------------------------------
GATEWAY_ADDR = env_str(ENV, "GATEWAY_ADDR", "127.0.0.1:50051")

# --- e-mail (console in development: without EMAIL_HOST, messages are printed) ---------------
EMAIL_HOST = env_str(ENV, "EMAIL_HOST", "")
EMAIL_BACKEND = (
    "django.core.mail.backends.smtp.EmailBackend"
    if EMAIL_HOST
    else "django.core.mail.backends.console.EmailBackend"
)
EMAIL_PORT = env_int(ENV, "EMAIL_PORT", 25, minimum=1, maximum=65535)
EMAIL_HOST_USER = env_str(ENV, "EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env_secret(ENV, "EMAIL_HOST_PASSWORD") or ""
EMAIL_USE_TLS = env_bool(ENV, "EMAIL_USE_TLS", False)
EMAIL_USE_SSL = env_bool(ENV, "EMAIL_USE_SSL", False)
if EMAIL_USE_TLS and EMAIL_USE_SSL:
    raise ImproperlyConfigured("set EMAIL_USE_TLS or EMAIL_USE_SSL, not both")
EMAIL_TIMEOUT = env_int(ENV, "EMAIL_TIMEOUT", 10, minimum=1)
DEFAULT_FROM_EMAIL = env_str(ENV, "DEFAULT_FROM_EMAIL", "medimg <no-reply@localhost>")
SERVER_EMAIL = DEFAULT_FROM_EMAIL

# --- REST API ----------------------------------------------------------------------------------
# DRF, drf-spectacular and the image_url fetcher's settings live with the API app.
from web.api.conf import (  # noqa: E402, F401  (settings are read by name)
    REST_FRAMEWORK,
    SPECTACULAR_SETTINGS,
    WEB_API_RATE_ANON,
    WEB_API_RATE_TOKEN,
    WEB_API_RATE_UPLOAD,
    WEB_API_RATE_USER,
    WEB_IMAGE_URL_ALLOW_NETWORKS,
    WEB_IMAGE_URL_TIMEOUT_SECONDS,
)

# --- language, time ----------------------------------------------------------------------------
LANGUAGE_CODE = "en-gb"
TIME_ZONE = env_str(ENV, "WEB_TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

# --- logging: readable in a terminal, JSON in Kubernetes; request ids on every line -------------
WEB_LOG_FORMAT = env_choice(ENV, "WEB_LOG_FORMAT", "text", ("text", "json"))
WEB_LOG_LEVEL = env_choice(
    ENV, "WEB_LOG_LEVEL", "INFO", ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
)
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "servicekit.logging_setup.RequestIdFilter"}},
    "formatters": {
        "json": {"()": "servicekit.logging_setup.JsonFormatter", "component": "web"},
        "text": {"()": "servicekit.logging_setup.TextFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": WEB_LOG_FORMAT,
            "filters": ["request_id"],
        }
    },
    "root": {"handlers": ["console"], "level": WEB_LOG_LEVEL},
    "loggers": {
        "django": {"handlers": [], "level": WEB_LOG_LEVEL, "propagate": True},
        "uvicorn": {"handlers": [], "level": "WARNING", "propagate": True},
    },
}

# --- where the site tells people what it is ----------------------------------------------------
WEB_SITE_NAME = env_str(ENV, "WEB_SITE_NAME", "medimg")
