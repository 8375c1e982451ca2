"""The skin servicer on a real in-process server: ranking, disease, errors, bad images, warm-up."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import grpc
import numpy as np
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status
from medimg.v1 import diagnosis_service_pb2 as pb
from medimg.v1 import diagnosis_service_pb2_grpc as pb_grpc
from medimg.v1 import model_info_pb2
from PIL import Image

from servicekit import errors
from servicekit.backend import Backend, ModelInfo
from servicekit.classifier import domain as classifier_domain
from servicekit.classifier.errors import BackendRejected, ModelMismatch
from servicekit.classifier.servicer import ClassifierServicer, binding
from servicekit.images import ImageLimits, decode_image
from servicekit.server import Server
from servicekit.settings import BatcherSettings, ServerSettings
from skin_service import domain
from skin_service.domain import SKIN
from skin_service.tests.conftest import encoded, lesion

INPUT_SIZE = 24
PHOTO = encoded(lesion())


class ScriptedBackend:
    """A backend double: fixed probabilities, an optional error, a load that can be held."""

    def __init__(
        self,
        probabilities: tuple[float, ...] = (0.2, 0.1, 0.7),
        labels: tuple[str, ...] = domain.LABELS,
    ) -> None:
        self.probabilities = np.array(probabilities, dtype=np.float32)
        self.labels = labels
        self.batches: list[np.ndarray] = []
        self.error: Exception | None = None
        self.load_gate = threading.Event()
        self.load_gate.set()
        self.loaded = False

    def load(self) -> None:
        self.load_gate.wait(10)
        self.loaded = True

    def ready(self) -> bool:
        return self.loaded

    def info(self) -> ModelInfo:
        return ModelInfo(
            name="skin-double",
            version="7",
            labels=self.labels,
            input_height_px=INPUT_SIZE,
            input_width_px=INPUT_SIZE,
            input_channels=3,
            backend="double",
            demo_model=True,
            description="a test double",
        )

    def predict(self, batch: np.ndarray) -> np.ndarray:
        self.batches.append(batch.copy())
        if self.error is not None:
            raise self.error
        return np.tile(self.probabilities, (len(batch), 1))


def server_settings() -> ServerSettings:
    return ServerSettings.from_env("SKIN_", default_port=0, env={})


@asynccontextmanager
async def serving(
    backend: Backend, limits: ImageLimits | None = None
) -> AsyncIterator[pb_grpc.DiagnosisServiceAsyncStub]:
    skin = ClassifierServicer(
        SKIN,
        backend,
        batcher=BatcherSettings.from_env("SKIN_", env={}),
        image_limits=limits or ImageLimits(),
    )
    server = Server(server_settings(), [binding(skin)], lifecycle=skin)
    port = await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield pb_grpc.DiagnosisServiceStub(channel)
    finally:
        await server.stop(0)


def reason_of(error: grpc.aio.AioRpcError) -> str:
    status = rpc_status.from_call(error)
    assert status is not None
    info = error_details_pb2.ErrorInfo()
    status.details[0].Unpack(info)
    return str(info.reason)


@pytest.fixture
def double() -> ScriptedBackend:
    return ScriptedBackend()


@pytest.fixture
async def stub(double: ScriptedBackend) -> AsyncIterator[pb_grpc.DiagnosisServiceAsyncStub]:
    async with serving(double) as stub:
        yield stub


# --- with a backend double -------------------------------------------------------------


async def test_it_ranks_the_labels_highest_first(stub: pb_grpc.DiagnosisServiceAsyncStub) -> None:
    response = await stub.Diagnose(pb.DiagnoseRequest(disease="skin", image=PHOTO), timeout=10)
    assert [s.label for s in response.scores] == ["atypical_nevus", "melanoma", "common_nevus"]
    assert response.top_label == "atypical_nevus"
    assert response.top_score == pytest.approx(0.7)
    assert [s.score for s in response.scores] == pytest.approx([0.7, 0.2, 0.1])
    assert response.disease == "skin"
    assert (response.model_name, response.model_version, response.demo_model) == (
        "skin-double",
        "7",
        True,
    )


async def test_a_request_without_disease_is_diagnosed_as_skin(
    stub: pb_grpc.DiagnosisServiceAsyncStub,
) -> None:
    response = await stub.Diagnose(pb.DiagnoseRequest(image=PHOTO), timeout=10)
    assert response.disease == "skin"


async def test_another_disease_is_not_found(stub: pb_grpc.DiagnosisServiceAsyncStub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Diagnose(pb.DiagnoseRequest(disease="mri", image=PHOTO), timeout=10)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert caught.value.details() == "this service diagnoses 'skin', not 'mri'"
    with pytest.raises(grpc.aio.AioRpcError) as info_call:
        await stub.GetModelInfo(pb.GetModelInfoRequest(disease="retina"), timeout=10)
    assert info_call.value.code() == grpc.StatusCode.NOT_FOUND


async def test_the_model_sees_the_image_preprocessed_to_its_input_size(
    double: ScriptedBackend, stub: pb_grpc.DiagnosisServiceAsyncStub
) -> None:
    await stub.Diagnose(pb.DiagnoseRequest(image=PHOTO), timeout=10)
    warm_up, batch = double.batches
    assert not warm_up.any()
    expected = domain.preprocess(decode_image(PHOTO, ImageLimits()), INPUT_SIZE)
    assert batch.shape == (1, INPUT_SIZE, INPUT_SIZE, 3)
    assert batch.dtype == np.float32
    np.testing.assert_array_equal(batch[0], expected)


async def test_model_info_describes_the_backends_model(
    stub: pb_grpc.DiagnosisServiceAsyncStub,
) -> None:
    response = await stub.GetModelInfo(pb.GetModelInfoRequest(disease="skin"), timeout=10)
    model = response.model
    assert model.disease == "skin"
    assert model.kind == model_info_pb2.MODEL_KIND_IMAGE_CLASSIFIER
    assert list(model.labels) == list(domain.LABELS)
    assert (model.input_height_px, model.input_width_px, model.input_channels) == (24, 24, 3)
    assert (model.model_name, model.model_version, model.backend) == ("skin-double", "7", "double")
    assert model.demo_model


@pytest.mark.parametrize(
    ("error", "code", "reason"),
    [
        (errors.BackendUnavailable("down"), grpc.StatusCode.UNAVAILABLE, "BACKEND_UNAVAILABLE"),
        (errors.BackendTimeout("slow"), grpc.StatusCode.DEADLINE_EXCEEDED, "BACKEND_TIMEOUT"),
        (errors.QueueFull("busy"), grpc.StatusCode.RESOURCE_EXHAUSTED, "QUEUE_FULL"),
        (errors.ModelNotReady("reloading"), grpc.StatusCode.UNAVAILABLE, "MODEL_NOT_READY"),
        (BackendRejected("refused"), grpc.StatusCode.INTERNAL, "BACKEND_REJECTED"),
    ],
)
async def test_backend_errors_reach_the_caller_with_their_status_and_the_service_recovers(
    double: ScriptedBackend,
    stub: pb_grpc.DiagnosisServiceAsyncStub,
    error: errors.MedimgError,
    code: grpc.StatusCode,
    reason: str,
) -> None:
    double.error = error
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Diagnose(pb.DiagnoseRequest(image=PHOTO), timeout=10)
    assert caught.value.code() == code
    assert caught.value.details() == error.message
    assert reason_of(caught.value) == reason
    double.error = None
    assert (await stub.Diagnose(pb.DiagnoseRequest(image=PHOTO), timeout=10)).top_label


async def test_concurrent_calls_share_model_calls(
    double: ScriptedBackend, stub: pb_grpc.DiagnosisServiceAsyncStub
) -> None:
    responses = await asyncio.gather(
        *(stub.Diagnose(pb.DiagnoseRequest(image=PHOTO), timeout=10) for _ in range(12))
    )
    assert {r.top_label for r in responses} == {"atypical_nevus"}
    assert sum(len(batch) for batch in double.batches[1:]) == 12


async def test_decoding_an_upload_does_not_hold_up_other_calls(
    stub: pb_grpc.DiagnosisServiceAsyncStub, monkeypatch: pytest.MonkeyPatch
) -> None:
    decode_started: list[float] = []

    def slow_decode(
        data: bytes, limits: ImageLimits, *, min_side: int | None = None
    ) -> Image.Image:
        decode_started.append(time.monotonic())
        time.sleep(0.8)  # a huge upload: the thread that decodes it is busy for a while
        return decode_image(data, limits, min_side=min_side)

    monkeypatch.setattr(classifier_domain, "decode_image", slow_decode)
    diagnosis = asyncio.ensure_future(stub.Diagnose(pb.DiagnoseRequest(image=PHOTO), timeout=10))
    for _ in range(500):
        if decode_started or diagnosis.done():
            break
        await asyncio.sleep(0.01)
    assert decode_started, "the upload was never decoded"
    await stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=10)
    assert time.monotonic() - decode_started[0] < 0.5, "GetModelInfo waited for the decoding"
    assert (await diagnosis).top_label == "atypical_nevus"


async def test_it_is_not_serving_and_refuses_calls_until_warmed_up() -> None:
    backend = ScriptedBackend()
    backend.load_gate.clear()
    skin = ClassifierServicer(
        SKIN, backend, batcher=BatcherSettings.from_env("SKIN_", env={}), image_limits=ImageLimits()
    )
    server = Server(server_settings(), [binding(skin)], lifecycle=skin)
    starting = asyncio.ensure_future(server.start())
    while not server.port:
        await asyncio.sleep(0.01)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        stub = pb_grpc.DiagnosisServiceStub(channel)
        status = await health.Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert status.status == health_pb2.HealthCheckResponse.NOT_SERVING
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Diagnose(pb.DiagnoseRequest(image=PHOTO), timeout=5)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        assert reason_of(caught.value) == "MODEL_NOT_READY"
        backend.load_gate.set()
        await starting
        status = await health.Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert status.status == health_pb2.HealthCheckResponse.SERVING
        assert len(backend.batches) == 1  # the warm-up ran before SERVING
        assert (await stub.Diagnose(pb.DiagnoseRequest(image=PHOTO), timeout=5)).top_label
    await server.stop(0)


async def test_it_refuses_to_start_a_model_whose_labels_are_not_the_domains() -> None:
    backend = ScriptedBackend(labels=("benign", "malignant", "unknown"))
    with pytest.raises(ModelMismatch, match="labels"):
        async with serving(backend):
            pass


# --- with the embedded backend on the fixture SavedModel -------------------------------

LIMITS = ImageLimits(max_bytes=300_000, max_pixels=2_000_000)


def noise(size: int, seed: int = 1) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    return Image.fromarray(pixels, "RGB")


def truncated(data: bytes) -> bytes:
    return data[: len(data) // 2]


BAD_IMAGES = {
    "empty": (b"", "IMAGE_EMPTY", "the image is empty"),
    "not an image": (
        b"%PDF-1.4 a document, not a photo",
        "IMAGE_UNREADABLE",
        "the file is not a readable image; send JPEG or PNG",
    ),
    "gif": (
        encoded(lesion(), "GIF"),
        "IMAGE_TYPE_NOT_ALLOWED",
        "GIF images are not accepted; send JPEG or PNG",
    ),
    "bmp": (
        encoded(lesion(), "BMP"),
        "IMAGE_TYPE_NOT_ALLOWED",
        "BMP images are not accepted; send JPEG or PNG",
    ),
    "truncated png": (
        truncated(encoded(noise(200))),
        "IMAGE_TRUNCATED",
        "the image is truncated or corrupt; upload it again",
    ),
    "truncated jpeg": (
        truncated(encoded(lesion(200), "JPEG", quality=95)),
        "IMAGE_TRUNCATED",
        "the image is truncated or corrupt; upload it again",
    ),
    "too many bytes": (
        encoded(noise(400)),
        "IMAGE_TOO_LARGE",
        "the image is 0.5 MB; the limit is 0.3 MB",
    ),
    "too many pixels": (
        encoded(Image.new("RGB", (2000, 1500), (200, 150, 140))),
        "IMAGE_TOO_MANY_PIXELS",
        "the image is 2000x1500 pixels; the limit is 2 megapixels",
    ),
}


@pytest.fixture
async def embedded_stub(
    embedded_backend: Backend,
) -> AsyncIterator[pb_grpc.DiagnosisServiceAsyncStub]:
    async with serving(embedded_backend, LIMITS) as stub:
        yield stub


async def test_it_answers_what_the_saved_model_computes(
    embedded_backend: Backend, embedded_stub: pb_grpc.DiagnosisServiceAsyncStub
) -> None:
    for image in (PHOTO, encoded(lesion(seed=3), "JPEG", quality=90)):
        response = await embedded_stub.Diagnose(pb.DiagnoseRequest(image=image), timeout=10)
        decoded = decode_image(image, LIMITS, min_side=domain.decoded_side(32))
        item = domain.preprocess(decoded, 32)
        expected = domain.rank(embedded_backend.predict(item[None])[0], domain.LABELS)
        assert [s.label for s in response.scores] == [label for label, _ in expected.scores]
        assert [s.score for s in response.scores] == pytest.approx(
            [score for _, score in expected.scores], abs=1e-6
        )
        assert sum(s.score for s in response.scores) == pytest.approx(1.0, abs=1e-5)
        assert (response.model_name, response.model_version) == ("skin-fixture", "1")
        assert response.demo_model


async def test_model_info_names_the_embedded_backend(
    embedded_stub: pb_grpc.DiagnosisServiceAsyncStub, fixture_model_dir: Path
) -> None:
    model = (await embedded_stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=10)).model
    assert (model.backend, model.model_version, model.input_height_px) == ("embedded", "1", 32)
    assert "not for clinical use" in model.description


@pytest.mark.parametrize("kind", list(BAD_IMAGES))
async def test_it_rejects_a_bad_image_and_keeps_serving(
    embedded_stub: pb_grpc.DiagnosisServiceAsyncStub, kind: str
) -> None:
    image, reason, message = BAD_IMAGES[kind]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await embedded_stub.Diagnose(pb.DiagnoseRequest(disease="skin", image=image), timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details() == message
    assert reason_of(caught.value) == reason
    after = await embedded_stub.Diagnose(
        pb.DiagnoseRequest(disease="skin", image=PHOTO), timeout=10
    )
    assert after.top_label in domain.LABELS
