# medimg/dicom-receiver:0.1.0: the DICOM receiver (`python -m dicom_receiver`), a C-STORE SCP
# on 11112 that a PACS sends studies to; it analyses them through the gateway (AnalyzeSeries,
# gRPC) and sends the results back to the PACS by C-STORE.
# Build from the repository root:
#   docker build -f docker/dicom-receiver.Dockerfile -t medimg/dicom-receiver:0.1.0 .
# (`make images` builds every image.) Bases are pinned by exact tag; no digest could be looked
# up where this was written: docker/README.md says how to add one.

# Build stage: the project with the base dependencies (grpcio and the generated medimg.v1
# stubs the gateway client needs) and the `dicom` extra only (pynetdicom, pydicom), installed
# as a package, not editable, into a venv that the runtime stage copies whole.
FROM docker.io/library/python:3.11.14-slim-bookworm AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml README.md ./
COPY protos/ protos/
COPY servicekit/ servicekit/
COPY medimg_cli/ medimg_cli/
COPY dicom_receiver/ dicom_receiver/
RUN pip install --no-cache-dir ".[dicom]"

# Runtime stage: the same base (the venv's python links to its interpreter), the venv, a
# non-root user. No HEALTHCHECK: Kubernetes probes the DICOM port.
FROM docker.io/library/python:3.11.14-slim-bookworm AS runtime
RUN groupadd --gid 10001 medimg \
    && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin medimg \
    && mkdir -p /var/spool/medimg/dicom \
    && chown 10001:10001 /var/spool/medimg/dicom
COPY --from=build /opt/venv /opt/venv
# BIND_ADDRESS: the receiver's own default is loopback, which a PACS outside the container
# cannot reach. HOME: caches go to /tmp (an emptyDir under a read-only root filesystem).
# PYTHONSAFEPATH: the working directory never shadows the installed packages.
# DICOM_SPOOL_DIR holds incoming studies until they are stable and analysed; under a
# read-only root filesystem mount a volume there (the cluster mounts a claim).
# The AE title, the gateway's address and the PACS that receives results come from the
# cluster's ConfigMap, never from the image.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONSAFEPATH=1 \
    HOME=/tmp \
    DICOM_BIND_ADDRESS=0.0.0.0 \
    DICOM_PORT=11112 \
    DICOM_SPOOL_DIR=/var/spool/medimg/dicom
USER 10001:10001
EXPOSE 11112
ENTRYPOINT ["python", "-m", "dicom_receiver"]
