"""The TorchServe archives pack the service's own weights, and their handler stands alone."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from mri_service.archive import HANDLER, NETWORK, build_archives, main
from mri_service.backends.embedded import EmbeddedBackend
from mri_service.model_card import load_model_card, weights_file
from mri_service.torchserve_handler import (
    CONFIG_FILE,
    MODEL_SOURCE,
    SliceModelConfig,
    decode_array,
    encode_array,
)
from tests.support.torchserve import synthetic_slices, write_seeded_model_set


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_seeded_model_set(tmp_path_factory.mktemp("models"), version=12, input_size=32)


@pytest.fixture(scope="module")
def archives(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return build_archives(model_dir, tmp_path_factory.mktemp("store"))


def test_it_builds_one_archive_per_model_named_for_torchserve(archives: dict[str, Path]) -> None:
    assert {name: path.name for name, path in archives.items()} == {
        "single": "mri-single.mar",
        "scantype": "mri-scantype.mar",
    }


def test_each_archive_packs_the_weights_the_embedded_backend_loads(
    model_dir: Path, archives: dict[str, Path]
) -> None:
    card = load_model_card(model_dir)
    for name, path in archives.items():
        with zipfile.ZipFile(path) as archive:
            manifest = json.loads(archive.read("MAR-INF/MANIFEST.json"))
            assert manifest["model"] == {
                "modelName": f"mri-{name}",
                "serializedFile": weights_file(name),
                "handler": HANDLER.name,
                "modelVersion": str(card.version),
            }
            assert archive.read(weights_file(name)) == (model_dir / weights_file(name)).read_bytes()
            assert archive.read(MODEL_SOURCE) == NETWORK.read_bytes()
            assert archive.read(HANDLER.name) == HANDLER.read_bytes()
            config = SliceModelConfig.from_json(archive.read(CONFIG_FILE).decode())
        assert config == SliceModelConfig(name, card.in_channels(name), card.width, 32, 12)


def test_it_takes_a_prefix_for_the_torchserve_names(model_dir: Path, tmp_path: Path) -> None:
    archives = build_archives(model_dir, tmp_path, prefix="breast-")
    assert sorted(path.name for path in archives.values()) == [
        "breast-scantype.mar",
        "breast-single.mar",
    ]


# Runs the packed handler as TorchServe's worker would: from the unpacked archive,
# entry point `handle`, with mri_service made unimportable.
WORKER = """
import json, sys, types
sys.modules["mri_service"] = None
sys.path.insert(0, sys.argv[1])
import torchserve_handler
manifest = json.load(open(sys.argv[1] + "/MAR-INF/MANIFEST.json"))
context = types.SimpleNamespace(system_properties={"model_dir": sys.argv[1]}, manifest=manifest)
assert torchserve_handler.handle(None, context) is None
payload = open(sys.argv[2], "rb").read()
sys.stdout.buffer.write(torchserve_handler.handle([{"slices": bytearray(payload)}], context)[0])
"""


def test_the_packed_handler_answers_as_the_embedded_backend_without_mri_service(
    model_dir: Path, archives: dict[str, Path], tmp_path: Path
) -> None:
    # One model: a worker process holds one, and each costs a torch import.
    unpacked = tmp_path / "unpacked"
    with zipfile.ZipFile(archives["scantype"]) as archive:
        archive.extractall(unpacked)
    batch = synthetic_slices(6, 3, 32, seed=3)
    request = tmp_path / "request.npy"
    request.write_bytes(encode_array(batch))
    worker = subprocess.run(
        [sys.executable, "-c", WORKER, str(unpacked), str(request)],
        capture_output=True,
        check=False,
        cwd=tmp_path,
    )
    assert worker.returncode == 0, worker.stderr.decode()
    embedded = EmbeddedBackend(model_dir, "scantype")
    embedded.load()
    served = decode_array(worker.stdout)
    assert served.dtype == np.float32
    np.testing.assert_allclose(served, embedded.predict(batch)[:, 0], rtol=0, atol=1e-6)


def test_the_command_line_builds_both_archives(
    model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--model-dir", str(model_dir), "--out", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out.split()
    assert sorted(Path(line).name for line in printed) == ["mri-scantype.mar", "mri-single.mar"]
    assert all(Path(line).is_file() for line in printed)


def test_the_command_line_refuses_a_folder_without_a_model_set(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--model-dir", str(tmp_path), "--out", str(tmp_path / "out")]) == 1
    assert capsys.readouterr().err.startswith("error: ")
    assert not (tmp_path / "out").exists()
