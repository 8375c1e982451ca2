"""The rule every disease name follows: one definition for the gateway, the services and the web."""

from __future__ import annotations

import re

# As a regular expression a whole name must match (no anchors: fullmatch, or add ^...$).
DISEASE_PATTERN = r"[a-z][a-z0-9-]{0,62}"
DISEASE_RULE = (
    "lower-case letters, digits and dashes, starting with a letter, at most 63 characters"
)
_DISEASE = re.compile(DISEASE_PATTERN)


def is_disease_name(name: str) -> bool:
    """Tells whether name follows DISEASE_RULE."""
    return _DISEASE.fullmatch(name) is not None
