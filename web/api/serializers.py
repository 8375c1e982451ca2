"""Serializers several API operations share: a diagnosis as the API shows it, and the error body."""

from __future__ import annotations

from typing import Any, Final

from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema_field
from rest_framework import serializers
from rest_framework.request import Request

from web import gateway_client
from web.api.exceptions import ERROR_CODES, error_code
from web.core.context_processors import DEMO_MODEL_WARNING
from web.diagnoses.models import Diagnosis

MODEL_KINDS: Final = ["image", "series", "unspecified"]
ERROR_DESCRIPTIONS: Final[dict[int, str]] = {
    400: "The request is not valid: `message` says what to fix, `fields` which field.",
    401: "No credentials, or credentials that are not valid.",
    403: "Not allowed (a session request without its CSRF token, for one).",
    404: "No such record among the caller's own, or no such endpoint.",
    409: "The record is not in a state that allows this.",
    413: "The request body is too large.",
    415: "The body's media type is not accepted.",
    429: "Too many requests (the gateway's queue is full, or too many failed log-ins); "
    "see Retry-After.",
    500: "Something failed on the server; the request id finds it in the logs.",
    502: "The gateway answered unexpectedly.",
    503: "The diagnosis service is unavailable; see Retry-After.",
    504: "The diagnosis took too long.",
}


class ScoreSerializer(serializers.Serializer[dict[str, Any]]):
    """One class and its probability."""

    label = serializers.CharField()  # type: ignore[assignment]  # a field, not Field.label
    score = serializers.FloatField(min_value=0.0, max_value=1.0)


class FailureSerializer(serializers.Serializer[Diagnosis]):
    """Why the last call to the gateway failed, and whether trying again may help."""

    code = serializers.SerializerMethodField()
    message = serializers.CharField(source="error_message")
    retryable = serializers.SerializerMethodField()

    @extend_schema_field(serializers.ChoiceField(choices=sorted(set(ERROR_CODES.values()))))
    def get_code(self, diagnosis: Diagnosis) -> str:
        """Returns the API's code for the failure the record keeps."""
        return error_code(gateway_client.outcome_for_name(diagnosis.error_code).http_status)

    def get_retryable(self, diagnosis: Diagnosis) -> bool:
        """Tells whether POST …/retry/ may diagnose the stored image again."""
        return diagnosis.can_retry()


class LinksSerializer(serializers.Serializer[Diagnosis]):
    """Where to find the record, its image (owner only, never cached) and its page."""

    self = serializers.URLField()
    image = serializers.URLField()
    thumbnail = serializers.URLField()
    page = serializers.URLField(help_text="The result page for people, in the browser.")
    retry = serializers.URLField(required=False, help_text="Present while a retry may help.")


class DiagnosisSerializer(serializers.Serializer[Diagnosis]):
    """One diagnosis: the model's answer for one uploaded image, or why there is none yet."""

    id = serializers.UUIDField()
    disease = serializers.CharField()
    status = serializers.ChoiceField(choices=Diagnosis.Status.choices)
    top_label = serializers.CharField(help_text="The most probable class; empty until done.")
    top_score = serializers.FloatField(allow_null=True)
    scores = ScoreSerializer(many=True, help_text="Every class's probability, highest first.")
    model_name = serializers.CharField()
    model_version = serializers.CharField()
    demo_model = serializers.BooleanField(
        help_text="True for the shipped demonstration models: not for clinical use."
    )
    notice = serializers.SerializerMethodField()
    request_id = serializers.CharField(help_text="The id of the request that diagnosed it.")
    image_format = serializers.CharField()
    image_width = serializers.IntegerField()
    image_height = serializers.IntegerField()
    created_at = serializers.DateTimeField()
    diagnosed_at = serializers.DateTimeField(allow_null=True)
    failure = serializers.SerializerMethodField()
    links = serializers.SerializerMethodField()

    @extend_schema_field(OpenApiTypes.STR)
    def get_notice(self, diagnosis: Diagnosis) -> str:
        """Returns the warning to show beside a demonstration model's result, else ""."""
        return DEMO_MODEL_WARNING if diagnosis.demo_model else ""

    @extend_schema_field(FailureSerializer(allow_null=True))
    def get_failure(self, diagnosis: Diagnosis) -> dict[str, Any] | None:
        """Returns why the record failed, or None."""
        if diagnosis.status != Diagnosis.Status.FAILED:
            return None
        return dict(FailureSerializer(diagnosis).data)

    @extend_schema_field(LinksSerializer)
    def get_links(self, diagnosis: Diagnosis) -> dict[str, str]:
        """Returns the record's absolute URLs; the image ones serve the owner only."""
        request: Request | None = self.context.get("request")

        def url(name: str) -> str:
            path = reverse(name, args=[diagnosis.pk])
            return request.build_absolute_uri(path) if request is not None else path

        links = {
            "self": url("api:diagnosis"),
            "image": url("api:diagnosis-image"),
            "thumbnail": url("api:diagnosis-thumbnail"),
            "page": url("diagnoses:detail"),
        }
        if diagnosis.can_retry():
            links["retry"] = url("api:diagnosis-retry")
        return links


class ModelDescriptionSerializer(serializers.Serializer[gateway_client.ModelDescription]):
    """The model that serves a disease, as its service describes it."""

    model_name = serializers.CharField()
    model_version = serializers.CharField()
    kind = serializers.ChoiceField(choices=MODEL_KINDS)
    labels = serializers.ListField(child=serializers.CharField())
    input_height_px = serializers.IntegerField()
    input_width_px = serializers.IntegerField()
    input_channels = serializers.IntegerField()
    backend = serializers.CharField()
    demo_model = serializers.BooleanField()
    description = serializers.CharField()
    notice = serializers.SerializerMethodField()

    @extend_schema_field(OpenApiTypes.STR)
    def get_notice(self, model: gateway_client.ModelDescription) -> str:
        """Returns the warning for a demonstration model, else ""."""
        return DEMO_MODEL_WARNING if model.demo_model else ""


class RegisteredModelSerializer(serializers.Serializer[gateway_client.RegisteredModel]):
    """One disease the gateway routes to; `model` is null while its service is unreachable."""

    disease = serializers.CharField()
    kind = serializers.ChoiceField(choices=MODEL_KINDS)
    available = serializers.BooleanField()
    unavailable_reason = serializers.CharField()
    replica_count = serializers.IntegerField()
    model = ModelDescriptionSerializer(allow_null=True)


class ModelListSerializer(serializers.Serializer[dict[str, Any]]):
    """Every disease the gateway routes to, sorted by disease."""

    results = RegisteredModelSerializer(many=True)


class ErrorDetailSerializer(serializers.Serializer[dict[str, Any]]):
    """What went wrong, for programs (`code`, `reason`) and for people (`message`)."""

    code = serializers.ChoiceField(choices=sorted(set(ERROR_CODES.values())))
    message = serializers.CharField(help_text="What went wrong and what to do, in a sentence.")
    request_id = serializers.CharField(help_text="Also in the X-Request-ID response header.")
    reason = serializers.CharField(
        required=False, help_text="A finer machine-readable cause, such as IMAGE_TRUNCATED."
    )
    fields = serializers.DictField(  # type: ignore[assignment]  # the body's key
        child=serializers.ListField(child=serializers.CharField()),
        required=False,
        help_text="Validation messages by field.",
    )


class ErrorSerializer(serializers.Serializer[dict[str, Any]]):
    """The body of every error response."""

    error = ErrorDetailSerializer()


class FailedDiagnosisSerializer(serializers.Serializer[dict[str, Any]]):
    """The gateway failed, but the upload is kept: the error and the stored record."""

    error = ErrorDetailSerializer()
    diagnosis = DiagnosisSerializer()


def error_responses(*statuses: int) -> dict[int, OpenApiResponse]:
    """Returns the schema's error responses for these HTTP statuses."""
    return {
        code: OpenApiResponse(ErrorSerializer, description=ERROR_DESCRIPTIONS.get(code, ""))
        for code in statuses
    }
