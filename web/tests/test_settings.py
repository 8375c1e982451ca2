"""Settings from the environment: production passes `check --deploy`, bad values name themselves.

Settings are read once per process, so each case loads them in a fresh interpreter with
exactly the environment it states.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
WEB_ENV_FILE = REPO_ROOT / "k8s" / "base" / "config" / "web.env"
SHOWN = (
    "DEBUG",
    "SECRET_KEY",
    "ALLOWED_HOSTS",
    "DATABASES",
    "CACHES",
    "CHANNEL_LAYERS",
    "EMAIL_BACKEND",
    "EMAIL_HOST",
    "EMAIL_PORT",
    "EMAIL_USE_TLS",
    "EMAIL_HOST_PASSWORD",
    "SECURE_SSL_REDIRECT",
    "SESSION_COOKIE_SECURE",
    "CSRF_COOKIE_SECURE",
    "SECURE_HSTS_SECONDS",
    "SECURE_PROXY_SSL_HEADER",
    "STORAGES",
    "MEDIA_ROOT",
    "STATIC_ROOT",
    "GATEWAY_ADDR",
    "WEB_MAX_IMAGE_BYTES",
    "WEB_MAX_SERIES_BYTES",
    "CORS_ALLOWED_ORIGINS",
    "LOGGING",
)


def _base_env() -> dict[str, str]:
    """Returns a bare environment: no setting inherited from whoever runs the tests."""
    keep = ("PATH", "HOME", "LANG", "TMPDIR", "SYSTEMROOT")
    env = {name: os.environ[name] for name in keep if name in os.environ}
    env["PYTHONPATH"] = str(REPO_ROOT)
    return env


def _production_env() -> dict[str, str]:
    """Returns the deployment's ConfigMap (k8s/base/config/web.env) plus its Secrets."""
    env = _base_env()
    for line in WEB_ENV_FILE.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            env[name.strip()] = value.strip()
    env["SECRET_KEY"] = secrets.token_urlsafe(50)
    env["DATABASE_URL"] = "postgres://medimg:secret@postgres:5432/medimg"
    env["REDIS_URL"] = "redis://redis:6379/0"
    return env


def _python(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _settings(**env: str) -> dict[str, Any]:
    """Returns the settings a process with this environment (and nothing else) would get."""
    result = _python(
        f"""
        import json
        from web.config import settings
        print(json.dumps({{n: getattr(settings, n) for n in {SHOWN!r}}}, default=str))
        """,
        {**_base_env(), **env},
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def _settings_error(**env: str) -> str:
    result = _python("import web.config.settings", {**_base_env(), **env})
    assert result.returncode != 0
    return result.stderr.strip().splitlines()[-1]


def test_production_settings_pass_check_deploy_with_zero_warnings() -> None:
    result = subprocess.run(
        [sys.executable, "web/manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        env=_production_env(),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout


def test_production_is_https_only_with_secure_cookies_and_hsts() -> None:
    loaded = _settings(**{k: v for k, v in _production_env().items() if k != "PYTHONPATH"})
    assert loaded["DEBUG"] is False
    assert loaded["SECURE_SSL_REDIRECT"] is True
    assert loaded["SESSION_COOKIE_SECURE"] is loaded["CSRF_COOKIE_SECURE"] is True
    assert loaded["SECURE_HSTS_SECONDS"] >= 31536000
    assert loaded["SECURE_PROXY_SSL_HEADER"] == ["HTTP_X_FORWARDED_PROTO", "https"]
    assert loaded["DATABASES"]["default"]["ENGINE"] == "django.db.backends.postgresql"
    assert loaded["CACHES"]["default"]["BACKEND"].endswith("RedisCache")
    assert loaded["CHANNEL_LAYERS"]["default"]["BACKEND"].endswith("RedisChannelLayer")
    assert loaded["EMAIL_BACKEND"].endswith("smtp.EmailBackend")
    assert loaded["GATEWAY_ADDR"] == "gateway:50051"
    assert "CompressedManifest" in loaded["STORAGES"]["staticfiles"]["BACKEND"]
    assert loaded["LOGGING"]["handlers"]["console"]["formatter"] == "json"


def test_production_refuses_to_start_without_a_secret_key() -> None:
    assert "SECRET_KEY" in _settings_error()


def test_the_secret_key_may_come_from_a_mounted_file(tmp_path: Path) -> None:
    secret = tmp_path / "secret-key"
    secret.write_text("from-a-file-" + "k" * 50 + "\n")
    assert _settings(SECRET_KEY_FILE=str(secret))["SECRET_KEY"] == "from-a-file-" + "k" * 50


def test_development_runs_on_plain_http_with_sqlite_and_console_mail() -> None:
    loaded = _settings(WEB_DEBUG="true")
    assert loaded["DEBUG"] is True
    assert loaded["SECURE_SSL_REDIRECT"] is False
    assert loaded["SECURE_HSTS_SECONDS"] == 0
    assert loaded["SECURE_PROXY_SSL_HEADER"] is None
    database = loaded["DATABASES"]["default"]
    assert database["ENGINE"] == "django.db.backends.sqlite3"
    assert database["NAME"] == str(REPO_ROOT / "var" / "web" / "db.sqlite3")
    assert loaded["EMAIL_BACKEND"].endswith("console.EmailBackend")
    assert loaded["CACHES"]["default"]["BACKEND"].endswith("LocMemCache")
    assert loaded["GATEWAY_ADDR"] == "127.0.0.1:50051"
    assert loaded["MEDIA_ROOT"] == str(REPO_ROOT / "var" / "web" / "media")


def test_a_deployment_without_a_proxy_trusts_no_forwarded_header() -> None:
    loaded = _settings(SECRET_KEY="k" * 50, SECURE_PROXY_SSL_HEADER="none")
    assert loaded["SECURE_PROXY_SSL_HEADER"] is None
    assert loaded["SECURE_SSL_REDIRECT"] is True


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("WEB_MAX_IMAGE_BYTES", "lots"),
        ("WEB_DEBUG", "maybe"),
        ("WEB_LOG_FORMAT", "xml"),
        ("EMAIL_PORT", "0"),
    ],
)
def test_a_bad_value_stops_the_start_and_names_its_variable(name: str, value: str) -> None:
    assert name in _settings_error(**{"WEB_DEBUG": "true", name: value})


def test_smtp_settings_and_a_password_file_are_read(tmp_path: Path) -> None:
    password = tmp_path / "smtp-password"
    password.write_text("s3cret\n")
    loaded = _settings(
        WEB_DEBUG="true",
        EMAIL_HOST="smtp.example.com",
        EMAIL_PORT="587",
        EMAIL_USE_TLS="yes",
        EMAIL_HOST_PASSWORD_FILE=str(password),
    )
    assert loaded["EMAIL_BACKEND"].endswith("smtp.EmailBackend")
    assert (loaded["EMAIL_HOST"], loaded["EMAIL_PORT"], loaded["EMAIL_USE_TLS"]) == (
        "smtp.example.com",
        587,
        True,
    )
    assert loaded["EMAIL_HOST_PASSWORD"] == "s3cret"


def test_upload_limits_cors_and_hosts_come_from_the_environment() -> None:
    loaded = _settings(
        WEB_DEBUG="true",
        WEB_MAX_IMAGE_BYTES="1048576",
        WEB_MAX_SERIES_BYTES="2097152",
        CORS_ALLOWED_ORIGINS="https://a.example, https://b.example",
        ALLOWED_HOSTS="medimg.example.com",
    )
    assert (loaded["WEB_MAX_IMAGE_BYTES"], loaded["WEB_MAX_SERIES_BYTES"]) == (1048576, 2097152)
    assert loaded["CORS_ALLOWED_ORIGINS"] == ["https://a.example", "https://b.example"]
    assert loaded["ALLOWED_HOSTS"] == ["medimg.example.com"]


def test_private_uploads_may_not_live_among_the_public_static_files(tmp_path: Path) -> None:
    error = _settings_error(
        WEB_DEBUG="true", WEB_STATIC_ROOT=str(tmp_path), WEB_MEDIA_ROOT=str(tmp_path / "media")
    )
    assert "WEB_MEDIA_ROOT" in error


@pytest.fixture(scope="module")
def collected_static(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Runs collectstatic as docker/web.Dockerfile does: a throwaway SECRET_KEY and nothing else."""
    static_root = tmp_path_factory.mktemp("static")
    env = {
        **_base_env(),
        "SECRET_KEY": "collectstatic-only-not-a-secret",
        "WEB_STATIC_ROOT": str(static_root),
    }
    result = subprocess.run(
        [sys.executable, "web/manage.py", "collectstatic", "--noinput"],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert (static_root / "staticfiles.json").is_file()
    return static_root


def test_probes_reach_healthz_while_everything_else_is_https_only(collected_static: Path) -> None:
    env = {**_production_env(), "WEB_STATIC_ROOT": str(collected_static)}
    result = _python(
        """
        import json, re, django
        django.setup()
        from django.test import Client
        client = Client()
        site = {"HTTP_HOST": "medimg.example.com"}
        https = {**site, "HTTP_X_FORWARDED_PROTO": "https"}
        kubelet = client.get("/healthz", HTTP_HOST="10.244.1.7:8000")
        k8s_probe = client.get("/healthz", HTTP_HOST="localhost", HTTP_X_FORWARDED_PROTO="https")
        plain = client.get("/", **site)
        landing = client.get("/", **https)
        css = re.search(r'href="(/static/core/site\\.[0-9a-f]+\\.css)"', landing.content.decode())
        styles = client.get(css.group(1), **https)
        print(json.dumps({
            "kubelet": kubelet.status_code, "k8s_probe": k8s_probe.status_code,
            "plain": [plain.status_code, plain.get("Location")],
            "landing": landing.status_code, "hsts": landing.get("Strict-Transport-Security"),
            "styles": [styles.status_code, styles.get("Cache-Control")],
        }))
        """,
        {**env, "DJANGO_SETTINGS_MODULE": "web.config.settings"},
    )
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen["kubelet"] == seen["k8s_probe"] == 200
    assert seen["plain"] == [301, "https://medimg.example.com/"]
    assert seen["landing"] == 200
    assert "max-age=31536000" in seen["hsts"]
    assert seen["styles"][0] == 200
    assert "immutable" in seen["styles"][1]


def test_postgresql_gets_a_connection_pool_per_process_unless_turned_off() -> None:
    url = "postgres://medimg:secret@db.example:5432/medimg"
    pooled = _settings(WEB_DEBUG="true", DATABASE_URL=url, WEB_DB_POOL_MAX_SIZE="4")
    assert pooled["DATABASES"]["default"]["OPTIONS"]["pool"] == {
        "min_size": 2,
        "max_size": 4,
        "timeout": 10,
    }
    assert pooled["DATABASES"]["default"]["CONN_MAX_AGE"] == 0
    unpooled = _settings(WEB_DEBUG="true", DATABASE_URL=url, WEB_DB_POOL="false")
    assert "pool" not in unpooled["DATABASES"]["default"].get("OPTIONS", {})
    sqlite = _settings(WEB_DEBUG="true")
    assert "pool" not in sqlite["DATABASES"]["default"]["OPTIONS"]


def test_a_kept_connection_and_the_pool_together_are_refused() -> None:
    error = _settings_error(
        WEB_DEBUG="true",
        DATABASE_URL="postgres://medimg:secret@db.example:5432/medimg",
        WEB_DB_CONN_MAX_AGE="60",
    )
    assert "WEB_DB_CONN_MAX_AGE must be 0 with WEB_DB_POOL on" in error
