"""Regenerates TorchServe's gRPC inference stubs from the installed TorchServe's own protos.

`python -m mri_service.backends.torchserve_api.generate [OUT_DIR]` extracts
`proto/inference.proto` from `ts/frontend/model-server.jar` (the server's Java
frontend, so the stubs always speak the installed server's protocol) and writes the
proto and its generated Python into OUT_DIR/mri_service/backends/torchserve_api/,
or in place without OUT_DIR. The proto keeps its package
`org.pytorch.serve.grpc.inference`, so the wire protocol is TorchServe's; only the
file's import path is ours, so that the generated modules import each other from
this package.
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
import zipfile
from importlib import resources
from pathlib import Path

from google.rpc import status_pb2
from grpc_tools import protoc

REPO_ROOT = Path(__file__).resolve().parents[3]
PACKAGE_DIR = Path("mri_service") / "backends" / "torchserve_api"
JAR_PROTOS = ("inference.proto",)  # management uses TorchServe's REST API; not needed here
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py", "_pb2_grpc.pyi")


def frontend_jar() -> Path:
    """Returns the installed TorchServe's frontend jar, which carries its .proto files.

    Raises:
        SystemExit: TorchServe is not installed.
    """
    spec = importlib.util.find_spec("ts")
    if spec is None or spec.origin is None:
        raise SystemExit("TorchServe is not installed: install the mri extras (torchserve)")
    return Path(spec.origin).parent / "frontend" / "model-server.jar"


def jar_proto(name: str, jar: Path | None = None) -> bytes:
    """Returns one .proto file exactly as the TorchServe frontend jar holds it."""
    with zipfile.ZipFile(jar or frontend_jar()) as archive:
        return archive.read(f"proto/{name}")


def generated_files(folder: Path) -> dict[str, bytes]:
    """Returns the protos and generated modules in folder by name (not __init__ or generate)."""
    return {
        path.name: path.read_bytes()
        for path in sorted(folder.iterdir())
        if path.name.endswith((".proto", *GENERATED_SUFFIXES))
    }


def generate(out_dir: Path) -> Path:
    """Writes the protos, their Python and typed stubs under out_dir; returns the folder."""
    if shutil.which("protoc-gen-mypy") is None:
        raise SystemExit("protoc-gen-mypy not found: install the dev extras (mypy-protobuf)")
    target = out_dir / PACKAGE_DIR
    target.mkdir(parents=True, exist_ok=True)
    for name in JAR_PROTOS:
        (target / name).write_bytes(jar_proto(name))
    # google/rpc/status.proto ships with googleapis-common-protos, next to its Python.
    googleapis = Path(status_pb2.__file__).resolve().parents[2]
    well_known = resources.files("grpc_tools") / "_proto"
    args = [
        "grpc_tools.protoc",
        f"-I{out_dir}",
        f"-I{googleapis}",
        f"-I{well_known}",
        f"--python_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        f"--mypy_out={out_dir}",
        f"--mypy_grpc_out={out_dir}",
        *(str(PACKAGE_DIR / name) for name in JAR_PROTOS),
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    return target


def main() -> None:
    """Generates into the folder given as the only argument, or in place."""
    out_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO_ROOT
    print(generate(out_dir.resolve()))


if __name__ == "__main__":
    main()
