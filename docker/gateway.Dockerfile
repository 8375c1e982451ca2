# medimg/gateway:0.1.0: the gateway (`python -m gateway`), gRPC on 50051.
# Build from the repository root: docker build -f docker/gateway.Dockerfile -t medimg/gateway:0.1.0 .
# (`make images` builds every image.) Bases are pinned by exact tag; no digest could be looked
# up where this was written: docker/README.md says how to add one.

# Build stage: the project and the base dependencies only (the `gateway` extra adds nothing),
# installed as a package, not editable, into a venv that the runtime stage copies whole.
FROM docker.io/library/python:3.11.14-slim-bookworm AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml README.md ./
COPY protos/ protos/
COPY servicekit/ servicekit/
COPY medimg_cli/ medimg_cli/
COPY gateway/ gateway/
RUN pip install --no-cache-dir ".[gateway]"

# Runtime stage: the same base (the venv's python links to its interpreter), the venv, a
# non-root user. No HEALTHCHECK: Kubernetes probes grpc.health.v1 on the service port.
FROM docker.io/library/python:3.11.14-slim-bookworm AS runtime
RUN groupadd --gid 10001 medimg \
    && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin medimg \
    && mkdir -p /var/lib/medimg/gateway \
    && chown 10001:10001 /var/lib/medimg/gateway
COPY --from=build /opt/venv /opt/venv
# HOST: a container is reached on its own address, never on loopback. HOME: libraries that
# keep a cache find /tmp writable (an emptyDir under a read-only root filesystem).
# PYTHONSAFEPATH: the working directory never shadows the installed packages.
# GATEWAY_STATE_DIR holds the routes added at run time; under a read-only root filesystem
# mount a volume there (an emptyDir, or a persistent volume to keep them across restarts).
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONSAFEPATH=1 \
    HOME=/tmp \
    GATEWAY_HOST=0.0.0.0 \
    GATEWAY_PORT=50051 \
    GATEWAY_STATE_DIR=/var/lib/medimg/gateway
USER 10001:10001
EXPOSE 50051
ENTRYPOINT ["python", "-m", "gateway"]
