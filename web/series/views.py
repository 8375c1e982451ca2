"""Pages of the series app: upload (chunked by the script), job page, progress, viewer, SR, KOS."""

from __future__ import annotations

import uuid
from typing import Literal

from django.conf import settings
from django.contrib import messages
from django.http import (
    FileResponse,
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseRedirect,
    JsonResponse,
)
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from web.core.users import signed_in_user
from web.series import selectors, services, study
from web.series.models import SeriesJob

CHUNK_BYTES = 4 * 1024 * 1024
# Steps between the slice numbers under the plot; the smallest that gives at most MAX_TICKS.
TICK_STEPS = (1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000)
MAX_TICKS = 9


def size_label(count: int) -> str:
    """Returns a byte count the way people read a limit: "1 GB", "512 MB", "1.5 GB"."""
    for unit, scale in (("GB", 2**30), ("MB", 2**20), ("KB", 2**10)):
        if count >= scale:
            return f"{count / scale:.1f}".removesuffix(".0") + f" {unit}"
    return f"{count} bytes"


def plot_ticks(count: int) -> list[dict[str, float]]:
    """Returns the slices numbered under the plot and where each sits, as a % of its width.

    The plot draws slice i at the middle of the i-th of `count` equal columns.
    """
    if count <= 0:
        return []
    step = next((s for s in TICK_STEPS if count / s <= MAX_TICKS), TICK_STEPS[-1])
    return [{"index": i, "left": round((i + 0.5) * 100 / count, 3)} for i in range(0, count, step)]


def _owned(request: HttpRequest, job_id: uuid.UUID) -> SeriesJob:
    """Returns the requester's job; anybody else's is indistinguishable from a missing one."""
    job = selectors.series_job_get(user=signed_in_user(request), job_id=job_id)
    if job is None:
        raise Http404("No such series.")
    return job


def _no_store(response: HttpResponse) -> HttpResponse:
    response["Cache-Control"] = "no-store, private"
    return response


def _refused(refused: services.UploadRefused) -> JsonResponse:
    body = {"error": {"code": refused.reason, "message": refused.message}}
    if refused.http_status == 409:
        body["received"] = refused.received  # type: ignore[assignment]
    return JsonResponse(body, status=refused.http_status)


# csrf_exempt here, csrf_protect on _upload: the CSRF check reads the form, which would
# parse the whole body before its declared size could refuse it (Django's documented way
# to act before the upload handlers run).
@csrf_exempt
@require_http_methods(["GET", "HEAD", "POST"])
def upload(request: HttpRequest) -> HttpResponse:
    """Shows the upload page; without the script, the form posts the whole zip here.

    A body declared larger than the series limit is refused (413) before it is read.
    """
    if request.method == "POST":
        try:
            services.series_upload_check_declared(content_length=request.META.get("CONTENT_LENGTH"))
        except services.UploadRefused as refused:
            return _upload_page(request, error=refused.message, status=refused.http_status)
    return _upload(request)


@csrf_protect
def _upload(request: HttpRequest) -> HttpResponse:
    """The upload page, or a whole zip posted by its plain form: checked, stored, queued."""
    user = signed_in_user(request)
    if request.method != "POST":
        return _upload_page(request)
    series = request.FILES.get("series")
    if series is None:
        return _upload_page(request, error="Choose a series zip to upload.", status=400)
    try:
        job = services.series_job_create(user=user, upload=series, size=series.size)
    except services.UploadRefused as refused:
        return _upload_page(request, error=refused.message, status=refused.http_status)
    return HttpResponseRedirect(reverse("series:detail", args=[job.pk]), status=303)


def _upload_page(request: HttpRequest, *, error: str = "", status: int = 200) -> HttpResponse:
    context = {
        "error": error,
        "max_bytes": settings.WEB_MAX_SERIES_BYTES,
        "max_size": size_label(settings.WEB_MAX_SERIES_BYTES),
        "chunk_bytes": CHUNK_BYTES,
        "jobs": selectors.series_job_list(user=signed_in_user(request))[:10],
    }
    return render(request, "series/upload.html", context, status=status)


@require_POST
def chunk(request: HttpRequest) -> JsonResponse:
    """Appends one chunk (multipart `chunk`, with `upload_id`, `offset`, `total`) to an upload."""
    data = request.FILES.get("chunk")
    try:
        offset = int(request.POST.get("offset", ""))
        total = int(request.POST.get("total", ""))
    except ValueError:
        return JsonResponse(
            {"error": {"code": "UPLOAD_CHUNK", "message": "offset and total must be numbers."}},
            status=400,
        )
    if data is None:
        return JsonResponse(
            {"error": {"code": "UPLOAD_CHUNK", "message": "The chunk is missing."}}, status=400
        )
    try:
        receipt = services.series_chunk_append(
            user=signed_in_user(request),
            upload_id=request.POST.get("upload_id", ""),
            offset=offset,
            total=total,
            chunk=data,
            chunk_size=data.size or 0,
        )
    except services.UploadRefused as refused:
        return _refused(refused)
    body: dict[str, object] = {
        "upload_id": receipt.upload_id,
        "received": receipt.received,
        "total": receipt.total,
    }
    if receipt.job is not None:
        body["job"] = str(receipt.job.pk)
        body["url"] = reverse("series:detail", args=[receipt.job.pk])
    return JsonResponse(body, status=201 if receipt.job is not None else 200)


@require_safe
def chunk_status(request: HttpRequest, upload_id: str) -> JsonResponse:
    """Tells how many bytes of an unfinished upload arrived, so the page can resume it."""
    try:
        received = services.upload_received(user=signed_in_user(request), upload_id=upload_id)
    except services.UploadRefused as refused:
        return _refused(refused)
    return JsonResponse({"upload_id": upload_id, "received": received})


@require_safe
def detail(request: HttpRequest, job_id: uuid.UUID) -> HttpResponse:
    """Shows a job: live progress while it runs, then the slice viewer or the error."""
    job = _owned(request, job_id)
    slices = [
        {
            **s,
            "scores_list": [
                {"model": name, "percent": round(float(p) * 100, 1)}
                for name, p in sorted(s["scores"].items())
            ],
            "has_thumbnail": s["index"] < job.thumbnail_count,
            "instance_number": study.instance_number(s),
            "label": study.slice_label(s),
        }
        for s in job.slices
    ]
    context = {
        "job": job,
        "slices": slices,
        "flagged": [s["label"] for s in slices if s["positive"]],
        "study": study.study_display(job.study),
        "plot": selectors.series_plot(job=job) if job.status == SeriesJob.Status.DONE else None,
        "ticks": plot_ticks(len(job.slices)),
        "retry": job.retry_json(),
    }
    return _no_store(render(request, "series/detail.html", context))


@require_safe
def progress(request: HttpRequest, job_id: uuid.UUID) -> HttpResponse:
    """Returns the job's status and progress as JSON, for the job page to poll."""
    return _no_store(JsonResponse(_owned(request, job_id).progress_json()))


@require_safe
def thumbnail(request: HttpRequest, job_id: uuid.UUID, index: int) -> FileResponse:
    """Sends one slice's thumbnail to the job's owner only, never to be cached."""
    job = _owned(request, job_id)
    path = selectors.series_thumbnail_path(job=job, index=index)
    if path is None:
        raise Http404("No such slice.")
    response = FileResponse(path.open("rb"), content_type="image/png")
    response["Cache-Control"] = "no-store, private"
    response["X-Content-Type-Options"] = "nosniff"
    return response


# What a download of a job's DICOM results answers when the job has none of that kind.
REPORT_MISSING = {
    "sr": "This series has no DICOM report (SR): its analysis has not finished.",
    "kos": "This series has no key images (KOS): its analysis has not finished, or it "
    "flagged no slice.",
}
REPORT_SUFFIX = {"sr": "sr", "kos": "key-images"}


def report_filename(job: SeriesJob, kind: Literal["sr", "kos"]) -> str:
    """Returns the name a downloaded SR or KOS is saved under: the job's id and the kind."""
    return f"series-{job.pk}-{REPORT_SUFFIX[kind]}.dcm"


def report_response(job: SeriesJob, kind: Literal["sr", "kos"]) -> FileResponse:
    """Returns the job's de-identified SR or KOS as application/dicom; Http404 if none."""
    path = selectors.series_report_path(job=job, kind=kind)
    if path is None:
        raise Http404(REPORT_MISSING[kind])
    response = FileResponse(
        path.open("rb"),
        content_type="application/dicom",
        as_attachment=True,
        filename=report_filename(job, kind),
    )
    response["Cache-Control"] = "no-store, private"
    response["X-Content-Type-Options"] = "nosniff"
    return response


@require_safe
def measurement_report(request: HttpRequest, job_id: uuid.UUID) -> FileResponse:
    """Sends the job's DICOM report (TID 1500 SR), de-identified, to its owner only."""
    return report_response(_owned(request, job_id), "sr")


@require_safe
def key_images(request: HttpRequest, job_id: uuid.UUID) -> FileResponse:
    """Sends the job's key images (KOS), de-identified, to its owner only."""
    return report_response(_owned(request, job_id), "kos")


@require_POST
def retry(request: HttpRequest, job_id: uuid.UUID) -> HttpResponse:
    """Queues a failed job's stored series again."""
    job = services.series_job_retry(job=_owned(request, job_id))
    if job.status == SeriesJob.Status.QUEUED:
        messages.success(request, "The series was queued again.")
    else:
        messages.info(request, "This series cannot be retried.")
    return HttpResponseRedirect(reverse("series:detail", args=[job.pk]), status=303)


@require_http_methods(["GET", "HEAD", "POST"])
def delete(request: HttpRequest, job_id: uuid.UUID) -> HttpResponse:
    """Asks to confirm, then deletes the job, its zip, thumbnails, SR and KOS."""
    job = _owned(request, job_id)
    if request.method == "POST":
        if job.status == SeriesJob.Status.RUNNING:
            messages.info(request, "A series cannot be deleted while it is analysed.")
            return HttpResponseRedirect(reverse("series:detail", args=[job.pk]), status=303)
        services.series_job_delete(job=job)
        messages.success(request, "The series and its files were deleted.")
        return HttpResponseRedirect(reverse("series:upload"), status=303)
    return render(request, "series/delete.html", {"job": job})
