# medimg/mri-model:0.1.0: the MRI models as TorchServe archives, for an init container.
# Build from the repository root:
#   docker build -f docker/mri-model.Dockerfile -t medimg/mri-model:0.1.0 .
# (`make images` builds every image.) Bases are pinned by exact tag; no digest could be looked
# up where this was written: docker/README.md says how to add one.
#
# The image holds /artifacts/model-store/mri-single.mar and mri-scantype.mar, packed from the
# very weights the embedded backend loads. The init container mounts an emptyDir at
# TorchServe's model store /home/model-server/model-store and runs the default command.

# Archive stage: `python -m mri_service.archive` needs numpy and Pillow (the project's base
# dependencies) and torch-model-archiver, which only zips files: torch is not imported, so it
# is not installed. The archiver's pin is the `torchserve` extra's; the TorchServe server in
# that extra is left out (the official TorchServe image runs the archives).
FROM docker.io/library/python:3.11.14-slim-bookworm AS archive
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml README.md ./
COPY protos/ protos/
COPY servicekit/ servicekit/
COPY medimg_cli/ medimg_cli/
COPY mri_service/ mri_service/
RUN pip install --no-cache-dir . "torch-model-archiver==0.12.0"
RUN python -m mri_service.archive --model-dir mri_service/models/mri-demo \
        --out /artifacts/model-store \
    && test -f /artifacts/model-store/mri-single.mar \
    && test -f /artifacts/model-store/mri-scantype.mar

# Final stage: busybox (for `cp`) and the archives, nothing else; read-only to the user.
FROM docker.io/library/busybox:1.37.0 AS artifact
COPY --from=archive /artifacts/model-store/ /artifacts/model-store/
USER 10001:10001
CMD ["sh", "-c", "cp /artifacts/model-store/*.mar /home/model-server/model-store/"]
