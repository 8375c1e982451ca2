"""The whole path: pages, the real gateway and the skin service with its shipped demo model."""

from __future__ import annotations

import io
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from django.test import Client

from skin_service.data import generate_image
from tests.support.processes import Process, start, wait_until_serving
from tests.tfserving_fake.fixture_model import SHIPPED_MODEL_DIR, shipped_model_present
from web import gateway_client
from web.accounts.models import User
from web.diagnoses.models import Diagnosis
from web.tests.conftest import SmtpServer

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not shipped_model_present(), reason="the shipped skin demo model is absent"),
]

LABELS = {"Melanoma", "Common nevus", "Atypical nevus"}


def lesion_jpeg(label: str, seed: int) -> bytes:
    """Returns a generated dermoscopy-like lesion image as a JPEG photo."""
    buffer = io.BytesIO()
    generate_image(label, np.random.default_rng(seed)).save(buffer, format="JPEG", quality=92)
    return buffer.getvalue()


def start_gateway(skin: Process, state_dir: str, port: int | None = None) -> Process:
    env = {"GATEWAY_ROUTES": f"skin=image@{skin.address}", "GATEWAY_STATE_DIR": state_dir}
    gateway = start("gateway", "gateway", "GATEWAY_", env=env, port=port)
    wait_until_serving(gateway)
    return gateway


@pytest.fixture(scope="module")
def skin() -> Iterator[Process]:
    process = start("skin", "skin_service", "SKIN_", env={"SKIN_MODEL_DIR": str(SHIPPED_MODEL_DIR)})
    try:
        wait_until_serving(process, timeout=60)
        yield process
    finally:
        process.terminate()


@pytest.fixture(scope="module")
def state_dir() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="medimg-web-e2e-") as folder:
        yield folder


@pytest.fixture
def gateway(skin: Process, state_dir: str, settings: Any, tmp_path: Path) -> Iterator[Process]:
    """Runs the gateway in front of the skin service; the web tier's settings point at it."""
    process = start_gateway(skin, state_dir)
    settings.GATEWAY_ADDR = process.address
    settings.MEDIA_ROOT = str(tmp_path / "media")
    try:
        yield process
    finally:
        process.terminate()


def upload(client: Client, data: bytes, request_id: str = "") -> Any:
    photo = io.BytesIO(data)
    photo.name = "lesion.jpg"
    headers = {"X-Request-ID": request_id} if request_id else {}
    return client.post("/diagnose/", {"image": photo}, headers=headers)


def test_an_uploaded_lesion_is_diagnosed_shown_with_its_bars_and_emailed(
    client_alice: Client,
    alice: User,
    gateway: Process,
    skin: Process,
    smtp_server: SmtpServer,
    django_capture_on_commit_callbacks: Any,
) -> None:
    alice.email_results = True
    alice.save()
    with django_capture_on_commit_callbacks(execute=True):
        response = upload(client_alice, lesion_jpeg("melanoma", seed=3), "e2e-skin-0001")
    assert response.status_code == 303
    diagnosis = Diagnosis.objects.get()
    assert diagnosis.status == Diagnosis.Status.DONE, diagnosis.error_message
    assert diagnosis.model_name and diagnosis.model_version and diagnosis.demo_model
    assert len(diagnosis.scores) == 3
    assert sum(score["score"] for score in diagnosis.scores) == pytest.approx(1.0, abs=1e-3)
    assert diagnosis.request_id == "e2e-skin-0001" and diagnosis.gateway_ms
    # The page request's id travelled as gRPC metadata through the gateway to the service.
    assert "[e2e-skin-0001]" in gateway.log() and "[e2e-skin-0001]" in skin.log()

    page = client_alice.get(response["Location"]).content.decode()
    top = re.search(r"<strong data-top-label>([^<]+)</strong>", page)
    assert top is not None and top.group(1) in LABELS
    bars = re.findall(r'<span class="prob-label">([^<]+)</span>', page)
    assert set(bars) == LABELS
    assert diagnosis.model_name in page and "Demo model: not for clinical use." in page

    image = client_alice.get(f"/diagnose/{diagnosis.pk}/image")
    assert image.status_code == 200 and image["Cache-Control"] == "no-store, private"
    [message] = smtp_server.messages
    assert message["To"] == "alice@example.com"
    assert top.group(1) in str(message.get_body(preferencelist=("plain",)))


def test_with_the_gateway_stopped_the_upload_fails_and_the_retry_works_once_it_is_back(
    client_alice: Client, gateway: Process, skin: Process, state_dir: str
) -> None:
    gateway.terminate()
    response = upload(client_alice, lesion_jpeg("common_nevus", seed=5))
    diagnosis = Diagnosis.objects.get()
    assert response.status_code == 303
    assert (diagnosis.status, diagnosis.error_code) == (Diagnosis.Status.FAILED, "UNAVAILABLE")
    page = client_alice.get(response["Location"]).content.decode()
    assert "Try again" in page

    restarted = start_gateway(skin, state_dir, port=gateway.port)
    try:
        # The web tier's channel reconnects within its one-second backoff.
        assert gateway_client.get_gateway().wait_until_ready(timeout_s=5)
        retried = client_alice.post(f"/diagnose/{diagnosis.pk}/retry/")
        diagnosis.refresh_from_db()
        assert retried.status_code == 303
        assert diagnosis.status == Diagnosis.Status.DONE, diagnosis.error_message
        assert diagnosis.attempts == 2
        page = client_alice.get(f"/diagnose/{diagnosis.pk}/").content.decode()
        assert "The image was diagnosed." in page and "Try again" not in page
    finally:
        restarted.terminate()
