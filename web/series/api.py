"""The series operations of the REST API: POST series/ queues a job, GET series/{id}/ reads it."""

from __future__ import annotations

import uuid
from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.response import Response

from web.api.base import ApiView, api_user
from web.api.exceptions import ApiError
from web.api.serializers import error_responses
from web.core.context_processors import DEMO_MODEL_WARNING
from web.series import selectors, services
from web.series.models import SeriesJob

SERIES = ["series"]


class SliceSerializer(serializers.Serializer[dict[str, Any]]):
    """One slice's finding: flagged or not, and each model's probability."""

    index = serializers.IntegerField()
    positive = serializers.BooleanField()
    scores = serializers.DictField(child=serializers.FloatField())


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
    model_name = serializers.CharField()
    model_version = serializers.CharField()
    demo_model = serializers.BooleanField()
    notice = serializers.SerializerMethodField()
    error = serializers.SerializerMethodField()
    request_id = serializers.CharField()
    created_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)
    url = serializers.SerializerMethodField()

    @extend_schema_field(OpenApiTypes.STR)
    def get_notice(self, job: SeriesJob) -> str:
        """Returns the warning shown beside a demonstration model's findings, else ""."""
        return DEMO_MODEL_WARNING if job.demo_model else ""

    @extend_schema_field(OpenApiTypes.OBJECT)
    def get_error(self, job: SeriesJob) -> dict[str, Any] | None:
        """Returns why the job failed, or None."""
        if job.status != SeriesJob.Status.FAILED:
            return None
        return {"code": job.error_code, "message": job.error_message, "retryable": job.retryable}

    @extend_schema_field(OpenApiTypes.URI)
    def get_url(self, job: SeriesJob) -> str:
        """Returns the job's API URL."""
        request: Request | None = self.context.get("request")
        path = f"/api/v1/series/{job.pk}/"
        return request.build_absolute_uri(path) if request is not None else path


class SeriesCreateApi(ApiView):
    """Stores a series zip and queues its analysis; poll GET series/{id}/ for the findings."""

    class InputSerializer(serializers.Serializer[dict[str, Any]]):
        """A multipart upload: the series zip."""

        series = serializers.FileField(
            allow_empty_file=True,  # the service's own check says "empty" clearly
            help_text="A zip of the series: pre/, 1st_pass/, 2nd_pass/, 3rd_pass/ DICOM files.",
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
        request={"multipart/form-data": InputSerializer},
        responses={202: SeriesJobSerializer, **error_responses(400, 401, 413)},
    )
    def post(self, request: Request) -> Response:
        """Queues the uploaded series; 202 with the job's id and status."""
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
