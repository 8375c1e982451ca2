"""The current call's request id, carried in a context variable and forwarded as metadata."""

from __future__ import annotations

import contextlib
import re
import uuid
from contextvars import ContextVar

REQUEST_ID_KEY = "x-request-id"

# Ids come from callers: keep them short and printable so they are safe in logs.
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_request_id: ContextVar[str] = ContextVar("medimg_request_id", default="")


def current_request_id() -> str:
    """Returns the request id of the call being served, or "" outside a call."""
    return _request_id.get()


def set_request_id(request_id: str) -> object:
    """Makes request_id current and returns a token for `reset_request_id`."""
    return _request_id.set(request_id)


def reset_request_id(token: object) -> None:
    """Restores the request id that was current before `set_request_id`."""
    # A streaming handler may be finalised in another context than the one it began in;
    # that context dies with the call, so there is nothing to restore.
    with contextlib.suppress(ValueError):
        _request_id.reset(token)  # type: ignore[arg-type]  # token comes from set_request_id


def new_request_id() -> str:
    """Returns a fresh random request id."""
    return uuid.uuid4().hex


def accept_request_id(candidate: str | None) -> str:
    """Returns the caller's id when it is well-formed, else a fresh one."""
    if candidate and _VALID_REQUEST_ID.match(candidate):
        return candidate
    return new_request_id()


def outgoing_metadata() -> tuple[tuple[str, str], ...]:
    """Returns the metadata that passes the current request id on to the next hop."""
    request_id = current_request_id()
    return ((REQUEST_ID_KEY, request_id),) if request_id else ()
