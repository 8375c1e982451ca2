"""The Django (ASGI) web tier of medimg: pages, REST API and websockets in front of the gateway."""
