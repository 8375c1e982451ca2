"""The committed generated code matches what `make protos` makes from the .proto files."""

import os
import subprocess
import sys
from pathlib import Path

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


def test_every_enum_starts_with_its_unspecified_value() -> None:
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
    for module in modules:
        for enum in module.DESCRIPTOR.enum_types_by_name.values():
            prefix = "".join("_" + c if c.isupper() else c for c in enum.name).lstrip("_").upper()
            assert enum.values[0].name == f"{prefix}_UNSPECIFIED"
            assert enum.values[0].number == 0
            assert all(value.name.startswith(prefix + "_") for value in enum.values)
