"""Serves the web tier's ASGI application with daphne on WEB_HOST:WEB_PORT.

With SQLite (the development default) it applies migrations first, so a fresh clone
needs no other command; with PostgreSQL the deployment's migration Job does that.
"""

from __future__ import annotations

import logging
import os

from servicekit.settings import env_bool, env_int, env_str

logger = logging.getLogger("web")


def main() -> None:
    """Prepares the database when asked to, then serves until SIGTERM or SIGINT."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "web.config.settings")
    host = env_str(os.environ, "WEB_HOST", "127.0.0.1")
    port = env_int(os.environ, "WEB_PORT", 8000, minimum=0, maximum=65535)
    # daphne.server installs Twisted's asyncio reactor: before anything else imports Twisted.
    import django
    from daphne.endpoints import build_endpoint_description_strings
    from daphne.server import Server
    from django.core.management import call_command

    from web.config.bootstrap import prepare_local_state, uses_sqlite

    django.setup()
    prepare_local_state()
    if env_bool(os.environ, "WEB_MIGRATE_ON_START", uses_sqlite()):
        call_command("migrate", interactive=False, verbosity=0)
        logger.info("database migrated")

    from web.config.asgi import application

    def ready() -> None:
        logger.info("web serving on http://%s:%d", host, port)

    Server(
        application=application,
        endpoints=build_endpoint_description_strings(host=host, port=port),
        signal_handlers=True,
        application_close_timeout=10,
        websocket_timeout=86400,
        ready_callable=ready,
        server_name="medimg",
        verbosity=0,
    ).run()


if __name__ == "__main__":
    main()
