"""The series operations of the REST API: POST series/ queues a job, GET series/{id}/ reads it.

GET series/{id}/sr and series/{id}/kos send the job's DICOM results, de-identified;
POST series/{id}/retry queues a failed job again.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any, Literal

from django.http import FileResponse, Http404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiRequest,
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
    extend_schema_serializer,
)
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.response import Response

from web.api.base import ApiView, api_user
from web.api.exceptions import ApiError
from web.api.serializers import error_responses
from web.api.views import AnyAcceptNegotiation
from web.core.context_processors import DEMO_MODEL_WARNING
from web.series import selectors, services, views
from web.series.models import SeriesJob
from web.series.study import ORDERED_BY, PHASE_LABELS, SELECTED_BY, instance_number

SERIES = ["series"]
# What the multipart `series` must hold (an OpenAPI encoding's media type).
SERIES_MEDIA_TYPE = "application/zip"
_Get = Callable[..., FileResponse]


class SliceImageSerializer(serializers.Serializer[dict[str, Any]]):
    """The DICOM image that shows a slice in one phase, to find it in a PACS or viewer."""

    phase = serializers.ChoiceField(choices=list(PHASE_LABELS))
    sop_instance_uid = serializers.CharField()
    instance_number = serializers.IntegerField(allow_null=True)
    position_mm = serializers.FloatField(
        allow_null=True, help_text="Position along the slice normal, when the headers give it."
    )


class SliceSerializer(serializers.Serializer[dict[str, Any]]):
    """One slice's finding: flagged or not, each model's probability, its image per phase."""

    index = serializers.IntegerField(help_text="Index in anatomical order, from 0.")
    instance_number = serializers.SerializerMethodField()
    positive = serializers.BooleanField()
    scores = serializers.DictField(child=serializers.FloatField())
    images = serializers.SerializerMethodField()

    @extend_schema_field(serializers.IntegerField(allow_null=True))
    def get_instance_number(self, finding: dict[str, Any]) -> int | None:
        """Returns the InstanceNumber of the slice's pre-contrast image, which names it."""
        return instance_number(finding)

    @extend_schema_field(SliceImageSerializer(many=True))
    def get_images(self, finding: dict[str, Any]) -> list[dict[str, Any]]:
        """Returns the slice's DICOM image in each phase (none for jobs analysed before)."""
        return list(SliceImageSerializer(finding.get("images", []), many=True).data)


class SelectedPhaseSerializer(serializers.Serializer[dict[str, Any]]):
    """One phase the models read: the series (or temporal position) holding it."""

    phase = serializers.ChoiceField(choices=list(PHASE_LABELS))
    series_instance_uid = serializers.CharField()
    series_description = serializers.CharField(allow_blank=True)
    series_number = serializers.IntegerField(allow_null=True)
    temporal_position = serializers.IntegerField(
        allow_null=True,
        help_text="From 1, inside a multiphase series; null for a series of its own.",
    )
    image_count = serializers.IntegerField()


class UnusedSeriesSerializer(serializers.Serializer[dict[str, Any]]):
    """A series of the study that the analysis does not read, and why."""

    series_instance_uid = serializers.CharField()
    series_description = serializers.CharField(allow_blank=True)
    series_number = serializers.IntegerField(allow_null=True)
    modality = serializers.CharField(allow_blank=True)
    image_count = serializers.IntegerField()
    reason = serializers.CharField()


class SkippedFileSerializer(serializers.Serializer[dict[str, Any]]):
    """A file of the upload that is not part of the study, and why."""

    path = serializers.CharField(help_text="Path inside the zip.")
    reason = serializers.CharField()


class StudySerializer(serializers.Serializer[dict[str, Any]]):
    """What the upload holds and which of its series the models read."""

    study_instance_uid = serializers.CharField()
    phases = SelectedPhaseSerializer(many=True)
    unused_series = UnusedSeriesSerializer(many=True)
    skipped_files = SkippedFileSerializer(many=True)
    slice_count = serializers.IntegerField(help_text="Slices of each phase.")
    ordered_by = serializers.ChoiceField(choices=list(ORDERED_BY))
    selected_by = serializers.ChoiceField(choices=list(SELECTED_BY))


class JobErrorSerializer(serializers.Serializer[dict[str, Any]]):
    """Why a job failed, and whether POST series/{id}/retry may run it again."""

    code = serializers.CharField(help_text="The failure's gRPC code name, such as UNAVAILABLE.")
    message = serializers.CharField()
    retryable = serializers.BooleanField()


class RetryErrorSerializer(serializers.Serializer[dict[str, Any]]):
    """The transient failure an automatic retry follows."""

    code = serializers.CharField(help_text="UNAVAILABLE, RESOURCE_EXHAUSTED or DEADLINE_EXCEEDED.")
    message = serializers.CharField()


class RetrySerializer(serializers.Serializer[dict[str, Any]]):
    """The automatic retry a queued job waits for, after a transient failure."""

    at = serializers.DateTimeField(help_text="When the next attempt may start.")
    in_seconds = serializers.IntegerField(help_text="Seconds from now until then (0: due).")
    attempt = serializers.IntegerField(help_text="The attempt that will run; the first was 1.")
    of = serializers.IntegerField(help_text="How many attempts may run in all.")
    message = serializers.CharField(help_text='For people: "Retrying in 20 s (attempt 2 of 5)".')
    error = RetryErrorSerializer()


class SeriesJobSerializer(serializers.Serializer[SeriesJob]):
    """One series job: where it stands and, once done, its findings per slice."""

    id = serializers.UUIDField()
    disease = serializers.CharField()
    status = serializers.ChoiceField(choices=SeriesJob.Status.choices)
    stage = serializers.ChoiceField(choices=SeriesJob.Stage.choices)
    progress = serializers.FloatField(help_text="From 0 to 1.")
    slice_count = serializers.IntegerField()
    positive_slices = serializers.ListField(child=serializers.IntegerField())
    slices = SliceSerializer(many=True)
    study = serializers.SerializerMethodField()
    model_name = serializers.CharField()
    model_version = serializers.CharField()
    demo_model = serializers.BooleanField()
    notice = serializers.SerializerMethodField()
    error = serializers.SerializerMethodField()
    retry = serializers.SerializerMethodField()
    request_id = serializers.CharField()
    created_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)
    url = serializers.SerializerMethodField()
    sr_url = serializers.SerializerMethodField()
    kos_url = serializers.SerializerMethodField()

    @extend_schema_field(StudySerializer(allow_null=True))
    def get_study(self, job: SeriesJob) -> dict[str, Any] | None:
        """Returns the study the analysis read (or will read); null when not known yet."""
        return StudySerializer(job.study).data if job.study else None

    @extend_schema_field(OpenApiTypes.STR)
    def get_notice(self, job: SeriesJob) -> str:
        """Returns the warning shown beside a demonstration model's findings, else ""."""
        return DEMO_MODEL_WARNING if job.demo_model else ""

    @extend_schema_field(JobErrorSerializer(allow_null=True))
    def get_error(self, job: SeriesJob) -> dict[str, Any] | None:
        """Returns why the job failed; null unless it did."""
        if job.status != SeriesJob.Status.FAILED:
            return None
        return {"code": job.error_code, "message": job.error_message, "retryable": job.retryable}

    @extend_schema_field(RetrySerializer(allow_null=True))
    def get_retry(self, job: SeriesJob) -> dict[str, Any] | None:
        """Returns the automatic retry the queued job waits for; null when it waits for none."""
        retry = job.retry_json()
        return RetrySerializer(retry).data if retry is not None else None

    @extend_schema_field(OpenApiTypes.URI)
    def get_url(self, job: SeriesJob) -> str:
        """Returns the job's API URL."""
        request: Request | None = self.context.get("request")
        path = f"/api/v1/series/{job.pk}/"
        return request.build_absolute_uri(path) if request is not None else path

    def _report_url(self, job: SeriesJob, kind: str, size: int) -> str | None:
        if size <= 0:
            return None
        request: Request | None = self.context.get("request")
        path = f"/api/v1/series/{job.pk}/{kind}"
        return request.build_absolute_uri(path) if request is not None else path

    @extend_schema_field(serializers.URLField(allow_null=True))
    def get_sr_url(self, job: SeriesJob) -> str | None:
        """Returns where the job's DICOM report (TID 1500 SR) is; null while it has none."""
        return self._report_url(job, "sr", job.sr_bytes)

    @extend_schema_field(serializers.URLField(allow_null=True))
    def get_kos_url(self, job: SeriesJob) -> str | None:
        """Returns where the job's key images (KOS) are; null when it has none."""
        return self._report_url(job, "kos", job.kos_bytes)


class SeriesCreateApi(ApiView):
    """Stores a series zip and queues its analysis; poll GET series/{id}/ for the findings."""

    @extend_schema_serializer(component_name="SeriesUpload")
    class InputSerializer(serializers.Serializer[dict[str, Any]]):
        """A multipart upload: the series zip."""

        series = serializers.FileField(
            allow_empty_file=True,  # the service's own check says "empty" clearly
            help_text="A zip of one DICOM study in any folder layout (a PACS or CD export, a "
            "TCIA download, or the folders pre/, 1st_pass/, 2nd_pass/, 3rd_pass/).",
            error_messages={"required": "Send the zip in the multipart field `series`."},
        )

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        """Refuses (413) a body declared over the series limit before anything reads it.

        Before authentication too: a session's CSRF check reads the form, which parses
        the whole body. So an oversized request is 413 even without credentials.
        """
        if request.method == "POST":
            try:
                services.series_upload_check_declared(
                    content_length=request.META.get("CONTENT_LENGTH")
                )
            except services.UploadRefused as refused:
                raise ApiError(
                    refused.message, status_code=refused.http_status, reason=refused.reason
                ) from None
        super().initial(request, *args, **kwargs)

    @extend_schema(
        operation_id="series_create",
        tags=SERIES,
        # The bytes decide, whatever the part's Content-Type says: a zip archive.
        request={
            "multipart/form-data": OpenApiRequest(
                InputSerializer, encoding={"series": {"contentType": SERIES_MEDIA_TYPE}}
            )
        },
        responses={202: SeriesJobSerializer, **error_responses(400, 401, 403, 413, 415)},
    )
    def post(self, request: Request) -> Response:
        """Queues the uploaded series; 202 with the job's id, status and the study it holds.

        The MRI service checks the study first, without running its models: a series it
        would refuse is 400 with its message (naming the offending entry or series) and
        its reason, and nothing is kept. When it cannot be asked (the service is down or
        busy), the series is queued unchecked (`study` null) and its analysis checks it.
        """
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        series = data.validated_data["series"]
        try:
            job = services.series_job_create(
                user=api_user(request), upload=series, size=series.size
            )
        except services.UploadRefused as refused:
            raise ApiError(
                refused.message, status_code=refused.http_status, reason=refused.reason
            ) from None
        body = SeriesJobSerializer(job, context={"request": request}).data
        return Response(body, status=status.HTTP_202_ACCEPTED, headers={"Location": body["url"]})


class SeriesItemApi(ApiView):
    """Returns one of the caller's series jobs: status, progress and findings."""

    @extend_schema(
        operation_id="series_retrieve",
        tags=SERIES,
        responses={200: SeriesJobSerializer, **error_responses(401, 404)},
    )
    def get(self, request: Request, job_id: uuid.UUID) -> Response:
        """Returns the job; anybody else's id is 404, like a missing one."""
        job = selectors.series_job_get(user=api_user(request), job_id=job_id)
        if job is None:
            raise NotFound("No such series.")
        return Response(SeriesJobSerializer(job, context={"request": request}).data)


class SeriesRetryApi(ApiView):
    """Queues one of the caller's failed series jobs again, from its stored original."""

    @extend_schema(
        operation_id="series_retry",
        tags=SERIES,
        request=None,
        responses={
            202: SeriesJobSerializer,
            **error_responses(401, 403),
            404: OpenApiResponse(
                error_responses(404)[404].response,
                description="No such series, or anybody else's: the same answer.",
            ),
            409: OpenApiResponse(
                error_responses(409)[409].response,
                description="The job is not failed (reason `SERIES_NOT_FAILED`: queued, "
                "waiting for an automatic retry, running or done), or trying again cannot "
                "help (`SERIES_NOT_RETRYABLE`: the service refused the study for good, or "
                "its stored upload is gone).",
            ),
        },
    )
    def post(self, request: Request, job_id: uuid.UUID) -> Response:
        """Queues the failed job afresh (its automatic retries too); 202 with the job.

        Only a job that failed for a transient reason (the service down, busy or slow,
        after its automatic retries; or interrupted several times) keeps its upload and
        can run again. Poll GET series/{id}/ for where it stands.
        """
        job = selectors.series_job_get(user=api_user(request), job_id=job_id)
        if job is None:
            raise NotFound("No such series.")
        refusal = services.series_job_retry_refusal(job=job)
        if refusal:
            raise ApiError(
                refusal,
                status_code=status.HTTP_409_CONFLICT,
                reason="SERIES_NOT_FAILED"
                if job.status != SeriesJob.Status.FAILED
                else "SERIES_NOT_RETRYABLE",
            )
        job = services.series_job_retry(job=job)
        body = SeriesJobSerializer(job, context={"request": request}).data
        return Response(body, status=status.HTTP_202_ACCEPTED, headers={"Location": body["url"]})


def _report_schema(kind: Literal["sr", "kos"]) -> Callable[[_Get], _Get]:
    """Returns the schema of GET series/{id}/sr or series/{id}/kos."""
    what = {
        "sr": "The analysis as a DICOM Comprehensive 3D SR (TID 1500 Measurement Report, SOP "
        "class 1.2.840.10008.5.1.4.1.1.88.34): each flagged slice's finding, both models' "
        "probabilities and the fused decision, referencing the study's images by their "
        "SOPInstanceUIDs.",
        "kos": "The flagged slices' images as a DICOM Key Object Selection document (SOP class "
        "1.2.840.10008.5.1.4.1.1.88.59). A job that flagged no slice has none.",
    }[kind]
    return extend_schema(
        operation_id=f"series_{kind}",
        tags=SERIES,
        summary={"sr": "The DICOM report (SR)", "kos": "The key images (KOS)"}[kind],
        description=what + " De-identified (DICOM PS3.15 Basic Application Level "
        "Confidentiality Profile, Retain UIDs): it holds no patient name, ID or birth date, "
        "and its references still resolve to the hospital's images. Demo models' results say "
        "NOT FOR CLINICAL USE. Served as an attachment whatever the Accept header asks.",
        responses={
            (200, "application/dicom"): OpenApiResponse(
                OpenApiTypes.BINARY, description="A DICOM Part 10 file."
            ),
            **error_responses(401),
            404: OpenApiResponse(
                error_responses(404)[404].response,
                description="No such series (or anybody else's), or the series has no such "
                "object: its analysis has not finished"
                + (", or it flagged no slice." if kind == "kos" else "."),
            ),
        },
    )


class _SeriesReportApi(ApiView):
    """Sends one of the caller's jobs' DICOM results, de-identified, to the caller only."""

    # application/dicom for the file, JSON for errors, whatever the client accepts.
    content_negotiation_class = AnyAcceptNegotiation
    kind: Literal["sr", "kos"] = "sr"

    def get(self, request: Request, job_id: uuid.UUID) -> FileResponse:
        """Returns the file; 404 for anybody else's job, a missing one, or one without it."""
        job = selectors.series_job_get(user=api_user(request), job_id=job_id)
        if job is None:
            raise NotFound("No such series.")
        try:
            return views.report_response(job, self.kind)
        except Http404:
            raise ApiError(
                views.REPORT_MISSING[self.kind],
                status_code=404,
                reason="SERIES_REPORT_NONE" if self.kind == "sr" else "SERIES_KEY_IMAGES_NONE",
            ) from None


class SeriesReportApi(_SeriesReportApi):
    """Sends the job's DICOM report (TID 1500 Comprehensive 3D SR)."""

    kind = "sr"

    @_report_schema("sr")
    def get(self, request: Request, job_id: uuid.UUID) -> FileResponse:
        """Returns the SR; 404 for anybody else's job, a missing one, or one without it."""
        return super().get(request, job_id)


class SeriesKeyImagesApi(_SeriesReportApi):
    """Sends the job's key images (Key Object Selection document)."""

    kind = "kos"

    @_report_schema("kos")
    def get(self, request: Request, job_id: uuid.UUID) -> FileResponse:
        """Returns the KOS; 404 for anybody else's job, a missing one, or one without it."""
        return super().get(request, job_id)
