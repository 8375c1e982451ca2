"""Generates the Python code for the medimg contracts: `python protos/generate.py [OUT_DIR]`."""

from __future__ import annotations

import shutil
import sys
from importlib import resources
from pathlib import Path

from grpc_tools import protoc

PROTO_ROOT = Path(__file__).resolve().parent
PACKAGE_DIR = Path("medimg") / "v1"


def proto_files() -> list[Path]:
    """Returns the contract files, relative to the proto root, in a stable order."""
    return sorted((PROTO_ROOT / PACKAGE_DIR).glob("*.proto"))


def generate(out_dir: Path) -> None:
    """Writes `*_pb2.py`, `*_pb2_grpc.py` and their typed stubs for every contract under out_dir."""
    target = out_dir / PACKAGE_DIR
    target.mkdir(parents=True, exist_ok=True)
    well_known = str(resources.files("grpc_tools") / "_proto")
    files = [str(path.relative_to(PROTO_ROOT)) for path in proto_files()]
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{well_known}",
        f"--python_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        f"--mypy_out={out_dir}",
        f"--mypy_grpc_out={out_dir}",
        *files,
    ]
    if shutil.which("protoc-gen-mypy") is None:
        raise SystemExit("protoc-gen-mypy not found: install the dev extras (mypy-protobuf)")
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    for package in (out_dir / "medimg", target):
        (package / "__init__.py").write_text(
            '"""Generated gRPC contracts of medimg; regenerate with `make protos`."""\n'
        )
    (target / "py.typed").write_text("")


def main() -> None:
    """Generates into the folder given as the only argument, or in place."""
    out_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else PROTO_ROOT
    generate(out_dir.resolve())


if __name__ == "__main__":
    main()
