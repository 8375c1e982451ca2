# medimg/web:0.1.0: the Django web tier (`python -m web`, ASGI), HTTP on 8000, /healthz.
# Build from the repository root: docker build -f docker/web.Dockerfile -t medimg/web:0.1.0 .
# (`make images` builds every image.) Bases are pinned by exact tag; no digest could be looked
# up where this was written: docker/README.md says how to add one.
# Written to the web tier's contract (docker/README.md) before web/ exists: it builds once
# web/ lands as a package installed by pyproject.toml, with web/manage.py beside it.
# Migrations are not run here: the cluster's migration Job runs this image with the command
# `python web/manage.py migrate --noinput` (the working directory makes that path resolve).

# Build stage: the project with the base dependencies and the `web` extra only, installed as
# a package, not editable, into a venv; then the static files, collected into the venv so
# that the runtime stage still copies one folder (WhiteNoise serves them from there).
FROM docker.io/library/python:3.11.14-slim-bookworm AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    WEB_STATIC_ROOT=/opt/venv/share/medimg-web/static
WORKDIR /src
COPY pyproject.toml README.md ./
COPY protos/ protos/
COPY servicekit/ servicekit/
COPY medimg_cli/ medimg_cli/
COPY web/ web/
RUN pip install --no-cache-dir ".[web]"
# collectstatic needs the settings to load and nothing else: no database, no gateway. The
# throwaway SECRET_KEY lives in this one command, never in the image's environment.
RUN SECRET_KEY=collectstatic-only-not-a-secret python web/manage.py collectstatic --noinput

# Runtime stage: the same base (the venv's python links to its interpreter), the venv with
# the static files, a non-root user. No HEALTHCHECK: Kubernetes probes /healthz.
FROM docker.io/library/python:3.11.14-slim-bookworm AS runtime
RUN groupadd --gid 10001 medimg \
    && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin medimg
COPY --from=build /opt/venv /opt/venv
# HOST: a container is reached on its own address, never on loopback. HOME: caches go to
# /tmp (an emptyDir under a read-only root filesystem). PYTHONSAFEPATH: the working
# directory never shadows the installed packages. SECRET_KEY, DATABASE_URL, REDIS_URL and
# the rest come from the cluster's Secret and ConfigMap, never from the image.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONSAFEPATH=1 \
    HOME=/tmp \
    WEB_STATIC_ROOT=/opt/venv/share/medimg-web/static \
    WEB_HOST=0.0.0.0 \
    WEB_PORT=8000
# The installed packages' folder, so that `python web/manage.py …` (the migration Job, an
# operator's `createsuperuser`) finds the installed web/manage.py. Read-only, like the rest.
WORKDIR /opt/venv/lib/python3.11/site-packages
USER 10001:10001
EXPOSE 8000
ENTRYPOINT ["python", "-m", "web"]
