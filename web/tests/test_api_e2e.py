"""The API end to end: a token client uploads to the real gateway and skin service (demo model)."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from rest_framework.authtoken.models import Token

from tests.support.processes import Process
from tests.tfserving_fake.fixture_model import shipped_model_present
from web.accounts.models import User
from web.core.context_processors import DEMO_MODEL_WARNING
from web.diagnoses.models import Diagnosis
from web.tests import test_diagnoses_e2e as e2e
from web.tests.api_support import API
from web.tests.test_diagnoses_e2e import LABELS, lesion_jpeg

# The real skin service and gateway, started as test_diagnoses_e2e starts them.
skin, state_dir, gateway = e2e.skin, e2e.state_dir, e2e.gateway

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not shipped_model_present(), reason="the shipped skin demo model is absent"),
]


def test_a_program_uploads_a_lesion_by_api_and_gets_the_demo_models_diagnosis(
    alice: User, gateway: Process, skin: Process
) -> None:
    client = Client(headers={"Authorization": f"Token {Token.objects.create(user=alice).key}"})
    photo = lesion_jpeg("melanoma", seed=11)
    response = client.post(
        f"{API}/diagnoses/",
        {"image": SimpleUploadedFile("lesion.jpg", photo), "disease": "skin"},
        headers={"X-Request-ID": "api-e2e-0001"},
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["status"] == "done"
    assert body["top_label"].replace("_", " ").capitalize() in LABELS
    assert {s["label"] for s in body["scores"]} == {"melanoma", "common_nevus", "atypical_nevus"}
    assert sum(s["score"] for s in body["scores"]) == pytest.approx(1.0, abs=1e-3)
    assert body["top_score"] == max(s["score"] for s in body["scores"])
    assert body["model_name"] and body["model_version"]
    assert body["demo_model"] is True and body["notice"] == DEMO_MODEL_WARNING
    # The API request's id went through the gateway to the service, and the record keeps it.
    assert body["request_id"] == "api-e2e-0001"
    assert "[api-e2e-0001]" in gateway.log() and "[api-e2e-0001]" in skin.log()

    listed = client.get(f"{API}/diagnoses/").json()
    assert [r["id"] for r in listed["results"]] == [body["id"]]
    image = client.get(body["links"]["image"])
    assert image.status_code == 200 and image["Cache-Control"] == "no-store, private"
    models = {m["disease"]: m for m in client.get(f"{API}/models/").json()["results"]}
    assert models["skin"]["available"] is True
    assert models["skin"]["model"]["model_name"] == body["model_name"]
    assert Diagnosis.objects.get().status == Diagnosis.Status.DONE
