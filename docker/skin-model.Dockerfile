# medimg/skin-model:0.1.0: the skin SavedModel in TF Serving's layout, for an init container.
# Build from the repository root:
#   docker build -f docker/skin-model.Dockerfile -t medimg/skin-model:0.1.0 .
# (`make images` builds every image.) Bases are pinned by exact tag; no digest could be looked
# up where this was written: docker/README.md says how to add one.
#
# TF Serving loads numeric version folders under its model base path (/models/skin for
# MODEL_NAME=skin), so the image holds /artifacts/skin/1/{saved_model.pb,variables/,...}.
# The init container mounts an emptyDir at /models/skin and runs the default command, which
# copies every version folder there; TF Serving mounts the same emptyDir read-only.

# Layout stage: the version folder, checked to be a SavedModel, so that a renamed or empty
# folder fails the build rather than the pod.
FROM docker.io/library/busybox:1.37.0 AS layout
COPY skin_service/models/skin-demo/1/ /artifacts/skin/1/
RUN test -f /artifacts/skin/1/saved_model.pb \
    && test -f /artifacts/skin/1/variables/variables.index

# Final stage: busybox (for `cp`) and the model, nothing else; files read-only to the user.
FROM docker.io/library/busybox:1.37.0 AS artifact
COPY --from=layout /artifacts/skin/ /artifacts/skin/
USER 10001:10001
CMD ["sh", "-c", "cp -R /artifacts/skin/* /models/skin/"]
