"""Reads of the API that are not the diagnoses app's: the models the gateway routes to."""

from __future__ import annotations

from web.gateway_client import RegisteredModel, get_gateway


def model_list() -> list[RegisteredModel]:
    """Returns every disease the gateway routes to and its model; raises GatewayError."""
    return get_gateway().list_models()
