"""The skin service with its shipped demo model, behind the gateway, as real processes."""

from __future__ import annotations

import io
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from medimg.v1 import diagnosis_service_pb2 as pb
from medimg.v1 import diagnosis_service_pb2_grpc as pb_grpc
from PIL import Image, ImageDraw

from tests.support.processes import ROOT, Process, start, wait_until_serving
from tests.tfserving_fake.fixture_model import SHIPPED_MODEL_DIR, shipped_model_present

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not shipped_model_present(),
        reason="skin_service/models/skin-demo/model_card.json is absent: the end-to-end "
        "tests run the shipped demo model only",
    ),
]

MODEL_DIR = SHIPPED_MODEL_DIR
LABELS = ("melanoma", "common_nevus", "atypical_nevus")
START_TIMEOUT_S = 60.0  # TensorFlow's import and the model's load and warm-up


def photo() -> bytes:
    """Returns a PNG that looks vaguely like a mole on skin."""
    image = Image.new("RGB", (160, 120), (222, 176, 152))
    ImageDraw.Draw(image).ellipse((55, 35, 110, 85), fill=(92, 58, 40), outline=(60, 35, 25))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def start_skin(**env: str) -> Process:
    skin = start("skin", "skin_service", "SKIN_", env={"SKIN_MODEL_DIR": str(MODEL_DIR), **env})
    wait_until_serving(skin, timeout=START_TIMEOUT_S)
    return skin


def diagnose(address: str, image: bytes, disease: str = "skin") -> pb.DiagnoseResponse:
    with grpc.insecure_channel(address) as channel:
        return pb_grpc.DiagnosisServiceStub(channel).Diagnose(
            pb.DiagnoseRequest(disease=disease, image=image), timeout=30
        )


@pytest.fixture(scope="module")
def skin() -> Iterator[Process]:
    process = start_skin()
    yield process
    assert process.terminate() == 0, process.log()


@pytest.fixture(scope="module")
def gateway(skin: Process, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Process]:
    process = start(
        "gateway",
        "gateway",
        "GATEWAY_",
        env={
            "GATEWAY_ROUTES": f"skin=image@{skin.address}",
            "GATEWAY_STATE_DIR": str(tmp_path_factory.mktemp("gateway")),
        },
    )
    wait_until_serving(process)
    yield process
    process.terminate()


def test_diagnose_skin_through_the_gateway_answers_from_the_demo_model(
    skin: Process, gateway: Process
) -> None:
    via_gateway = diagnose(gateway.address, photo())
    assert {score.label for score in via_gateway.scores} == set(LABELS)
    assert sum(score.score for score in via_gateway.scores) == pytest.approx(1.0, abs=1e-4)
    assert via_gateway.top_label == via_gateway.scores[0].label
    assert via_gateway.disease == "skin"
    assert via_gateway.demo_model
    assert via_gateway == diagnose(skin.address, photo())


def test_model_info_through_the_gateway_names_the_embedded_backend(gateway: Process) -> None:
    with grpc.insecure_channel(gateway.address) as channel:
        response = pb_grpc.DiagnosisServiceStub(channel).GetModelInfo(
            pb.GetModelInfoRequest(disease="skin"), timeout=10
        )
    assert tuple(response.model.labels) == LABELS
    assert response.model.backend == "embedded"
    assert response.model.demo_model


def test_a_bad_image_through_the_gateway_is_invalid_argument(gateway: Process) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        diagnose(gateway.address, b"GIF89a not really")
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "send JPEG or PNG" in (caught.value.details() or "")
    assert diagnose(gateway.address, photo()).top_label in LABELS


def test_medimg_diagnose_prints_the_labels_and_the_clinical_warning(
    gateway: Process, tmp_path: Path
) -> None:
    image = tmp_path / "photo.png"
    image.write_bytes(photo())
    command = ["--gateway", gateway.address, "diagnose", "--disease", "skin", str(image)]
    result = subprocess.run(
        [sys.executable, "-m", "medimg_cli", *command],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    header = result.stdout.splitlines()[0]
    assert all(label in header for label in LABELS)
    assert "photo.png" in result.stdout
    assert "not for clinical use" in result.stdout


def test_the_service_on_the_tfserving_backend_answers_as_on_the_embedded_one(
    skin: Process,
) -> None:
    from tests.tfserving_fake.server import FakeTfServing

    with FakeTfServing(MODEL_DIR, model_name="skin") as fake:
        remote = start_skin(SKIN_BACKEND="tfserving", SKIN_TFSERVING_ADDRESS=fake.address)
        try:
            embedded, tfserving = diagnose(skin.address, photo()), diagnose(remote.address, photo())
            with grpc.insecure_channel(remote.address) as channel:
                info = pb_grpc.DiagnosisServiceStub(channel).GetModelInfo(
                    pb.GetModelInfoRequest(), timeout=10
                )
        finally:
            assert remote.terminate() == 0, remote.log()
    assert info.model.backend == "tfserving"
    assert [s.label for s in tfserving.scores] == [s.label for s in embedded.scores]
    assert [s.score for s in tfserving.scores] == pytest.approx(
        [s.score for s in embedded.scores], abs=1e-5
    )
