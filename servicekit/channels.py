"""Client channel options and call status shared by the backends that call a model server."""

from __future__ import annotations

import grpc

# The model server, not the client, decides how large a request may be; and a
# headless Service name resolves to every model-server pod, so calls are spread over
# all of them (gRPC's default, pick_first, would send every call to one pod).
MODEL_SERVER_CHANNEL_OPTIONS: tuple[tuple[str, int | str], ...] = (
    ("grpc.max_send_message_length", -1),
    ("grpc.max_receive_message_length", -1),
    ("grpc.lb_policy_name", "round_robin"),
)


def call_status(exc: grpc.RpcError) -> tuple[grpc.StatusCode, str]:
    """Returns a failed call's code and details ("" when none).

    An RpcError that is not a Call (raised before the call started) is UNKNOWN, with
    the error's text as its details.
    """
    if isinstance(exc, grpc.Call):
        return exc.code(), exc.details() or ""
    return grpc.StatusCode.UNKNOWN, str(exc)
