# medimg/trainer:0.1.0: the teachable machine (`python -m trainer_service`), gRPC on 50063.
# Build from the repository root: docker build -f docker/trainer.Dockerfile -t medimg/trainer:0.1.0 .
# (`make images` builds every image.) Bases are pinned by exact tag; no digest could be looked
# up where this was written: docker/README.md says how to add one.
# The image holds no model: users train them, and the service keeps projects, examples,
# jobs and published models under TRAINER_DATA_DIR (a persistent volume in the cluster).

# Build stage: the project with the base dependencies and the `trainer` extra only.
FROM docker.io/library/python:3.11.14-slim-bookworm AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# torch first, from PyTorch's CPU wheel index alone, as in mri.Dockerfile: training runs on
# the pod's CPUs, and PyPI's Linux torch is the CUDA build (gigabytes of nvidia-* wheels).
# The pin is the `trainer` extra's; the 2.13.0+cpu wheel satisfies it, so the project's
# install below keeps it. The check fails the build if a CUDA build got in anyway.
RUN pip install --no-cache-dir --index-url https://download.pytorch.org/whl/cpu "torch==2.13.0" \
    && python -c "import sys, torch; sys.exit(torch.version.cuda is not None)"
WORKDIR /src
COPY pyproject.toml README.md ./
COPY protos/ protos/
COPY servicekit/ servicekit/
COPY medimg_cli/ medimg_cli/
COPY trainer_service/ trainer_service/
RUN pip install --no-cache-dir ".[trainer]"

# Runtime stage: the same base (the venv's python links to its interpreter), the venv, a
# non-root user. No HEALTHCHECK: Kubernetes probes grpc.health.v1 on the service port.
FROM docker.io/library/python:3.11.14-slim-bookworm AS runtime
RUN groupadd --gid 10001 medimg \
    && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin medimg \
    && mkdir -p /var/lib/medimg/trainer \
    && chown 10001:10001 /var/lib/medimg/trainer
COPY --from=build /opt/venv /opt/venv
# HOST: a container is reached on its own address, never on loopback. HOME: torch's caches
# go to /tmp (an emptyDir under a read-only root filesystem). PYTHONSAFEPATH: the working
# directory never shadows the installed packages.
# TRAINER_DATA_DIR holds every project, example, job and published model; the default
# (var/trainer under the working directory, here /) is not writable. Mount a persistent
# volume there to keep them: a restart otherwise loses every project and published model.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONSAFEPATH=1 \
    HOME=/tmp \
    TRAINER_HOST=0.0.0.0 \
    TRAINER_PORT=50063 \
    TRAINER_DATA_DIR=/var/lib/medimg/trainer
USER 10001:10001
EXPOSE 50063
ENTRYPOINT ["python", "-m", "trainer_service"]
