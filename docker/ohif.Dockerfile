# medimg/ohif:0.1.0: the OHIF Viewer 3.13.2 (the prebuilt static app of the npm package
# @ohif/app, no build step) served by unprivileged nginx on 8080, with the PACS's DICOMweb
# API proxied under /dicom-web/ of the same origin (docker/ohif/default.conf.template).
# Build from the repository root:
#   docker build -f docker/ohif.Dockerfile -t medimg/ohif:0.1.0 .
# (`make images` builds every image.) Bases are pinned by exact tag; no digest could be looked
# up where this was written: docker/README.md says how to add one.

# Fetch stage: the package's tarball from the npm registry, checked against the sha512 the
# registry published for 3.13.2 (`npm view @ohif/app@3.13.2 dist.integrity`, as hex), so
# that the image holds exactly the files that were looked at. Only dist/ is kept. The
# bundled app-config.js points the viewer at OHIF's public demo server: it is removed, so
# the viewer never silently sends a hospital's browsers there; the configuration is mounted
# (a ConfigMap in the cluster, k8s/components/ohif-viewer/app-config.js).
FROM docker.io/library/node:22.12.0-bookworm-slim AS fetch
WORKDIR /fetch
RUN npm pack --silent @ohif/app@3.13.2 \
    && echo "5997719a9986eeba85816f5924b71b82bdd70ad2e2d4a0cd3e831a798e4f3deea3e06e1f8c48e393271933a0ba664d85f3b04ac457e9abe8dde715d907d13c10  ohif-app-3.13.2.tgz" \
       | sha512sum -c - \
    && tar -xzf ohif-app-3.13.2.tgz package/dist \
    && rm package/dist/app-config.js \
    && test -f package/dist/index.html

# Final stage: nginx (the unprivileged build: no root, no port below 1024, its pid and temp
# files under /tmp), the static app, and the server's template. The conf.d folder, where
# the entrypoint writes the server from the template, goes to the runtime user; the rest
# stays root's. No HEALTHCHECK: Kubernetes probes /healthz.
FROM docker.io/nginxinc/nginx-unprivileged:1.28.0-alpine AS runtime
USER root
RUN rm -f /etc/nginx/conf.d/default.conf \
    && mkdir -p /etc/nginx/conf.d \
    && chown 10001:10001 /etc/nginx/conf.d
COPY --from=fetch /fetch/package/dist/ /usr/share/nginx/html/
COPY docker/ohif/default.conf.template /etc/nginx/templates/default.conf.template
# Only the viewer's own variables are substituted into the template: nginx's $uri and the
# like stay as they are. OHIF_DICOMWEB_URL has no default: the cluster (or `docker run -e`)
# names the PACS, and without it nginx refuses the configuration and does not start.
ENV NGINX_ENVSUBST_FILTER=^OHIF_
USER 10001:10001
EXPOSE 8080
