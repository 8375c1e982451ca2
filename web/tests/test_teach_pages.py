"""The teach pages without the trainer: log-in, ownership, forms, and checks before any call."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from web.accounts.models import User
from web.teach.forms import ProjectCreateForm, PublishForm, TrainSettingsForm
from web.teach.models import TeachProject
from web.tests.postgres import free_port
from web.tests.test_diagnoses_services import jpeg

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def gateway_down(settings: Any) -> None:
    """Points the web tier at a port where nothing listens: any gateway call fails at once."""
    settings.GATEWAY_ADDR = f"127.0.0.1:{free_port()}"


def alices_project(alice: User) -> TeachProject:
    return TeachProject.objects.create(
        owner=alice,
        trainer_name="projects/0123456789ab",
        display_name="Gestures",
        labels=["thumbs up", "thumbs down"],
    )


def test_the_pages_need_a_log_in(alice: User) -> None:
    project = alices_project(alice)
    for url in ("/teach/", f"/teach/{project.pk}/", f"/teach/{project.pk}/test/"):
        response = Client().get(url)
        assert response.status_code == 302
        assert response["Location"].startswith("/accounts/login/")


def test_bob_gets_404_for_alices_project_on_every_url(client_bob: Client, alice: User) -> None:
    project = alices_project(alice)
    base = f"/teach/{project.pk}"
    for url in (f"{base}/", f"{base}/test/"):
        assert client_bob.get(url).status_code == 404
    for url in (f"{base}/examples/", f"{base}/publish/", f"{base}/delete/"):
        assert client_bob.post(url, {"label": "thumbs up", "disease": "x"}).status_code == 404
    assert TeachProject.objects.filter(pk=project.pk).exists()


def test_the_home_page_lists_only_the_users_own_projects(
    client_bob: Client, client_alice: Client, alice: User
) -> None:
    alices_project(alice)
    assert "Gestures" in client_alice.get("/teach/").content.decode()
    assert "Gestures" not in client_bob.get("/teach/").content.decode()


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        ("only one", "Give 2 to 10 labels"),
        ("\n".join(f"label {i}" for i in range(11)), "Give 2 to 10 labels"),
        ("same\nsame", "only once"),
        ("fine\nnot/fine", "is not a label"),
        ("fine\n" + "x" * 41, "is not a label"),
    ],
)
def test_the_create_form_refuses_bad_labels(labels: str, message: str) -> None:
    form = ProjectCreateForm({"display_name": "p", "labels": labels})
    assert not form.is_valid()
    assert message in form.errors["labels"][0]


def test_the_create_form_trims_labels_and_skips_blank_lines() -> None:
    form = ProjectCreateForm({"display_name": "p", "labels": "  cat \n\n dog-2_x \n"})
    assert form.is_valid(), form.errors
    assert form.cleaned_data["labels"] == ["cat", "dog-2_x"]


def test_creating_with_the_trainer_down_says_so_and_stores_nothing(client_alice: Client) -> None:
    response = client_alice.post("/teach/", {"display_name": "p", "labels": "a\nb"})
    assert response.status_code == 400
    assert "trainer is unavailable" in response.content.decode()
    assert not TeachProject.objects.exists()


def test_the_training_settings_have_defaults_and_limits() -> None:
    form = TrainSettingsForm.from_message({})
    assert form.is_valid(), form.errors
    settings = form.train_settings()
    assert (settings.epochs, settings.batch_size, settings.seed) == (15, 16, 42)
    bad = TrainSettingsForm.from_message(
        {"epochs": 0, "batch_size": 999, "learning_rate": 0, "validation_split": 0.9}
    )
    assert not bad.is_valid()
    assert set(bad.errors) == {"epochs", "batch_size", "learning_rate", "validation_split"}
    assert not TrainSettingsForm.from_message({"epochs": "many"}).is_valid()


@pytest.mark.parametrize("disease", ["Skin", "9lives", "with space", "a" * 64, ""])
def test_the_publish_form_follows_the_gateways_disease_rule(disease: str) -> None:
    assert not PublishForm({"disease": disease}).is_valid()
    assert PublishForm({"disease": "my-rash-2"}).is_valid()


def test_examples_of_an_unknown_label_are_refused(client_alice: Client, alice: User) -> None:
    project = alices_project(alice)
    image = SimpleUploadedFile("a.jpg", jpeg(), content_type="image/jpeg")
    response = client_alice.post(
        f"/teach/{project.pk}/examples/", {"label": "sideways", "images": [image]}
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "UNKNOWN_LABEL"


def test_one_bad_image_refuses_the_batch_naming_it_before_any_call(
    client_alice: Client, alice: User
) -> None:
    project = alices_project(alice)
    files = [
        SimpleUploadedFile("a.jpg", jpeg(), content_type="image/jpeg"),
        SimpleUploadedFile("b.jpg", b"not an image at all", content_type="image/jpeg"),
    ]
    response = client_alice.post(
        f"/teach/{project.pk}/examples/", {"label": "thumbs up", "images": files}
    )
    assert response.status_code == 400
    assert response.json()["error"]["message"].startswith("Image 2:")


def test_too_many_images_in_one_request_are_refused(
    client_alice: Client, alice: User, settings: Any
) -> None:
    settings.WEB_TEACH_MAX_UPLOAD_FILES = 2
    project = alices_project(alice)
    files = [SimpleUploadedFile(f"{i}.jpg", jpeg(), content_type="image/jpeg") for i in range(3)]
    response = client_alice.post(
        f"/teach/{project.pk}/examples/", {"label": "thumbs up", "images": files}
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "TOO_MANY_IMAGES"


def test_valid_examples_with_the_trainer_down_are_a_503(client_alice: Client, alice: User) -> None:
    project = alices_project(alice)
    image = SimpleUploadedFile("a.jpg", jpeg(), content_type="image/jpeg")
    response = client_alice.post(
        f"/teach/{project.pk}/examples/", {"label": "thumbs up", "images": [image]}
    )
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "UNAVAILABLE"


def test_the_capture_page_shows_labels_and_says_the_trainer_is_down(
    client_alice: Client, alice: User
) -> None:
    project = alices_project(alice)
    page = client_alice.get(f"/teach/{project.pk}/").content.decode()
    assert 'data-label="thumbs up"' in page and 'data-label="thumbs down"' in page
    assert "trainer is unavailable" in page
    assert "Not for clinical use" in page
    assert f"/ws/teach/{project.pk}/training/" in page


def test_the_test_page_shows_bars_and_how_to_call_a_published_model(
    client_alice: Client, alice: User
) -> None:
    project = alices_project(alice)
    project.published_disease = "gestures"
    project.save()
    page = client_alice.get(f"/teach/{project.pk}/test/").content.decode()
    assert 'data-bar="thumbs up"' in page
    assert "/api/v1/diagnoses/" in page and "disease=gestures" in page
    assert "Not for clinical use" in page


def test_the_client_maps_trainer_statuses_to_what_a_person_can_fix() -> None:
    import grpc

    from web.gateway_client import TRAINER_OUTCOMES, GatewayError

    error = GatewayError(
        grpc.StatusCode.FAILED_PRECONDITION,
        "label 'cat' needs at least 2 examples",
        reason="TOO_FEW_EXAMPLES",
        request_id="r",
        outcomes=TRAINER_OUTCOMES,
    )
    assert error.http_status == 409
    assert error.message == "Label 'cat' needs at least 2 examples."
