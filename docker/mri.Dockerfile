# medimg/mri:0.1.0: the MRI series service (`python -m mri_service`), gRPC on 50062.
# Build from the repository root: docker build -f docker/mri.Dockerfile -t medimg/mri:0.1.0 .
# (`make images` builds every image.) Bases are pinned by exact tag; no digest could be looked
# up where this was written: docker/README.md says how to add one.
# The image holds the shipped demo weights (the `embedded` backend's default); in the cluster
# the service runs with MRI_BACKEND=torchserve and TorchServe holds the models on the GPU.

# Build stage: the project with the base dependencies and the `mri` extra only.
FROM docker.io/library/python:3.11.14-slim-bookworm AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# torch first, from PyTorch's CPU wheel index alone: PyPI's Linux torch is the CUDA build
# (gigabytes of nvidia-* wheels). With --index-url pip cannot fall back to PyPI's build;
# the pin is the `mri` extra's, and the 2.13.0+cpu wheel satisfies it, so the project's
# install below keeps it. The check fails the build if a CUDA build got in anyway.
RUN pip install --no-cache-dir --index-url https://download.pytorch.org/whl/cpu "torch==2.13.0" \
    && python -c "import sys, torch; sys.exit(torch.version.cuda is not None)"
WORKDIR /src
COPY pyproject.toml README.md ./
COPY protos/ protos/
COPY servicekit/ servicekit/
COPY medimg_cli/ medimg_cli/
COPY mri_service/ mri_service/
RUN pip install --no-cache-dir ".[mri]"

# Runtime stage: the same base (the venv's python links to its interpreter), the venv, a
# non-root user. No HEALTHCHECK: Kubernetes probes grpc.health.v1 on the service port.
FROM docker.io/library/python:3.11.14-slim-bookworm AS runtime
RUN groupadd --gid 10001 medimg \
    && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin medimg
COPY --from=build /opt/venv /opt/venv
# HOST: a container is reached on its own address, never on loopback. HOME and TMPDIR's
# default: torch's caches and the uploaded series' spool go to /tmp (an emptyDir under a
# read-only root filesystem; size it for the largest series, see mri_service/README.md).
# PYTHONSAFEPATH: the working directory never shadows the installed packages.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONSAFEPATH=1 \
    HOME=/tmp \
    MRI_HOST=0.0.0.0 \
    MRI_PORT=50062
USER 10001:10001
EXPOSE 50062
ENTRYPOINT ["python", "-m", "mri_service"]
