"""The committed generated code matches what `make protos` makes from the .proto files."""

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
GENERATED = ROOT / "protos" / "medimg" / "v1"


def generated_files(folder: Path) -> dict[str, bytes]:
    return {
        path.name: path.read_bytes()
        for path in sorted(folder.iterdir())
        if path.is_file() and path.suffix != ".proto"
    }


def test_the_generated_code_is_not_stale(tmp_path: Path) -> None:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    subprocess.run(
        [sys.executable, str(ROOT / "protos" / "generate.py"), str(tmp_path)],
        check=True,
        env=env,
        capture_output=True,
    )
    fresh = generated_files(tmp_path / "medimg" / "v1")
    committed = generated_files(GENERATED)
    assert sorted(fresh) == sorted(committed), "run `make protos` and commit the result"
    stale = [name for name in fresh if fresh[name] != committed[name]]
    assert not stale, f"stale generated files {stale}: run `make protos` and commit the result"


def test_every_service_has_its_own_contract_file() -> None:
    names = {path.name for path in GENERATED.glob("*.proto")}
    assert {
        "diagnosis_service.proto",
        "series_analysis_service.proto",
        "trainer_service.proto",
        "model_registry.proto",
    } <= names


def test_every_element_of_the_contracts_is_commented() -> None:
    uncommented = []
    for proto in GENERATED.glob("*.proto"):
        lines = proto.read_text().splitlines()
        for number, line in enumerate(lines):
            stripped = line.strip()
            declares = stripped.startswith(("service ", "rpc ", "message ", "enum ", "oneof "))
            is_field = (
                stripped.endswith(";")
                and "=" in stripped
                and not stripped.startswith(("syntax", "package", "option", "import", "reserved"))
            )
            if (declares or is_field) and not lines[number - 1].strip().startswith("//"):
                uncommented.append(f"{proto.name}:{number + 1}: {stripped}")
    assert not uncommented, "\n".join(uncommented)


def _contract_modules() -> tuple[Any, ...]:
    """Returns the generated module of every contract file."""
    from medimg.v1 import (
        diagnosis_service_pb2,
        model_info_pb2,
        model_registry_pb2,
        series_analysis_service_pb2,
        trainer_service_pb2,
    )

    modules = (
        diagnosis_service_pb2,
        model_info_pb2,
        model_registry_pb2,
        series_analysis_service_pb2,
        trainer_service_pb2,
    )
    return modules


def test_every_enum_starts_with_its_unspecified_value() -> None:
    for module in _contract_modules():
        for enum in module.DESCRIPTOR.enum_types_by_name.values():
            prefix = "".join("_" + c if c.isupper() else c for c in enum.name).lstrip("_").upper()
            assert enum.values[0].name == f"{prefix}_UNSPECIFIED"
            assert enum.values[0].number == 0
            assert all(value.name.startswith(prefix + "_") for value in enum.values)


def test_every_list_rpc_is_paginated_as_aip_158_says() -> None:
    methods = [
        method
        for module in _contract_modules()
        for service in module.DESCRIPTOR.services_by_name.values()
        for method in service.methods
        if method.name.startswith("List")
    ]
    assert {m.name for m in methods} >= {"ListModels", "ListProjects", "ListPublishedModels"}
    for method in methods:
        request = {f.name: f.type for f in method.input_type.fields}
        response = {f.name: f.type for f in method.output_type.fields}
        assert request.get("page_size") == 5 and request.get("page_token") == 9, method.name
        assert response.get("next_page_token") == 9, method.name  # 5: int32, 9: string


def test_no_message_carries_parallel_arrays_but_deprecated_ones() -> None:
    # Two repeated scalars of one message whose comment says "in the order of" the other:
    # one repeated message of both is the contract; the scalar copy is only kept, marked
    # deprecated, for callers built before it (buf breaking forbids removing it in v1).
    parallel = []
    for proto in GENERATED.glob("*.proto"):
        lines = proto.read_text().splitlines()
        for number, line in enumerate(lines):
            stripped = line.strip()
            comment: list[str] = []
            above = number - 1
            while above >= 0 and lines[above].strip().startswith("//"):
                comment.insert(0, lines[above])
                above -= 1
            if stripped.startswith("repeated ") and "in the order of" in " ".join(comment):
                scalar = stripped.split()[1] in ("int32", "int64", "float", "double", "bool")
                if scalar and "deprecated = true" not in stripped:
                    parallel.append(f"{proto.name}:{number + 1}: {stripped}")
    assert not parallel, "\n".join(parallel)


def test_every_list_of_class_scores_is_in_the_one_order() -> None:
    text = {proto.name: proto.read_text() for proto in GENERATED.glob("*.proto")}
    assert "lists the\n// classes by score, highest first" in text["diagnosis_service.proto"]
    for name, source in text.items():
        lines = source.splitlines()
        for number, line in enumerate(lines):
            if line.strip().startswith("repeated ClassScore "):
                assert "highest first (see ClassScore)" in lines[number - 1], f"{name}:{number}"
