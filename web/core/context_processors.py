"""Template context every page gets: the product's name and the demo-model warning."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest

# Shown wherever a result is: the shipped models are demonstrations.
DEMO_MODEL_WARNING = (
    "Results come from demonstration models trained on generated images: not for clinical use."
)


def site(request: HttpRequest) -> dict[str, str]:
    """Returns the site-wide template variables.

    `product_name`, not `site_name`: Django's auth views put the request's host name
    in `site_name`, which would otherwise replace the product's name on their pages.
    """
    return {"product_name": settings.WEB_SITE_NAME, "demo_model_warning": DEMO_MODEL_WARNING}
