"""Websocket routes: the series and teach apps add theirs here (consumers authenticate)."""

from __future__ import annotations

from typing import Any

from django.urls import path

from web.teach.consumers import PredictionConsumer, TrainingConsumer

websocket_urlpatterns: list[Any] = [
    path("ws/teach/<uuid:pk>/training/", TrainingConsumer.as_asgi()),
    path("ws/teach/<uuid:pk>/predict/", PredictionConsumer.as_asgi()),
]
