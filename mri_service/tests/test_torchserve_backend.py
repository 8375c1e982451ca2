"""TorchServe's generated stubs are current; the handler's wire format refuses what it should."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mri_service.backends.torchserve_api import generate, inference_pb2
from mri_service.torchserve_handler import (
    BAD_REQUEST,
    INPUT_KEY,
    SliceHandler,
    SliceModelConfig,
    check_slices,
    decode_array,
    encode_array,
)

COMMITTED = Path(generate.__file__).resolve().parent
CONFIG = SliceModelConfig(model="scantype", in_channels=3, width=0.125, input_size=32, version=1)


def test_the_generated_stubs_match_the_installed_torchserves_protos(tmp_path: Path) -> None:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    subprocess.run(
        [sys.executable, "-m", "mri_service.backends.torchserve_api.generate", str(tmp_path)],
        check=True,
        env=env,
        capture_output=True,
    )
    fresh = generate.generated_files(tmp_path / generate.PACKAGE_DIR)
    committed = generate.generated_files(COMMITTED)
    hint = "run `python -m mri_service.backends.torchserve_api.generate` and commit the result"
    assert sorted(fresh) == sorted(committed), hint
    assert [name for name in fresh if fresh[name] != committed[name]] == [], hint
    assert committed["inference.proto"] == generate.jar_proto("inference.proto")


def test_the_stubs_keep_torchserves_wire_names() -> None:
    service = inference_pb2.DESCRIPTOR.services_by_name["InferenceAPIsService"]
    assert service.full_name == "org.pytorch.serve.grpc.inference.InferenceAPIsService"
    assert {method.name for method in service.methods} >= {"Ping", "Predictions"}


def test_slices_travel_as_npy_bytes_unchanged() -> None:
    slices = np.random.default_rng(0).uniform(0, 255, (5, 3, 32, 32)).astype(np.float32)
    payload = encode_array(slices)
    assert payload.startswith(b"\x93NUMPY")
    decoded = decode_array(bytearray(payload))
    assert decoded.dtype == np.float32
    np.testing.assert_array_equal(decoded, slices)


def test_it_refuses_pickled_objects() -> None:
    buffer = io.BytesIO()
    np.save(buffer, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match=r"not an \.npy array"):
        decode_array(buffer.getvalue())


def test_it_refuses_bytes_that_are_not_an_array() -> None:
    with pytest.raises(ValueError, match=r"not an \.npy array"):
        decode_array(b"PK\x03\x04 a zip, not an array")


@pytest.mark.parametrize(
    ("slices", "message"),
    [
        (np.zeros((2, 3, 32, 32), np.float64), "must be float32, got float64"),
        (np.zeros((2, 1, 32, 32), np.float32), r"shape \(N, 3, 32, 32\), got \[2, 1, 32, 32\]"),
        (np.zeros((2, 3, 64, 64), np.float32), r"shape \(N, 3, 32, 32\), got \[2, 3, 64, 64\]"),
        (np.zeros((3, 32, 32), np.float32), r"shape \(N, 3, 32, 32\)"),
        (np.zeros((0, 3, 32, 32), np.float32), "no slice"),
        (np.full((1, 3, 32, 32), np.nan, np.float32), "NaN or infinite"),
    ],
    ids=["float64", "channels", "size", "3-d", "empty", "nan"],
)
def test_it_refuses_slices_the_model_cannot_take(slices: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_slices(slices, CONFIG)


@pytest.mark.parametrize(
    "request_",
    [{}, {"image": b"x"}, {INPUT_KEY: "text"}, {INPUT_KEY: encode_array(np.zeros(3, np.int64))}],
    ids=["no input", "other input", "text", "wrong array"],
)
def test_the_handler_answers_a_bad_request_with_400(request_: dict[str, object]) -> None:
    handler = SliceHandler()
    handler.config = CONFIG  # refusals happen before the network is needed
    with pytest.raises(Exception) as caught:
        handler.handle([request_])
    # TorchServe's PredictionException: its code becomes gRPC INVALID_ARGUMENT.
    assert type(caught.value).__name__ == "PredictionException"
    assert getattr(caught.value, "error_code", None) == BAD_REQUEST
    assert str(getattr(caught.value, "message", "")).strip()


def test_the_config_survives_the_archive() -> None:
    assert SliceModelConfig.from_json(CONFIG.to_json()) == CONFIG
