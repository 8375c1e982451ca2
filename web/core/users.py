"""The signed-in user of a page request, typed (LoginRequiredMiddleware admits no one else)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest

if TYPE_CHECKING:
    from web.accounts.models import User


def signed_in_user(request: HttpRequest) -> User:
    """Returns the request's user; an anonymous one here means a view escaped the middleware."""
    user = request.user
    if not user.is_authenticated:
        raise PermissionDenied
    return user
