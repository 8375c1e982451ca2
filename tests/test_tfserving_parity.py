"""The tfserving backend, over TF Serving's real gRPC protocol, answers as the embedded one.

The server is tests/tfserving_fake: TF Serving's PredictionService messages and status
codes around the same SavedModel, not a TF Serving binary (none can be installed here).
"""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from medimg.v1 import diagnosis_service_pb2 as pb
from medimg.v1 import diagnosis_service_pb2_grpc as pb_grpc
from PIL import Image
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    model_pb2,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from servicekit.backend import Backend
from servicekit.classifier.servicer import ClassifierServicer, binding
from servicekit.errors import BackendUnavailable
from servicekit.images import ImageLimits, decode_image
from servicekit.server import Server
from servicekit.settings import BatcherSettings, ServerSettings
from skin_service.backends.embedded import EmbeddedBackend
from skin_service.backends.tfserving import TfServingBackend
from skin_service.domain import SKIN, preprocess
from skin_service.model_card import load_model_card
from skin_service.settings import TfServingSettings
from tests.tfserving_fake.fixture_model import (
    SHIPPED_MODEL_DIR,
    export_fixture_model,
    shipped_model_present,
)
from tests.tfserving_fake.server import FakeTfServing


def photos() -> list[bytes]:
    """Returns varied encoded images: flat colours, gradients, noise, a dark blotch."""
    rng = np.random.default_rng(11)
    yy, xx = np.mgrid[0:96, 0:96]
    blotch = ((yy - 40) ** 2 + (xx - 52) ** 2 < 400)[..., None]
    arrays = [
        np.full((64, 64, 3), (200, 150, 130), np.uint8),
        np.full((80, 50, 3), (40, 20, 10), np.uint8),
        np.linspace(0, 255, 120 * 90 * 3).reshape(120, 90, 3).astype(np.uint8),
        rng.integers(0, 256, (100, 100, 3), dtype=np.uint8),
        np.where(blotch, np.array([60, 30, 20]), np.array([220, 170, 150])).astype(np.uint8),
    ]
    encoded = []
    for index, array in enumerate(arrays):
        buffer = io.BytesIO()
        Image.fromarray(array, "RGB").save(buffer, format="JPEG" if index % 2 else "PNG")
        encoded.append(buffer.getvalue())
    return encoded


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped demo model when this checkout has it, else a fixture with its contract."""
    if shipped_model_present():
        return SHIPPED_MODEL_DIR
    return export_fixture_model(tmp_path_factory.mktemp("skin-model"))


@pytest.fixture(scope="module")
def fake(model_dir: Path) -> Iterator[FakeTfServing]:
    with FakeTfServing(model_dir, model_name="skin") as server:
        yield server


def tf_settings(address: str) -> TfServingSettings:
    return TfServingSettings(address, "skin", None, "serving_default", 10.0)


@pytest.fixture(scope="module")
def backends(model_dir: Path, fake: FakeTfServing) -> Iterator[tuple[Backend, Backend]]:
    embedded = EmbeddedBackend(model_dir)
    tfserving = TfServingBackend(model_dir, tf_settings(fake.address))
    embedded.load()
    tfserving.load()
    yield embedded, tfserving
    tfserving.close()


def test_both_backends_return_the_same_probabilities(
    model_dir: Path, backends: tuple[Backend, Backend]
) -> None:
    embedded, tfserving = backends
    size = load_model_card(model_dir).input_size
    batch = np.stack([preprocess(decode_image(photo, ImageLimits()), size) for photo in photos()])
    np.testing.assert_allclose(tfserving.predict(batch), embedded.predict(batch), rtol=0, atol=1e-5)
    for item in batch:  # and one by one, as a quiet service batches them
        np.testing.assert_allclose(
            tfserving.predict(item[None]), embedded.predict(item[None]), rtol=0, atol=1e-5
        )
    same = {k: v for k, v in vars(embedded.info()).items() if k != "backend"}
    assert same == {k: v for k, v in vars(tfserving.info()).items() if k != "backend"}
    assert (embedded.info().backend, tfserving.info().backend) == ("embedded", "tfserving")


@pytest.fixture
async def two_services(
    backends: tuple[Backend, Backend],
) -> AsyncIterator[tuple[pb_grpc.DiagnosisServiceAsyncStub, pb_grpc.DiagnosisServiceAsyncStub]]:
    servers, channels = [], []
    for backend in backends:
        servicer = ClassifierServicer(
            SKIN,
            backend,
            batcher=BatcherSettings.from_env("SKIN_", env={}),
            image_limits=ImageLimits(),
        )
        settings = ServerSettings.from_env("SKIN_", default_port=0, env={})
        server = Server(settings, [binding(servicer)], lifecycle=servicer)
        port = await server.start()
        servers.append(server)
        channels.append(grpc.aio.insecure_channel(f"127.0.0.1:{port}"))
    yield pb_grpc.DiagnosisServiceStub(channels[0]), pb_grpc.DiagnosisServiceStub(channels[1])
    for channel, server in zip(channels, servers, strict=True):
        await channel.close()
        await server.stop(0)


async def test_the_service_diagnoses_alike_through_either_backend(
    two_services: tuple[pb_grpc.DiagnosisServiceAsyncStub, pb_grpc.DiagnosisServiceAsyncStub],
) -> None:
    embedded, tfserving = two_services
    for photo in photos():
        request = pb.DiagnoseRequest(disease="skin", image=photo)
        one = await embedded.Diagnose(request, timeout=10)
        other = await tfserving.Diagnose(request, timeout=10)
        assert other.top_label == one.top_label
        assert [s.label for s in other.scores] == [s.label for s in one.scores]
        assert [s.score for s in other.scores] == pytest.approx(
            [s.score for s in one.scores], abs=1e-5
        )
        assert (other.model_name, other.model_version, other.demo_model) == (
            one.model_name,
            one.model_version,
            one.demo_model,
        )
    info = await tfserving.GetModelInfo(pb.GetModelInfoRequest(disease="skin"), timeout=10)
    assert info.model.backend == "tfserving"


async def test_a_stopped_tf_serving_makes_the_service_unavailable(model_dir: Path) -> None:
    fake = FakeTfServing(model_dir)
    fake.start()
    backend = TfServingBackend(model_dir, tf_settings(fake.address))
    servicer = ClassifierServicer(
        SKIN, backend, batcher=BatcherSettings.from_env("SKIN_", env={}), image_limits=ImageLimits()
    )
    server = Server(
        ServerSettings.from_env("SKIN_", default_port=0, env={}),
        [binding(servicer)],
        lifecycle=servicer,
    )
    port = await server.start()
    photo = photos()[0]
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pb_grpc.DiagnosisServiceStub(channel)
            assert (await stub.Diagnose(pb.DiagnoseRequest(image=photo), timeout=10)).top_label
            fake.stop(0)
            with pytest.raises(BackendUnavailable):
                backend.predict(np.zeros((1, *batch_shape(backend)), np.float32))
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.Diagnose(pb.DiagnoseRequest(image=photo), timeout=10)
            assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
            assert caught.value.details() == "the model server cannot be reached; retry shortly"
    finally:
        await server.stop(0)
        backend.close()
        fake.stop(0)


def batch_shape(backend: Backend) -> tuple[int, int, int]:
    info = backend.info()
    return (info.input_height_px, info.input_width_px, info.input_channels)


# --- the fake speaks TF Serving's protocol, mistakes included --------------------------


@pytest.fixture
def prediction_stub(
    fake: FakeTfServing,
) -> Iterator[prediction_service_pb2_grpc.PredictionServiceStub]:
    with grpc.insecure_channel(fake.address) as channel:
        yield prediction_service_pb2_grpc.PredictionServiceStub(channel)


def test_the_fake_describes_the_signature_as_tf_serving_does(
    model_dir: Path, prediction_stub: prediction_service_pb2_grpc.PredictionServiceStub
) -> None:
    response = prediction_stub.GetModelMetadata(
        get_model_metadata_pb2.GetModelMetadataRequest(
            model_spec=model_pb2.ModelSpec(name="skin"), metadata_field=["signature_def"]
        ),
        timeout=5,
    )
    signatures = get_model_metadata_pb2.SignatureDefMap()
    assert response.metadata["signature_def"].Unpack(signatures)
    signature = signatures.signature_def["serving_default"]
    size = load_model_card(model_dir).input_size
    images = signature.inputs["images"]
    assert images.dtype == types_pb2.DT_FLOAT
    assert [d.size for d in images.tensor_shape.dim] == [-1, size, size, 3]
    assert signature.outputs["probabilities"].dtype == types_pb2.DT_FLOAT
    assert signature.method_name == "tensorflow/serving/predict"
    assert response.model_spec.name == "skin"
    assert response.model_spec.version.value >= 1


@pytest.mark.parametrize(
    ("spec", "inputs", "code"),
    [
        (model_pb2.ModelSpec(name="retina"), "images", grpc.StatusCode.NOT_FOUND),
        (
            model_pb2.ModelSpec(name="skin", signature_name="nope"),
            "images",
            grpc.StatusCode.FAILED_PRECONDITION,
        ),
        (model_pb2.ModelSpec(name="skin"), "pixels", grpc.StatusCode.INVALID_ARGUMENT),
    ],
    ids=["unknown model", "unknown signature", "unknown input"],
)
def test_the_fake_refuses_what_tf_serving_refuses(
    prediction_stub: prediction_service_pb2_grpc.PredictionServiceStub,
    spec: model_pb2.ModelSpec,
    inputs: str,
    code: grpc.StatusCode,
) -> None:
    request = predict_pb2.PredictRequest(model_spec=spec)
    request.inputs[inputs].dtype = types_pb2.DT_FLOAT
    with pytest.raises(grpc.RpcError) as caught:
        prediction_stub.Predict(request, timeout=5)
    assert caught.value.code() == code
