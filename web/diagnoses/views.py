"""Pages of the diagnoses app: upload, result, private images, retry, delete, history."""

from __future__ import annotations

import uuid
from typing import Literal

from django.conf import settings
from django.contrib import messages
from django.core.paginator import Paginator
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from servicekit.errors import InvalidImage, is_too_large
from web.core.users import signed_in_user
from web.diagnoses import selectors, services
from web.diagnoses.forms import ACCEPTED_TYPES, HistoryFilterForm, UploadForm
from web.diagnoses.models import Diagnosis, label_display

HISTORY_PAGE_SIZE = 12


def _owned(request: HttpRequest, diagnosis_id: uuid.UUID) -> Diagnosis:
    """Returns the requester's record; anybody else's is indistinguishable from a missing one."""
    diagnosis = selectors.diagnosis_get(user=signed_in_user(request), diagnosis_id=diagnosis_id)
    if diagnosis is None:
        raise Http404("No such diagnosis.")
    return diagnosis


def _base_url(request: HttpRequest) -> str:
    return request.build_absolute_uri("/").rstrip("/")


def _sentence(text: str) -> str:
    text = text.strip().rstrip(".")
    return f"{text[:1].upper()}{text[1:]}." if text else ""


@require_http_methods(["GET", "HEAD", "POST"])
def upload(request: HttpRequest) -> HttpResponse:
    """Shows the upload form; stores a valid photo, diagnoses it and shows the result."""
    posted = request.method == "POST"
    form = UploadForm(request.POST, request.FILES) if posted else UploadForm()
    refused_status = 400
    if posted and form.is_valid():
        try:
            diagnosis = services.diagnosis_create(
                user=signed_in_user(request),
                upload=form.cleaned_data["image"],
                disease=form.cleaned_data["disease"],
            )
        except InvalidImage as error:
            form.add_error("image", _sentence(error.message))
            refused_status = 413 if is_too_large(error.reason) else 400
        else:
            services.diagnosis_run(diagnosis=diagnosis, base_url=_base_url(request))
            return HttpResponseRedirect(
                reverse("diagnoses:detail", args=[diagnosis.pk]), status=303
            )
    context = {
        "form": form,
        "max_bytes": settings.WEB_MAX_IMAGE_BYTES,
        "max_megabytes": f"{settings.WEB_MAX_IMAGE_BYTES / 2**20:g}",
        "accepted_types": ",".join(ACCEPTED_TYPES),
        "recent": selectors.diagnosis_list(user=signed_in_user(request))[:4],
    }
    status = refused_status if posted else 200
    return render(request, "diagnoses/upload.html", context, status=status)


@require_safe
def detail(request: HttpRequest, diagnosis_id: uuid.UUID) -> HttpResponse:
    """Shows one result: the image, the top label, every class's bar and the model."""
    diagnosis = _owned(request, diagnosis_id)
    scores = [
        {
            "label": label_display(str(s["label"])),
            "score": float(s["score"]),
            "percent": round(float(s["score"]) * 100, 1),
            "top": s["label"] == diagnosis.top_label,
        }
        for s in diagnosis.scores
    ]
    return render(
        request,
        "diagnoses/detail.html",
        {
            "diagnosis": diagnosis,
            "scores": scores,
            "top_percent": round((diagnosis.top_score or 0.0) * 100, 1),
            "can_retry": diagnosis.can_retry(),
        },
    )


def _file_response(
    request: HttpRequest, diagnosis_id: uuid.UUID, variant: Literal["image", "thumbnail"]
) -> FileResponse:
    diagnosis = _owned(request, diagnosis_id)
    try:
        stored, content_type = selectors.diagnosis_file(diagnosis=diagnosis, variant=variant)
    except FileNotFoundError:
        raise Http404("The image is no longer stored.") from None
    extension = "png" if content_type == "image/png" else "jpg"
    response = FileResponse(
        stored,
        content_type=content_type,
        as_attachment=False,
        filename=f"diagnosis-{diagnosis.pk}-{variant}.{extension}",
    )
    # Medical images: never kept by browsers or shared caches.
    response["Cache-Control"] = "no-store, private"
    response["X-Content-Type-Options"] = "nosniff"
    return response


@require_safe
def image(request: HttpRequest, diagnosis_id: uuid.UUID) -> FileResponse:
    """Sends the stored image to its owner only, never to be cached."""
    return _file_response(request, diagnosis_id, "image")


@require_safe
def thumbnail(request: HttpRequest, diagnosis_id: uuid.UUID) -> FileResponse:
    """Sends the stored thumbnail to its owner only, never to be cached."""
    return _file_response(request, diagnosis_id, "thumbnail")


@require_POST
def retry(request: HttpRequest, diagnosis_id: uuid.UUID) -> HttpResponse:
    """Sends a failed record's stored image to the gateway again."""
    diagnosis = _owned(request, diagnosis_id)
    if not diagnosis.can_retry():
        messages.info(request, "This diagnosis cannot be retried.")
    else:
        diagnosis = services.diagnosis_retry(diagnosis=diagnosis, base_url=_base_url(request))
        if diagnosis.status == Diagnosis.Status.DONE:
            messages.success(request, "The image was diagnosed.")
    return HttpResponseRedirect(reverse("diagnoses:detail", args=[diagnosis.pk]), status=303)


@require_http_methods(["GET", "HEAD", "POST"])
def delete(request: HttpRequest, diagnosis_id: uuid.UUID) -> HttpResponse:
    """Asks to confirm, then deletes the record and its stored files."""
    diagnosis = _owned(request, diagnosis_id)
    if request.method == "POST":
        services.diagnosis_delete(diagnosis=diagnosis)
        messages.success(request, "The diagnosis and its image were deleted.")
        return HttpResponseRedirect(reverse("diagnoses:history"), status=303)
    return render(request, "diagnoses/delete.html", {"diagnosis": diagnosis})


@require_safe
def history(request: HttpRequest) -> HttpResponse:
    """Lists the user's diagnoses with thumbnails, filtered by label and date, paginated."""
    user = signed_in_user(request)
    labels = selectors.diagnosis_labels(user=user)
    form = HistoryFilterForm(request.GET or None, labels=[(x, label_display(x)) for x in labels])
    filters = form.cleaned_data if form.is_bound and form.is_valid() else {}
    records = selectors.diagnosis_list(
        user=user,
        label=filters.get("label") or "",
        date_from=filters.get("date_from"),
        date_to=filters.get("date_to"),
    )
    paginator = Paginator(records, HISTORY_PAGE_SIZE)
    page = paginator.get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return render(
        request,
        "diagnoses/history.html",
        {
            "form": form,
            "page": page,
            "page_numbers": paginator.get_elided_page_range(page.number, on_each_side=2),
            "ellipsis": paginator.ELLIPSIS,
            "query": query.urlencode(),
            "filtered": bool(filters and any(filters.values())),
            "result_emails": selectors.result_emails_enabled(user=user),
        },
    )
