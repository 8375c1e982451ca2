"""AIP-158 pages over a sorted listing: page sizes, and opaque tokens that name the last key."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Sequence
from typing import TypeVar

from servicekit.errors import InvalidArgument

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
# A version prefix inside the token, so that a later format can tell its own tokens apart.
_TOKEN_PREFIX = "v1:"  # noqa: S105  (a page token's format, not a secret)

T = TypeVar("T")


def page_token(last_key: str) -> str:
    """Returns the opaque token of the page that starts after last_key."""
    return base64.urlsafe_b64encode(f"{_TOKEN_PREFIX}{last_key}".encode()).decode().rstrip("=")


def token_key(token: str) -> str:
    """Returns the key a page token was made from; InvalidArgument when it is not one of ours."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raw = ""
    if not raw.startswith(_TOKEN_PREFIX) or len(raw) == len(_TOKEN_PREFIX):
        raise InvalidArgument("page_token is not a token this service returned")
    return raw[len(_TOKEN_PREFIX) :]


def page_size(requested: int) -> int:
    """Returns the page size to use for a request's page_size (AIP-158: 0 is the default)."""
    if requested < 0:
        raise InvalidArgument(f"page_size must not be negative, got {requested}")
    return min(requested or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


def page(
    items: Sequence[T], key: Callable[[T], str], requested_size: int, token: str
) -> tuple[list[T], str]:
    """Returns one page of items (sorted by key, keys unique) and the next page's token.

    The token names the last key of the page rather than a position, so an item added
    or removed between two calls neither repeats nor hides any other item.
    """
    size = page_size(requested_size)
    after = token_key(token) if token else None
    remaining = [item for item in items if after is None or key(item) > after]
    chunk = remaining[:size]
    next_token = page_token(key(chunk[-1])) if len(remaining) > size else ""
    return chunk, next_token
