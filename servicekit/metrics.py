"""Prometheus metrics shared by every service: calls, latency, errors, batches, queue depth."""

from __future__ import annotations

import logging

from prometheus_client import Counter, Gauge, Histogram, start_http_server

logger = logging.getLogger(__name__)

_LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)

GRPC_CALLS = Counter(
    "medimg_grpc_calls",
    "gRPC calls served, by method and status code.",
    ["component", "method", "code"],
)
GRPC_ERRORS = Counter(
    "medimg_grpc_errors",
    "gRPC calls that ended with a status other than OK, by code.",
    ["component", "method", "code"],
)
GRPC_LATENCY = Histogram(
    "medimg_grpc_call_duration_seconds",
    "Time from the start of a call to its status, by method.",
    ["component", "method"],
    buckets=_LATENCY_BUCKETS,
)
BATCH_SIZE = Histogram(
    "medimg_batch_size",
    "Inputs per model call made by the dynamic batcher.",
    ["batcher"],
    buckets=_BATCH_BUCKETS,
)
QUEUE_DEPTH = Gauge(
    "medimg_batcher_queue_depth",
    "Inputs waiting in the dynamic batcher's queue.",
    ["batcher"],
)
BATCHER_REJECTED = Counter(
    "medimg_batcher_rejected",
    "Inputs refused or dropped by the batcher, by reason (queue_full, deadline_passed).",
    ["batcher", "reason"],
)


def record_call(component: str, method: str, code: str, seconds: float) -> None:
    """Counts one finished call and its duration."""
    GRPC_CALLS.labels(component, method, code).inc()
    GRPC_LATENCY.labels(component, method).observe(seconds)
    if code != "OK":
        GRPC_ERRORS.labels(component, method, code).inc()


def start_metrics_server(host: str, port: int) -> int:
    """Serves /metrics over HTTP; returns the bound port (port 0 picks a free one)."""
    server, _thread = start_http_server(port, addr=host)
    bound = int(server.server_address[1])
    logger.info("metrics on http://%s:%d/metrics", host, bound)
    return bound
