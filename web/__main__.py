"""Serves the web tier's ASGI application with uvicorn on WEB_HOST:WEB_PORT.

With SQLite (the development default) it applies migrations first, so a fresh clone
needs no other command; with PostgreSQL the deployment's migration Job does that.

WEB_WORKERS=N (default 1) serves with N processes sharing one listening socket; uvicorn
restarts a worker that dies. One process runs Python on one core at a time, so a host
with spare cores serves more uploads per second with more workers; in Kubernetes, more
pods do the same.

Why uvicorn (with httptools and uvloop) rather than daphne: on the upload path daphne's
pure-Python HTTP parsing (Twisted, which also parses every multipart body a second time)
cost about 4 ms of the web tier's 17 ms of CPU per upload; uvicorn took 13 ms
(`python -m tests.bench.web_load`, 2 workers each). Channels' websockets run the same
under either.
"""

from __future__ import annotations

import logging
import os

from servicekit.settings import env_bool, env_int, env_str

logger = logging.getLogger("web")

APPLICATION = "web.config.asgi:application"
DEFER_WORKER_ENV = "WEB_DEFER_SERIES_WORKER"  # read by web.series.worker.serving_process


def main() -> None:
    """Prepares the database when asked to, then serves until SIGTERM or SIGINT."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "web.config.settings")
    host = env_str(os.environ, "WEB_HOST", "127.0.0.1")
    port = env_int(os.environ, "WEB_PORT", 8000, minimum=0, maximum=65535)
    workers = env_int(os.environ, "WEB_WORKERS", 1, minimum=1, maximum=64)
    import django
    import uvicorn

    # The series worker thread must not poll an unmigrated database, nor run in the
    # process that only supervises workers: it is started below, or by each worker.
    os.environ[DEFER_WORKER_ENV] = "1"
    django.setup()
    prepare_database()
    del os.environ[DEFER_WORKER_ENV]
    from django.conf import settings

    from web.series import worker

    if workers == 1 and worker.serving_process():
        worker.start_worker()  # uvicorn serves from this process

    logger.info("web serving on http://%s:%d with %d worker(s)", host, port, workers)
    uvicorn.run(
        APPLICATION,
        host=host,
        port=port,
        workers=workers,
        http="httptools",
        loop="uvloop",
        ws="websockets-sansio",
        # The largest websocket message the server reads; consumers enforce their own
        # smaller caps and close with a reason (see web/teach).
        ws_max_size=settings.WEB_WS_MAX_MESSAGE_BYTES,
        # Client addresses come from web.accounts.throttle.client_address, which trusts
        # X-Forwarded-For only as WEB_TRUSTED_PROXY_COUNT says; the server must not rewrite them.
        proxy_headers=False,
        server_header=False,
        lifespan="off",
        timeout_graceful_shutdown=10,
        log_config=None,  # Django's LOGGING applies
        access_log=False,
    )


def prepare_database() -> None:
    """Creates local state folders and, with SQLite by default, applies migrations."""
    from django.core.management import call_command
    from django.db import connections

    from web.config.bootstrap import prepare_local_state, uses_sqlite

    prepare_local_state()
    if env_bool(os.environ, "WEB_MIGRATE_ON_START", uses_sqlite()):
        call_command("migrate", interactive=False, verbosity=0)
        logger.info("database migrated")
    connections.close_all()


if __name__ == "__main__":
    main()
