"""The embedded and tfserving backends: loading, model info, prediction and error mapping."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from servicekit.classifier.errors import BackendRejected, ModelMismatch
from servicekit.errors import BackendTimeout, BackendUnavailable, ModelNotReady, QueueFull
from servicekit.settings import SettingsError
from skin_service.backends import build_backend
from skin_service.backends.embedded import EmbeddedBackend
from skin_service.backends.tfserving import TfServingBackend
from skin_service.domain import LABELS
from skin_service.model_card import CARD_FILE
from skin_service.settings import Settings, TfServingSettings
from tests.support.processes import free_port
from tests.tfserving_fake.server import FakeTfServing

BATCH = np.random.default_rng(5).random((5, 32, 32, 3), dtype=np.float32)


def copy_model(source: Path, target: Path, **card_changes: object) -> Path:
    shutil.copytree(source, target)
    card = json.loads((target / CARD_FILE).read_text())
    card.update(card_changes)
    (target / CARD_FILE).write_text(json.dumps(card))
    return target


def tf_settings(address: str, **changes: object) -> TfServingSettings:
    values: dict[str, object] = {
        "address": address,
        "model_name": "skin",
        "model_version": None,
        "signature_name": "serving_default",
        "timeout_s": 5.0,
    }
    values.update(changes)
    return TfServingSettings(**values)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def fake(fixture_model_dir: Path) -> Iterator[FakeTfServing]:
    with FakeTfServing(fixture_model_dir) as server:
        yield server


@pytest.fixture
def tfserving(fake: FakeTfServing, fixture_model_dir: Path) -> Iterator[TfServingBackend]:
    backend = TfServingBackend(fixture_model_dir, tf_settings(fake.address, timeout_s=1.0))
    backend.load()
    yield backend
    backend.close()
    fake.service.fault, fake.service.delay_s = None, 0.0


# --- factory ---------------------------------------------------------------------------


def test_the_backend_setting_picks_the_class(fixture_model_dir: Path) -> None:
    env = {"SKIN_MODEL_DIR": str(fixture_model_dir)}
    assert isinstance(build_backend(Settings.from_env(env)), EmbeddedBackend)
    tfserving = build_backend(
        Settings.from_env(
            {**env, "SKIN_BACKEND": "tfserving", "SKIN_TFSERVING_ADDRESS": "127.0.0.1:1"}
        )
    )
    assert isinstance(tfserving, TfServingBackend)
    tfserving.close()
    with pytest.raises(SettingsError):
        Settings.from_env({**env, "SKIN_BACKEND": "onnx"})


# --- embedded --------------------------------------------------------------------------


def test_embedded_describes_the_model_from_its_card(embedded_backend: EmbeddedBackend) -> None:
    info = embedded_backend.info()
    assert embedded_backend.ready()
    assert (info.name, info.version, info.backend) == ("skin-fixture", "1", "embedded")
    assert info.labels == LABELS
    assert (info.input_height_px, info.input_width_px, info.input_channels) == (32, 32, 3)
    assert info.demo_model


def test_embedded_returns_one_probability_row_per_image(embedded_backend: EmbeddedBackend) -> None:
    probabilities = embedded_backend.predict(BATCH)
    assert probabilities.shape == (5, 3)
    assert probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(embedded_backend.predict(BATCH[2:3])[0], probabilities[2], atol=1e-6)


def test_embedded_loads_the_latest_version(fixture_model_dir: Path, tmp_path: Path) -> None:
    model_dir = copy_model(fixture_model_dir, tmp_path / "model")
    shutil.copytree(model_dir / "1", model_dir / "12")
    (model_dir / "3").mkdir()  # not a SavedModel: TF Serving skips it too
    backend = EmbeddedBackend(model_dir)
    backend.load()
    assert backend.info().version == "12"


def test_embedded_is_not_ready_before_load(fixture_model_dir: Path) -> None:
    backend = EmbeddedBackend(fixture_model_dir)
    assert not backend.ready()
    with pytest.raises(ModelNotReady):
        backend.info()


CARD_PROBLEMS: dict[str, tuple[type[Exception], str]] = {
    "no card": (ModelNotReady, "SKIN_MODEL_DIR holds no model_card.json"),
    "bad card": (ModelNotReady, "the model card in SKIN_MODEL_DIR is malformed"),
    "no version": (ModelNotReady, "no version folder with a saved_model.pb"),
    "other size": (ModelMismatch, r"is float32 \[None, 32, 32, 3\]; .* float32 \[None, 64"),
    "other input": (ModelMismatch, r"has no input 'pixels' \(it has images\)"),
    "other signature": (ModelNotReady, "has no signature 'predict'"),
}


@pytest.mark.parametrize("change", list(CARD_PROBLEMS))
def test_embedded_refuses_a_model_unlike_its_card(
    fixture_model_dir: Path, tmp_path: Path, change: str
) -> None:
    error, message = CARD_PROBLEMS[change]
    card_changes: dict[str, dict[str, object]] = {
        "other size": {"input_size": 64},
        "other input": {"input_key": "pixels"},
        "other signature": {"signature_name": "predict"},
    }
    model_dir = copy_model(fixture_model_dir, tmp_path / "model", **card_changes.get(change, {}))
    if change == "no card":
        (model_dir / CARD_FILE).unlink()
    elif change == "bad card":
        (model_dir / CARD_FILE).write_text('{"name": "half a card"}')
    elif change == "no version":
        shutil.rmtree(model_dir / "1")
    with pytest.raises(error, match=message):
        EmbeddedBackend(model_dir).load()


# --- tfserving against the fake TF Serving ---------------------------------------------


def test_tfserving_describes_the_model_tf_serving_serves(tfserving: TfServingBackend) -> None:
    info = tfserving.info()
    assert tfserving.ready()
    assert (info.name, info.version, info.backend) == ("skin-fixture", "1", "tfserving")
    assert info.labels == LABELS
    assert info.input_height_px == 32


def test_tfserving_predicts_what_the_saved_model_computes(
    tfserving: TfServingBackend, embedded_backend: EmbeddedBackend
) -> None:
    np.testing.assert_allclose(tfserving.predict(BATCH), embedded_backend.predict(BATCH), atol=1e-6)


def test_tfserving_reads_outputs_sent_as_tensor_content_too(
    fixture_model_dir: Path, embedded_backend: EmbeddedBackend
) -> None:
    with FakeTfServing(fixture_model_dir, tensor_content=True) as content_fake:
        backend = TfServingBackend(fixture_model_dir, tf_settings(content_fake.address))
        backend.load()
        probabilities = backend.predict(BATCH)
        backend.close()
    np.testing.assert_allclose(probabilities, embedded_backend.predict(BATCH), atol=1e-6)


def test_tfserving_asks_for_a_pinned_version(fake: FakeTfServing, fixture_model_dir: Path) -> None:
    backend = TfServingBackend(fixture_model_dir, tf_settings(fake.address, model_version=1))
    backend.load()
    assert backend.predict(BATCH[:1]).shape == (1, 3)
    backend.close()


@pytest.mark.parametrize(
    ("code", "error", "message"),
    [
        (grpc.StatusCode.UNAVAILABLE, BackendUnavailable, "cannot be reached; retry shortly"),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, QueueFull, "overloaded; retry later"),
        (grpc.StatusCode.NOT_FOUND, ModelNotReady, "not serving the skin model right now"),
        (grpc.StatusCode.INVALID_ARGUMENT, BackendRejected, r"refused the request \(INVALID_A"),
        (grpc.StatusCode.FAILED_PRECONDITION, BackendRejected, r"\(FAILED_PRECONDITION\)"),
        (grpc.StatusCode.INTERNAL, BackendRejected, r"\(INTERNAL\)"),
    ],
)
def test_tfserving_maps_each_status_to_a_domain_error_without_details(
    fake: FakeTfServing,
    tfserving: TfServingBackend,
    code: grpc.StatusCode,
    error: type[Exception],
    message: str,
) -> None:
    fake.service.fault = (code, f"secret detail from {fake.address}")
    with pytest.raises(error, match=message) as caught:
        tfserving.predict(BATCH)
    assert "secret" not in str(caught.value)
    assert str(fake.port) not in str(caught.value)


def test_tfserving_times_out_as_a_backend_timeout(
    fake: FakeTfServing, tfserving: TfServingBackend
) -> None:
    fake.service.delay_s = 1.5  # the backend waits 1 s
    with pytest.raises(BackendTimeout, match="did not answer in time"):
        tfserving.predict(BATCH)


def test_tfserving_load_says_which_setting_to_check(
    fake: FakeTfServing, fixture_model_dir: Path, tmp_path: Path
) -> None:
    cases = [
        (tf_settings(fake.address, model_name="lesions"), "SKIN_TFSERVING_MODEL_NAME"),
        (tf_settings(fake.address, model_version=4), "SKIN_TFSERVING_MODEL_VERSION"),
        (tf_settings(fake.address, signature_name="classify"), "no signature 'classify'"),
        (tf_settings(f"127.0.0.1:{free_port()}"), "cannot be reached at SKIN_TFSERVING_ADDRESS"),
    ]
    for settings, message in cases:
        backend = TfServingBackend(fixture_model_dir, settings)
        with pytest.raises(ModelNotReady, match=message):
            backend.load()
        assert not backend.ready()
        backend.close()
    resized = copy_model(fixture_model_dir, tmp_path / "model", input_size=96)
    with pytest.raises(ModelMismatch, match=r"the model card expects float32 \[None, 96"):
        TfServingBackend(resized, tf_settings(fake.address)).load()
