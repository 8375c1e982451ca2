"""Reads what a medimg server attaches to a failed call's status: the ErrorInfo reason."""

from __future__ import annotations

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status


def error_reason(call: grpc.Call) -> str:
    """Returns the ErrorInfo reason the server attached, or "" when there is none."""
    try:
        status = rpc_status.from_call(call)
    except ValueError:
        return ""
    if status is None:
        return ""
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            return str(info.reason)
    return ""
