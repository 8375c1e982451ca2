"""The API's operations, one class each: diagnoses, their images, models and tokens.

Views only translate: validate the input, call a service or selector, serialise the
output. Errors are raised and become the one error body in web.api.exceptions.
Two operations that share a URL (GET and POST diagnoses/) are two classes, joined by a
class that only routes the methods.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any, Literal

from django.http import FileResponse, HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiRequest,
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
    extend_schema_serializer,
    extend_schema_view,
)
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.parsers import BaseParser
from rest_framework.permissions import AllowAny
from rest_framework.renderers import BaseRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from web import gateway_client
from web.api import selectors as api_selectors
from web.api import services as api_services
from web.api.base import ApiView, api_user, plain_values
from web.api.exceptions import ApiError, error_body, request_id_of
from web.api.fields import QueryDateField, TextField
from web.api.pagination import PagePagination, paginated_response
from web.api.serializers import (
    DiagnosisSerializer,
    FailedDiagnosisSerializer,
    ModelListSerializer,
    error_responses,
)
from web.api.throttles import AnonRateThrottle, TokenRateThrottle
from web.diagnoses import selectors as diagnoses_selectors
from web.diagnoses import services as diagnoses_services
from web.diagnoses.forms import DISEASE_NAME
from web.diagnoses.models import Diagnosis

DIAGNOSES = ["diagnoses"]
IMAGE_URL_MAX_LENGTH = 2048
# What the multipart `image` must hold (an OpenAPI encoding's list of media types).
IMAGE_MEDIA_TYPES = "image/jpeg, image/png"
ID_PARAMETER = OpenApiParameter(
    "diagnosis_id", OpenApiTypes.UUID, OpenApiParameter.PATH, description="The record's id."
)
DISEASE_HELP = "Which model diagnoses the image, as GET /api/v1/models/ lists them."
CREATE_DESCRIPTION = (
    "Send the photo as the multipart field `image`, or its address as the JSON field "
    "`image_url`: the server fetches it from a public http(s) server (private and local "
    "addresses, redirects, bodies over the size limit and slow servers are refused). "
    "The image is checked, re-encoded without its metadata and stored first, then "
    "diagnosed. If the gateway fails, the record is kept (status `failed`) and the "
    "answer is the error, with the HTTP status of the gateway's failure (400, 404, 429, "
    "500, 502, 503 with Retry-After, 504), plus `diagnosis`: the stored record, which "
    "POST …/retry/ can diagnose again. Results of the demonstration models carry a "
    "`notice`: not for clinical use."
)
# The gateway failed but the upload was stored: the error plus the record, kept for retry.
FAILED_DIAGNOSIS_RESPONSES = {
    code: OpenApiResponse(
        FailedDiagnosisSerializer,
        description="The gateway could not diagnose the stored image; `diagnosis` is the "
        "record (status failed), which POST …/retry/ can diagnose again.",
    )
    for code in (429, 502, 503, 504)
}


def _owned(request: Request, diagnosis_id: uuid.UUID) -> Diagnosis:
    """Returns the caller's record; anybody else's is the same 404 as a missing one."""
    diagnosis = diagnoses_selectors.diagnosis_get(user=api_user(request), diagnosis_id=diagnosis_id)
    if diagnosis is None:
        raise NotFound("No such diagnosis.")
    return diagnosis


def _base_url(request: Request) -> str:
    return request.build_absolute_uri("/").rstrip("/")


def _diagnosis_response(request: Request, diagnosis: Diagnosis, *, created: bool) -> Response:
    """Returns the record (201 or 200), or, when the gateway failed, its error with the record."""
    data = DiagnosisSerializer(diagnosis, context={"request": request}).data
    if diagnosis.status == Diagnosis.Status.FAILED:
        outcome = gateway_client.outcome_for_name(diagnosis.error_code)
        raise ApiError(
            diagnosis.error_message or outcome.message,
            status_code=outcome.http_status,
            retry_after_s=outcome.retry_after_s,
            extra={"diagnosis": data},
            rollback=False,  # the stored upload stays, whatever the transaction settings
        )
    if not created:
        return Response(data)
    return Response(
        data, status=status.HTTP_201_CREATED, headers={"Location": data["links"]["self"]}
    )


@extend_schema_field(
    {
        "type": "string",
        "format": "uri",
        # As web.api.fetch.parse_image_url takes it: http or https (any case), then a host
        # with no user name or password; `format: uri` says the rest.
        "pattern": "^[Hh][Tt][Tt][Pp][Ss]?://[^/?#@]+([/?#]|$)",
        "maxLength": IMAGE_URL_MAX_LENGTH,
    }
)
class ImageUrlField(serializers.CharField):
    """The address of an image; web.api.fetch checks it, as the schema states it, and more."""


# --- diagnoses/ ----------------------------------------------------------------------------------


class DiagnosisListApi(ApiView):
    """Lists the caller's own diagnoses, newest first, filtered like the history page."""

    pagination_class = PagePagination

    class FilterSerializer(serializers.Serializer[dict[str, Any]]):
        """Narrows the list to one top label and a range of creation days (inclusive)."""

        label = TextField(  # type: ignore[assignment]  # a field, not Field.label
            required=False, allow_blank=True, max_length=100, help_text="Only this top label."
        )
        date_from = QueryDateField(
            required=False,
            help_text="Created on or after this day (YYYY-MM-DD). Must not be after `date_to`: "
            "a range that ends before it starts is 400 INVALID_ARGUMENT.",
        )
        date_to = QueryDateField(
            required=False,
            help_text="Created on or before this day (YYYY-MM-DD). Must not be before "
            "`date_from`: a range that ends before it starts is 400 INVALID_ARGUMENT.",
        )

        def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
            """Refuses a range that ends before it starts."""
            start, end = attrs.get("date_from"), attrs.get("date_to")
            if start and end and start > end:
                raise serializers.ValidationError(
                    "The start date (date_from) is after the end date (date_to)."
                )
            return attrs

    @extend_schema(
        operation_id="diagnoses_list",
        tags=DIAGNOSES,
        parameters=[FilterSerializer],
        responses={200: DiagnosisSerializer(many=True), **error_responses(400, 401, 404)},
    )
    def get(self, request: Request) -> Response:
        """Returns one page of the caller's diagnoses."""
        filters = DiagnosisListApi.FilterSerializer(data=plain_values(request.query_params))
        filters.is_valid(raise_exception=True)
        items = diagnoses_selectors.diagnosis_list(user=api_user(request), **filters.validated_data)
        return paginated_response(
            serializer_class=DiagnosisSerializer, items=items, request=request, view=self
        )


class DiagnosisCreateApi(ApiView):
    """Stores an image (uploaded, or fetched from a public URL) and diagnoses it."""

    @extend_schema_serializer(component_name="DiagnosisUpload")
    class UploadInputSerializer(serializers.Serializer[dict[str, Any]]):
        """A multipart upload: the image file itself."""

        image = serializers.FileField(
            allow_empty_file=True,  # the image checks say "empty" in the pages' words
            help_text="A JPEG or PNG photo.",
            error_messages={"required": "Send the image in the multipart field `image`."},
        )
        disease = serializers.CharField(
            default="skin", validators=[DISEASE_NAME], help_text=DISEASE_HELP
        )

    @extend_schema_serializer(component_name="DiagnosisFromUrl")
    class UrlInputSerializer(serializers.Serializer[dict[str, Any]]):
        """A JSON body: the address of the image, which the server fetches."""

        image_url = ImageUrlField(
            max_length=IMAGE_URL_MAX_LENGTH,
            help_text="An http(s) URL of a JPEG or PNG on a public server; redirects are "
            "not followed. One the server cannot fetch (not http(s), credentials in it, a "
            "private or local address, no answer, not an image) is 400 with a `reason` "
            "such as IMAGE_URL_SCHEME or IMAGE_URL_ADDRESS.",
            error_messages={
                "required": "Send the image as the multipart field `image`, or its address "
                "as the JSON field `image_url`."
            },
        )
        disease = serializers.CharField(
            default="skin", validators=[DISEASE_NAME], help_text=DISEASE_HELP
        )

    @extend_schema(
        operation_id="diagnoses_create",
        tags=DIAGNOSES,
        description=CREATE_DESCRIPTION,
        request={
            # The part's bytes decide, whatever its Content-Type says: a JPEG or a PNG.
            "multipart/form-data": OpenApiRequest(
                UploadInputSerializer, encoding={"image": {"contentType": IMAGE_MEDIA_TYPES}}
            ),
            "application/json": UrlInputSerializer,
        },
        responses={
            201: DiagnosisSerializer,
            **error_responses(400, 401, 403, 404, 413, 415),
            **FAILED_DIAGNOSIS_RESPONSES,
        },
    )
    def post(self, request: Request) -> Response:
        """Returns the new record; a failed gateway call still stores it (error + record)."""
        user, base_url = api_user(request), _base_url(request)
        if (request.content_type or "").startswith("multipart/"):
            upload = DiagnosisCreateApi.UploadInputSerializer(data=plain_values(request.data))
            upload.is_valid(raise_exception=True)
            diagnosis = diagnoses_services.diagnosis_submit(
                user=user,
                upload=upload.validated_data["image"],
                disease=upload.validated_data["disease"],
                base_url=base_url,
            )
        else:
            fetched = DiagnosisCreateApi.UrlInputSerializer(data=request.data)
            fetched.is_valid(raise_exception=True)
            diagnosis = api_services.diagnosis_submit_from_url(
                user=user,
                image_url=fetched.validated_data["image_url"],
                disease=fetched.validated_data["disease"],
                base_url=base_url,
            )
        return _diagnosis_response(request, diagnosis, created=True)


class DiagnosisCollectionApi(DiagnosisCreateApi, DiagnosisListApi):
    """diagnoses/: GET is DiagnosisListApi, POST is DiagnosisCreateApi."""


# --- diagnoses/{id}/ -----------------------------------------------------------------------------


class DiagnosisDetailApi(ApiView):
    """Returns one of the caller's diagnoses."""

    @extend_schema(
        operation_id="diagnoses_retrieve",
        tags=DIAGNOSES,
        parameters=[ID_PARAMETER],
        responses={200: DiagnosisSerializer, **error_responses(401, 404)},
    )
    def get(self, request: Request, diagnosis_id: uuid.UUID) -> Response:
        """Returns the record, whatever its status."""
        diagnosis = _owned(request, diagnosis_id)
        return Response(DiagnosisSerializer(diagnosis, context={"request": request}).data)


class DiagnosisDeleteApi(ApiView):
    """Deletes one of the caller's diagnoses and its stored image."""

    @extend_schema(
        operation_id="diagnoses_destroy",
        tags=DIAGNOSES,
        parameters=[ID_PARAMETER],
        responses={204: None, **error_responses(401, 403, 404)},
    )
    def delete(self, request: Request, diagnosis_id: uuid.UUID) -> Response:
        """Deletes the record; its files go once the deletion commits."""
        diagnoses_services.diagnosis_delete(diagnosis=_owned(request, diagnosis_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class DiagnosisItemApi(DiagnosisDetailApi, DiagnosisDeleteApi):
    """diagnoses/{id}/: GET is DiagnosisDetailApi, DELETE is DiagnosisDeleteApi."""


class DiagnosisRetryApi(ApiView):
    """Sends a failed record's stored image to the gateway again."""

    @extend_schema(
        operation_id="diagnoses_retry",
        tags=DIAGNOSES,
        parameters=[ID_PARAMETER],
        request=None,
        responses={
            200: DiagnosisSerializer,
            **error_responses(400, 401, 403, 404, 409),
            **FAILED_DIAGNOSIS_RESPONSES,
        },
    )
    def post(self, request: Request, diagnosis_id: uuid.UUID) -> Response:
        """Returns the record diagnosed, or the new failure with the record."""
        diagnosis = _owned(request, diagnosis_id)
        if not diagnosis.can_retry():
            raise ApiError(
                "This diagnosis cannot be retried: it is done, or trying again would not help.",
                status_code=status.HTTP_409_CONFLICT,
                reason="NOT_RETRYABLE",
            )
        diagnosis = diagnoses_services.diagnosis_retry(
            diagnosis=diagnosis, base_url=_base_url(request)
        )
        return _diagnosis_response(request, diagnosis, created=False)


# --- diagnoses/{id}/image/ and thumbnail/ --------------------------------------------------------


class AnyAcceptNegotiation(BaseContentNegotiation):
    """Answers with the view's first renderer whatever the Accept header asks (image views)."""

    def select_parser(self, request: Request, parsers: Iterable[BaseParser]) -> BaseParser | None:
        """Returns the first parser; image views read no body."""
        return next(iter(parsers), None)

    def select_renderer(
        self, request: Request, renderers: Iterable[BaseRenderer], format_suffix: str | None = None
    ) -> tuple[BaseRenderer, str]:
        """Returns the first renderer (JSON, for errors); a file response needs none."""
        renderer = next(iter(renderers))
        return renderer, str(renderer.media_type)


class _StoredFileApi(ApiView):
    """Sends a stored image of the caller's to the caller only, never to be cached."""

    content_negotiation_class = AnyAcceptNegotiation
    variant: Literal["image", "thumbnail"] = "image"

    def get(self, request: Request, diagnosis_id: uuid.UUID) -> FileResponse:
        """Returns the file, or 404 for anybody else's record."""
        diagnosis = _owned(request, diagnosis_id)
        try:
            stored, content_type = diagnoses_selectors.diagnosis_file(
                diagnosis=diagnosis, variant=self.variant
            )
        except FileNotFoundError:
            raise NotFound("The image is no longer stored.") from None
        extension = "png" if content_type == "image/png" else "jpg"
        response = FileResponse(
            stored,
            content_type=content_type,
            filename=f"diagnosis-{diagnosis.pk}-{self.variant}.{extension}",
        )
        response["Cache-Control"] = "no-store, private"
        response["X-Content-Type-Options"] = "nosniff"
        return response


_IMAGE_RESPONSES: dict[Any, Any] = {
    (200, "image/jpeg"): OpenApiResponse(OpenApiTypes.BINARY, description="The stored image."),
    (200, "image/png"): OpenApiResponse(OpenApiTypes.BINARY, description="The stored image."),
    **error_responses(401, 404),
}


@extend_schema_view(
    get=extend_schema(
        operation_id="diagnoses_image",
        tags=DIAGNOSES,
        parameters=[ID_PARAMETER],
        responses=_IMAGE_RESPONSES,
    )
)
class DiagnosisImageApi(_StoredFileApi):
    """Sends the stored image (re-encoded, without metadata) to its owner."""

    variant = "image"


@extend_schema_view(
    get=extend_schema(
        operation_id="diagnoses_thumbnail",
        tags=DIAGNOSES,
        parameters=[ID_PARAMETER],
        responses={
            (200, "image/jpeg"): OpenApiResponse(OpenApiTypes.BINARY, description="A thumbnail."),
            **error_responses(401, 404),
        },
    )
)
class DiagnosisThumbnailApi(_StoredFileApi):
    """Sends the stored thumbnail (at most 320 px) to its owner."""

    variant = "thumbnail"


# --- models/ -------------------------------------------------------------------------------------


class ModelListApi(ApiView):
    """Lists the diseases the gateway routes to and the model behind each (its ModelRegistry)."""

    @extend_schema(
        operation_id="models_list",
        tags=["models"],
        responses={
            200: ModelListSerializer,
            **error_responses(401, 429, 502, 503, 504),
        },
    )
    def get(self, request: Request) -> Response:
        """Returns the gateway's registry; a gateway that is down is 503 with Retry-After."""
        models = api_selectors.model_list()
        return Response(ModelListSerializer({"results": models}).data)


# --- auth/token/ ---------------------------------------------------------------------------------


class TokenCreateApi(ApiView):
    """Exchanges an e-mail address and password for the user's API token."""

    authentication_classes = ()
    permission_classes = (AllowAny,)
    # Per address, right or wrong, on top of the log-in delays (which count only failures
    # per account): the anonymous rate, and the stricter token rate.
    throttle_classes = (AnonRateThrottle, TokenRateThrottle)

    @extend_schema_serializer(component_name="TokenRequest")
    class InputSerializer(serializers.Serializer[dict[str, Any]]):
        """The account's log-in."""

        email = TextField(max_length=254)
        password = TextField(max_length=4096, trim_whitespace=False)

    @extend_schema_serializer(component_name="Token")
    class OutputSerializer(serializers.Serializer[dict[str, Any]]):
        """The token to send as `Authorization: Token <token>`."""

        token = serializers.CharField()
        email = serializers.EmailField()
        name = serializers.CharField()

    @extend_schema(
        operation_id="auth_token_create",
        tags=["auth"],
        request=InputSerializer,
        responses={200: OutputSerializer, **error_responses(400, 401, 429)},
        auth=[],
    )
    def post(self, request: Request) -> Response:
        """Returns the token; failed attempts are throttled like the log-in page's."""
        credentials = TokenCreateApi.InputSerializer(data=plain_values(request.data))
        credentials.is_valid(raise_exception=True)
        try:
            token = api_services.auth_token_issue(
                request=request._request,
                email=credentials.validated_data["email"],
                password=credentials.validated_data["password"],
            )
        except api_services.LoginThrottled as throttled:
            raise ApiError(
                throttled.message,
                status_code=status.HTTP_429_TOO_MANY_REQUESTS,
                reason="LOGIN_THROTTLED",
                retry_after_s=throttled.retry_after_s,
            ) from None
        except api_services.LoginFailed as failed:
            raise ApiError(
                failed.message, status_code=status.HTTP_401_UNAUTHORIZED, reason="LOGIN_FAILED"
            ) from None
        user = token.user
        data = {"token": token.key, "email": user.email, "name": getattr(user, "name", "")}
        return Response(TokenCreateApi.OutputSerializer(data).data)


# --- anything else under /api/v1/ ----------------------------------------------------------------


@csrf_exempt
def not_found(request: HttpRequest, *args: Any, **kwargs: Any) -> JsonResponse:
    """Answers a URL under /api/v1/ that names no endpoint, in the API's error shape."""
    message = "No such endpoint."
    if not request.path.endswith("/"):
        message = "No such endpoint. The API's URLs end with a slash."
    body = error_body(http_status=404, message=message, request_id=request_id_of(request))
    return JsonResponse(body, status=404)
