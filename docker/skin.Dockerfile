# medimg/skin:0.1.0: the skin service (`python -m skin_service`), gRPC on 50061.
# Build from the repository root: docker build -f docker/skin.Dockerfile -t medimg/skin:0.1.0 .
# (`make images` builds every image.) Bases are pinned by exact tag; no digest could be looked
# up where this was written: docker/README.md says how to add one.
# The image holds the shipped demo SavedModel (the `embedded` backend's default); in the
# cluster the service runs with SKIN_BACKEND=tfserving and TF Serving holds the model.

# Build stage: the project with the base dependencies and the `skin` extra only (TensorFlow,
# Keras, the TF Serving API), installed as a package, not editable, into a venv.
FROM docker.io/library/python:3.11.14-slim-bookworm AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml README.md ./
COPY protos/ protos/
COPY servicekit/ servicekit/
COPY medimg_cli/ medimg_cli/
COPY skin_service/ skin_service/
RUN pip install --no-cache-dir ".[skin]"

# Runtime stage: the same base (the venv's python links to its interpreter), the venv, a
# non-root user. No HEALTHCHECK: Kubernetes probes grpc.health.v1 on the service port.
FROM docker.io/library/python:3.11.14-slim-bookworm AS runtime
RUN groupadd --gid 10001 medimg \
    && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin medimg
COPY --from=build /opt/venv /opt/venv
# HOST: a container is reached on its own address, never on loopback. HOME: Keras keeps its
# config under ~/.keras, so it goes to /tmp (an emptyDir under a read-only root filesystem).
# PYTHONSAFEPATH: the working directory never shadows the installed packages.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONSAFEPATH=1 \
    HOME=/tmp \
    SKIN_HOST=0.0.0.0 \
    SKIN_PORT=50061
USER 10001:10001
EXPOSE 50061
ENTRYPOINT ["python", "-m", "skin_service"]
