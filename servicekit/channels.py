"""Client channel options shared by the backends that call a model server over gRPC."""

from __future__ import annotations

# The model server, not the client, decides how large a request may be; and a
# headless Service name resolves to every model-server pod, so calls are spread over
# all of them (gRPC's default, pick_first, would send every call to one pod).
MODEL_SERVER_CHANNEL_OPTIONS: tuple[tuple[str, int | str], ...] = (
    ("grpc.max_send_message_length", -1),
    ("grpc.max_receive_message_length", -1),
    ("grpc.lb_policy_name", "round_robin"),
)
