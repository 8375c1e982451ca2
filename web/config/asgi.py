"""The ASGI application: Django for HTTP, Channels for websockets (`python -m web` serves it)."""

from __future__ import annotations

import os

from channels.auth import AuthMiddlewareStack
from channels.routing import ProtocolTypeRouter, URLRouter
from channels.security.websocket import AllowedHostsOriginValidator
from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "web.config.settings")
# Django first: it sets up the apps that the websocket routes import.
django_application = get_asgi_application()

from web.config.routing import websocket_urlpatterns  # noqa: E402  (needs the apps ready)

application = ProtocolTypeRouter(
    {
        "http": django_application,
        "websocket": AllowedHostsOriginValidator(
            AuthMiddlewareStack(URLRouter(websocket_urlpatterns))
        ),
    }
)
