"""Pages of the teach app: projects, capture and training, live test, publish."""

from __future__ import annotations

import uuid
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST

from web.core.users import signed_in_user
from web.gateway_client import GatewayError, TrainerProject
from web.teach import selectors, services
from web.teach.forms import ProjectCreateForm, PublishForm, TrainSettingsForm
from web.teach.models import TeachProject

# Where other programs ask for a diagnosis by disease name (DESIGN.md's REST surface).
API_DIAGNOSES_PATH = "/api/v1/diagnoses/"


def _owned(request: HttpRequest, pk: uuid.UUID) -> TeachProject:
    """Returns the requester's project; anybody else's is indistinguishable from a missing one."""
    project = selectors.teach_project_get(user=signed_in_user(request), project_id=pk)
    if project is None:
        raise Http404("No such project.")
    return project


def _trainer_state(project: TeachProject) -> tuple[TrainerProject | None, str]:
    """Returns the trainer's view of the project, or None and what to tell the person."""
    try:
        return services.teach_project_state(project=project), ""
    except GatewayError as error:
        return None, error.message


def _labels(project: TeachProject, state: TrainerProject | None) -> list[dict[str, Any]]:
    counts = dict(zip(state.labels, state.example_counts, strict=False)) if state else {}
    return [
        {"index": i, "name": label, "count": counts.get(label, 0)}
        for i, label in enumerate(project.labels)
    ]


@require_http_methods(["GET", "HEAD", "POST"])
def home(request: HttpRequest) -> HttpResponse:
    """Lists the user's projects; creates one from the form."""
    user = signed_in_user(request)
    posted = request.method == "POST"
    form = ProjectCreateForm(request.POST) if posted else ProjectCreateForm()
    if posted and form.is_valid():
        try:
            project = services.teach_project_create(
                user=user,
                display_name=form.cleaned_data["display_name"],
                labels=form.cleaned_data["labels"],
            )
        except GatewayError as error:
            form.add_error(None, error.message)
        else:
            return HttpResponseRedirect(reverse("teach:project", args=[project.pk]), status=303)
    context = {"form": form, "projects": selectors.teach_project_list(user=user)}
    return render(request, "teach/home.html", context, status=400 if posted else 200)


def _project_context(teach_project: TeachProject) -> dict[str, Any]:
    """Returns what both project pages show: the labels with their counts, the trainer's state."""
    state, trainer_error = _trainer_state(teach_project)
    return {
        "project": teach_project,
        "labels": _labels(teach_project, state),
        "trainer_error": trainer_error,
        "has_model": bool(state and state.latest_training_job),
    }


def project(request: HttpRequest, pk: uuid.UUID) -> HttpResponse:
    """The capture page: webcam or files per label, the training settings and the live chart."""
    teach_project = _owned(request, pk)
    context = {
        **_project_context(teach_project),
        "train_form": TrainSettingsForm(),
        "max_batch": settings.WEB_TEACH_MAX_UPLOAD_FILES,
        "max_frame_bytes": settings.WEB_TEACH_MAX_FRAME_BYTES,
    }
    return render(request, "teach/project.html", context)


@require_POST
def examples(request: HttpRequest, pk: uuid.UUID) -> JsonResponse:
    """Stores a batch of examples (multipart `label` and `images`); answers the new counts."""
    teach_project = _owned(request, pk)
    try:
        receipt = services.teach_examples_upload(
            project=teach_project,
            label=request.POST.get("label", ""),
            uploads=request.FILES.getlist("images"),
            max_files=settings.WEB_TEACH_MAX_UPLOAD_FILES,
        )
    except services.ExamplesRefused as refused:
        body = {"error": {"code": refused.code, "message": refused.message}}
        return JsonResponse(body, status=refused.http_status)
    counts = dict(zip(teach_project.labels, receipt.example_counts, strict=False))
    return JsonResponse({"accepted": receipt.accepted_count, "counts": counts}, status=201)


def _test_page(
    request: HttpRequest, teach_project: TeachProject, form: PublishForm, status: int = 200
) -> HttpResponse:
    context = {
        **_project_context(teach_project),
        "publish_form": form,
        "api_url": request.build_absolute_uri(API_DIAGNOSES_PATH),
        "max_frame_bytes": settings.WEB_TEACH_MAX_FRAME_BYTES,
        "max_fps": settings.WEB_TEACH_MAX_FRAMES_PER_SECOND,
    }
    return render(request, "teach/test.html", context, status=status)


def test(request: HttpRequest, pk: uuid.UUID) -> HttpResponse:
    """The live test page: webcam frames over a websocket, prediction bars, the publish form."""
    teach_project = _owned(request, pk)
    initial = {"disease": teach_project.published_disease}
    return _test_page(request, teach_project, PublishForm(initial=initial))


@require_POST
def publish(request: HttpRequest, pk: uuid.UUID) -> HttpResponse:
    """Publishes the latest model under the disease name given; shows how to call it."""
    teach_project = _owned(request, pk)
    form = PublishForm(request.POST)
    if not form.is_valid():
        return _test_page(request, teach_project, form, status=400)
    try:
        model = services.teach_project_publish(
            project=teach_project, disease=form.cleaned_data["disease"]
        )
    except GatewayError as error:
        form.add_error(None, error.message)
        return _test_page(request, teach_project, form, status=error.http_status)
    messages.success(
        request, f"Published as “{model.disease}”: every caller of the gateway can use it now."
    )
    return HttpResponseRedirect(reverse("teach:test", args=[teach_project.pk]), status=303)


@require_http_methods(["POST"])
def delete(request: HttpRequest, pk: uuid.UUID) -> HttpResponse:
    """Deletes the project here and on the trainer, with its examples and models."""
    teach_project = _owned(request, pk)
    try:
        services.teach_project_delete(project=teach_project)
    except GatewayError as error:
        messages.error(request, error.message)
        return HttpResponseRedirect(reverse("teach:project", args=[teach_project.pk]), status=303)
    messages.success(request, "The project was deleted.")
    return HttpResponseRedirect(reverse("teach:home"), status=303)
