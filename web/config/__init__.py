"""The Django project's configuration: settings, URLs and the ASGI application."""
