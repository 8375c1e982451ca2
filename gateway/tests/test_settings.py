"""GatewaySettings.from_env: defaults, routes from file and env, and loud refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.registry import Route, RouteKind
from gateway.settings import GatewaySettings
from servicekit.settings import SettingsError


def test_it_has_working_defaults() -> None:
    settings = GatewaySettings.from_env({})
    assert settings.server.port == 50051
    assert settings.routes == {}
    assert settings.default_deadline_s == 30.0
    assert settings.max_deadline_s == 300.0
    assert settings.retry.attempts == 3
    assert settings.model_info_ttl_s == 10.0
    assert settings.trainer_poll_s == 5.0
    assert settings.admin_token is None
    assert settings.upstream_tls is None
    assert settings.state_file == Path("var/gateway/routes.json").absolute()


def test_the_routes_variable_overrides_the_file_disease_by_disease(tmp_path: Path) -> None:
    registry = tmp_path / "registry.yaml"
    registry.write_text(
        "models:\n"
        "  - {disease: skin, kind: image, addresses: ['file-host:1']}\n"
        "  - {disease: mri, kind: series, addresses: ['file-host:2']}\n"
    )
    settings = GatewaySettings.from_env(
        {"GATEWAY_REGISTRY_FILE": str(registry), "GATEWAY_ROUTES": "skin=image@env-host:1"}
    )
    assert settings.routes == {
        "skin": Route("skin", RouteKind.IMAGE, ("env-host:1",)),
        "mri": Route("mri", RouteKind.SERIES, ("file-host:2",)),
    }


def test_it_names_the_variable_of_a_bad_route() -> None:
    with pytest.raises(SettingsError, match=r"GATEWAY_ROUTES: .*'Skin'"):
        GatewaySettings.from_env({"GATEWAY_ROUTES": "Skin=image@h:1"})


def test_it_names_the_registry_file_when_it_is_malformed(tmp_path: Path) -> None:
    registry = tmp_path / "registry.yaml"
    registry.write_text("models:\n  - {disease: skin, kind: image}\n")
    with pytest.raises(SettingsError, match=r"GATEWAY_REGISTRY_FILE .*registry.yaml.*models\[0\]"):
        GatewaySettings.from_env({"GATEWAY_REGISTRY_FILE": str(registry)})


def test_it_refuses_a_registry_file_that_does_not_exist(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="GATEWAY_REGISTRY_FILE"):
        GatewaySettings.from_env({"GATEWAY_REGISTRY_FILE": str(tmp_path / "absent.yaml")})


def test_it_refuses_a_default_deadline_beyond_the_maximum() -> None:
    with pytest.raises(SettingsError, match="GATEWAY_DEFAULT_DEADLINE_SECONDS"):
        GatewaySettings.from_env(
            {"GATEWAY_DEFAULT_DEADLINE_SECONDS": "60", "GATEWAY_MAX_DEADLINE_SECONDS": "10"}
        )


def test_it_lowers_the_default_series_deadline_to_a_smaller_maximum() -> None:
    settings = GatewaySettings.from_env({"GATEWAY_MAX_DEADLINE_SECONDS": "20"})
    assert settings.series_deadline_s == 20.0
    assert settings.default_deadline_s == 20.0


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("GATEWAY_RETRY_ATTEMPTS", "0"),
        ("GATEWAY_RETRY_ATTEMPTS", "three"),
        ("GATEWAY_MODEL_INFO_TTL_SECONDS", "-1"),
        ("GATEWAY_MAX_DEADLINE_SECONDS", "soon"),
        ("GATEWAY_TRAINER_POLL_SECONDS", "0"),
    ],
)
def test_it_names_the_variable_of_a_bad_number(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        GatewaySettings.from_env({name: value})


def test_it_reads_the_admin_token_from_a_file_and_keeps_it_out_of_repr(tmp_path: Path) -> None:
    secret = tmp_path / "token"
    secret.write_text("s3cret\n")
    settings = GatewaySettings.from_env({"GATEWAY_ADMIN_TOKEN_FILE": str(secret)})
    assert settings.admin_token == "s3cret"
    assert "s3cret" not in repr(settings)


def test_it_needs_a_ca_for_an_upstream_client_certificate(tmp_path: Path) -> None:
    cert = tmp_path / "client.pem"
    cert.write_text("x")
    with pytest.raises(SettingsError, match="GATEWAY_UPSTREAM_TLS_CA_FILE"):
        GatewaySettings.from_env(
            {
                "GATEWAY_UPSTREAM_TLS_CERT_FILE": str(cert),
                "GATEWAY_UPSTREAM_TLS_KEY_FILE": str(cert),
            }
        )


def test_it_reads_a_trainer_route_from_the_file_and_the_variable(tmp_path: Path) -> None:
    registry = tmp_path / "registry.yaml"
    registry.write_text("models:\n  - {disease: trainer, kind: trainer, addresses: ['t:1']}\n")
    from_file = GatewaySettings.from_env({"GATEWAY_REGISTRY_FILE": str(registry)})
    from_env = GatewaySettings.from_env({"GATEWAY_ROUTES": "trainer=trainer@t:2"})
    assert from_file.routes == {"trainer": Route("trainer", RouteKind.TRAINER, ("t:1",))}
    assert from_env.routes == {"trainer": Route("trainer", RouteKind.TRAINER, ("t:2",))}


def test_it_refuses_a_second_trainer_between_the_file_and_the_variable(tmp_path: Path) -> None:
    registry = tmp_path / "registry.yaml"
    registry.write_text("models:\n  - {disease: teach, kind: trainer, addresses: ['t:1']}\n")
    with pytest.raises(SettingsError, match=r"GATEWAY_REGISTRY_FILE and GATEWAY_ROUTES.*'teach'"):
        GatewaySettings.from_env(
            {"GATEWAY_REGISTRY_FILE": str(registry), "GATEWAY_ROUTES": "trainer=trainer@t:2"}
        )
