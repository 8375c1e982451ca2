"""The base class of every API operation: who may call it and how often, what it speaks."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from django.http import QueryDict
from rest_framework.authentication import (
    BaseAuthentication,
    SessionAuthentication,
    TokenAuthentication,
)
from rest_framework.exceptions import NotAuthenticated
from rest_framework.parsers import BaseParser, JSONParser, MultiPartParser
from rest_framework.permissions import IsAuthenticated
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import BaseThrottle
from rest_framework.views import APIView

from web.accounts.models import User
from web.api.exceptions import exception_handler
from web.api.throttles import DEFAULT_THROTTLES

if TYPE_CHECKING:
    from rest_framework.permissions import _PermissionClass


class ApiView(APIView):
    """An operation of /api/v1/: token or session log-in, JSON in and out, one error shape.

    Declared here rather than left to REST_FRAMEWORK's defaults, so that the API means
    the same whatever other apps set globally. Token comes first: a request without
    credentials is answered 401 with `WWW-Authenticate: Token`, not 403. A session
    request that writes must send its CSRF token (SessionAuthentication checks it).
    """

    authentication_classes: Sequence[type[BaseAuthentication]] = (
        TokenAuthentication,
        SessionAuthentication,
    )
    permission_classes: Sequence[_PermissionClass] = (IsAuthenticated,)
    renderer_classes: Sequence[type[BaseRenderer]] = (JSONRenderer,)
    parser_classes: Sequence[type[BaseParser]] = (JSONParser, MultiPartParser)
    # Per user, per anonymous address, and uploads (web/api/throttles.py): 429 + Retry-After.
    throttle_classes: Sequence[type[BaseThrottle]] = DEFAULT_THROTTLES

    def get_exception_handler(self) -> Callable[[Exception, Mapping[str, Any]], Response]:
        """Returns the API's one exception handler."""
        return exception_handler


def api_user(request: Request) -> User:
    """Returns the authenticated caller (IsAuthenticated lets nobody else reach the views)."""
    user = request.user
    if not isinstance(user, User):
        raise NotAuthenticated
    return user


def plain_values(data: Any) -> Any:
    """Returns a query string's or form's values as a plain dict (the last of repeated ones).

    DRF reads a QueryDict as an HTML form, where an empty value of an optional field counts
    as absent (`date_to=`, or a multipart `disease` of "" taken as the default "skin"); the
    schema says neither, so the API validates the values as sent. A JSON body is as it is.
    """
    return data.dict() if isinstance(data, QueryDict) else data
