"""Routes: parsing the env and file formats, validation, the table's layers and persistence."""

from __future__ import annotations

import errno
import json
from pathlib import Path
from unittest import mock

import pytest

from gateway.errors import RouteNotRemovable
from gateway.registry import (
    Route,
    RouteError,
    RouteKind,
    RouteTable,
    StateStore,
    load_registry_file,
    make_route,
    parse_routes_document,
    parse_routes_spec,
    validate_address,
    validate_disease,
)
from servicekit.errors import UnknownDisease

SKIN = Route("skin", RouteKind.IMAGE, ("127.0.0.1:50061",))
MRI = Route("mri", RouteKind.SERIES, ("127.0.0.1:50062",))


def test_it_parses_the_routes_variable_with_replicas_and_kinds() -> None:
    routes = parse_routes_spec(
        "skin=image@127.0.0.1:50061, 127.0.0.1:50071 ; mri=series@mri-service:50062;"
    )
    assert routes == {
        "skin": Route("skin", RouteKind.IMAGE, ("127.0.0.1:50061", "127.0.0.1:50071")),
        "mri": Route("mri", RouteKind.SERIES, ("mri-service:50062",)),
    }


def test_it_reads_an_empty_routes_variable_as_no_routes() -> None:
    assert parse_routes_spec("") == {}


@pytest.mark.parametrize("spec", ["skin", "skin=image", "skin@127.0.0.1:1", "=image@h:1"])
def test_it_rejects_a_malformed_routes_entry(spec: str) -> None:
    with pytest.raises(RouteError):
        parse_routes_spec(spec)


def test_it_rejects_a_route_without_addresses() -> None:
    with pytest.raises(RouteError, match="at least one address"):
        parse_routes_spec("skin=image@")


def test_it_rejects_a_disease_listed_twice() -> None:
    with pytest.raises(RouteError, match="listed twice"):
        parse_routes_spec("skin=image@h:1;skin=image@h:2")


def test_it_rejects_the_same_address_twice_in_one_route() -> None:
    with pytest.raises(RouteError, match="same address twice"):
        make_route("skin", "image", ["h:1", "h:1"])


def test_it_rejects_an_unknown_kind() -> None:
    with pytest.raises(RouteError, match="image, series, trainer"):
        make_route("skin", "video", ["h:1"])


def test_it_parses_a_trainer_route() -> None:
    routes = parse_routes_spec("skin=image@h:1;trainer=trainer@h:3")
    assert routes["trainer"] == Route("trainer", RouteKind.TRAINER, ("h:3",))


def test_it_rejects_two_trainer_routes_in_the_variable() -> None:
    with pytest.raises(RouteError, match="at most one route may be of kind trainer"):
        parse_routes_spec("trainer=trainer@h:1;teach=trainer@h:2")


def test_it_rejects_two_trainer_routes_in_a_registry_document() -> None:
    models = [
        {"disease": name, "kind": "trainer", "addresses": [address]}
        for name, address in (("trainer", "h:1"), ("teach", "h:2"))
    ]
    with pytest.raises(RouteError, match="at most one route may be of kind trainer"):
        parse_routes_document({"models": models})


@pytest.mark.parametrize("name", ["skin", "mri", "breast-mri-2", "a"])
def test_it_accepts_disease_names_of_letters_digits_and_dashes(name: str) -> None:
    assert validate_disease(name) == name


@pytest.mark.parametrize(
    "name", ["", "Skin", "2skin", "-skin", "skin_lesion", "skin lesion", "x" * 64]
)
def test_it_rejects_disease_names_that_break_the_rule(name: str) -> None:
    with pytest.raises(RouteError):
        validate_disease(name)


@pytest.mark.parametrize(
    "address", ["127.0.0.1:50061", "skin-service:50061", "a.b.svc.cluster.local:1", "[::1]:443"]
)
def test_it_accepts_host_and_port_addresses(address: str) -> None:
    assert validate_address(address) == address


@pytest.mark.parametrize(
    "address",
    ["127.0.0.1", ":50061", "host:0", "host:65536", "host:http", "ho st:1", "::1:443", "[zz]:1"],
)
def test_it_rejects_malformed_addresses(address: str) -> None:
    with pytest.raises(RouteError):
        validate_address(address)


def test_it_reads_a_registry_file(tmp_path: Path) -> None:
    path = tmp_path / "registry.yaml"
    path.write_text(
        "models:\n"
        "  - {disease: skin, kind: image, addresses: ['127.0.0.1:50061']}\n"
        "  - disease: mri\n"
        "    kind: series\n"
        "    addresses: ['127.0.0.1:50062']\n"
    )
    assert load_registry_file(path) == {"skin": SKIN, "mri": MRI}


def test_it_reads_an_empty_registry_file_as_no_routes(tmp_path: Path) -> None:
    path = tmp_path / "registry.yaml"
    path.write_text("")
    assert load_registry_file(path) == {}


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (["skin"], "mapping"),
        ({"routes": []}, "mapping"),
        ({"models": {"skin": 1}}, "must be a list"),
        ({"models": ["skin"]}, r"models\[0\]"),
        ({"models": [{"disease": "skin", "kind": "image"}]}, "addresses"),
        ({"models": [{"disease": "skin", "kind": "image", "addresses": "h:1"}]}, "list"),
        ({"models": [{"disease": "skin", "kind": "image", "addresses": [], "x": 1}]}, "unknown"),
        ({"models": [{"disease": False, "kind": "image", "addresses": ["h:1"]}]}, "string"),
    ],
)
def test_it_rejects_a_malformed_registry_document(document: object, message: str) -> None:
    with pytest.raises(RouteError, match=message):
        parse_routes_document(document)


def test_it_rejects_a_registry_file_that_is_not_yaml(tmp_path: Path) -> None:
    path = tmp_path / "registry.yaml"
    path.write_text("models: [unclosed\n")
    with pytest.raises(RouteError, match="not valid YAML"):
        load_registry_file(path)


def test_it_saves_routes_atomically_and_reads_them_back(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state" / "routes.json")
    store.save([SKIN, MRI])
    assert store.load() == {"skin": SKIN, "mri": MRI}
    assert [p.name for p in store.path.parent.iterdir()] == ["routes.json"]
    assert json.loads(store.path.read_text())["models"][0]["disease"] == "mri"


def test_it_keeps_the_old_state_when_saving_fails(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "routes.json")
    store.save([SKIN])
    disk_full = OSError(errno.ENOSPC, "No space left on device")
    with (
        mock.patch("gateway.registry.os.fsync", autospec=True, side_effect=disk_full),
        pytest.raises(OSError),
    ):
        store.save([SKIN, MRI])
    assert store.load() == {"skin": SKIN}
    assert [p.name for p in tmp_path.iterdir()] == ["routes.json"]


def test_it_reads_a_missing_state_file_as_no_routes(tmp_path: Path) -> None:
    assert StateStore(tmp_path / "absent.json").load() == {}


def test_it_rejects_a_corrupt_state_file(tmp_path: Path) -> None:
    path = tmp_path / "routes.json"
    path.write_text("{not json")
    with pytest.raises(RouteError):
        StateStore(path).load()


def test_a_registered_route_overrides_the_configured_one_until_unregistered(
    tmp_path: Path,
) -> None:
    table = RouteTable({"skin": SKIN}, StateStore(tmp_path / "routes.json"))
    moved = Route("skin", RouteKind.IMAGE, ("10.0.0.9:50061",))
    table.register(moved)
    assert table.get("skin") == moved
    table.unregister("skin")
    assert table.get("skin") == SKIN


def test_a_registered_route_survives_a_fresh_table(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "routes.json")
    RouteTable({}, store).register(MRI)
    reloaded = RouteTable({"skin": SKIN}, StateStore(tmp_path / "routes.json"))
    assert reloaded.routes() == [MRI, SKIN]
    assert reloaded.is_runtime("mri") and not reloaded.is_runtime("skin")


def test_it_refuses_to_unregister_a_configured_route(tmp_path: Path) -> None:
    table = RouteTable({"skin": SKIN}, StateStore(tmp_path / "routes.json"))
    with pytest.raises(RouteNotRemovable, match="GATEWAY_ROUTES"):
        table.unregister("skin")


def test_it_answers_unknown_disease_when_unregistering_what_is_not_routed(tmp_path: Path) -> None:
    table = RouteTable({}, StateStore(tmp_path / "routes.json"))
    with pytest.raises(UnknownDisease):
        table.unregister("lung")


def test_the_trainer_route_is_found_apart_from_the_model_routes(tmp_path: Path) -> None:
    trainer = Route("trainer", RouteKind.TRAINER, ("127.0.0.1:50063",))
    table = RouteTable({"skin": SKIN, "trainer": trainer}, StateStore(tmp_path / "routes.json"))
    assert table.trainer() == trainer
    assert table.model_routes() == [SKIN]
    assert RouteTable({"skin": SKIN}, StateStore(tmp_path / "other.json")).trainer() is None


def test_it_tells_configured_routes_from_runtime_ones(tmp_path: Path) -> None:
    table = RouteTable({"skin": SKIN}, StateStore(tmp_path / "routes.json"))
    table.register(MRI)
    assert table.is_configured("skin") and not table.is_runtime("skin")
    assert table.is_runtime("mri") and not table.is_configured("mri")


def test_it_lists_diseases_by_kind(tmp_path: Path) -> None:
    table = RouteTable({"skin": SKIN, "mri": MRI}, StateStore(tmp_path / "routes.json"))
    assert table.diseases() == ["mri", "skin"]
    assert table.diseases(RouteKind.IMAGE) == ["skin"]
