"""Websocket routes: the series and teach apps add theirs here (consumers authenticate)."""

from __future__ import annotations

from typing import Any

# e.g. path("ws/series/<int:pk>/", SeriesProgressConsumer.as_asgi()),
websocket_urlpatterns: list[Any] = []
