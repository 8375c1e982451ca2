"""Input fields that take exactly what the schema states, and nothing more that DRF would take."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from django.core.validators import ProhibitNullCharactersValidator, RegexValidator
from rest_framework import serializers

_DIGITS = re.compile(r"[0-9]+")
_FULL_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


class QueryIntegerField(serializers.IntegerField):
    """An integer query parameter in decimal digits only, as the schema's `integer` says.

    DRF's IntegerField also takes "1.0", " 7", "+3" and "1_0"; the schema promises none of
    them, so no client comes to rely on them.
    """

    def to_internal_value(self, data: Any) -> int:
        """Returns the value as an int; anything but decimal digits is `invalid`."""
        if not isinstance(data, str) or not _DIGITS.fullmatch(data):
            self.fail("invalid")
        return int(super().to_internal_value(data))


class QueryDateField(serializers.DateField):
    """A day as YYYY-MM-DD only, the schema's `format: date` (RFC 3339 full-date).

    DRF's DateField also takes "2026-1-5", "20260105" and ISO week dates ("2026-W02-1").
    """

    def to_internal_value(self, value: Any) -> dt.date:
        """Returns the day; any other spelling is `invalid`, with the one format to use."""
        if not isinstance(value, str) or not _FULL_DATE.fullmatch(value):
            self.fail("invalid", format="YYYY-MM-DD")
        return super().to_internal_value(value)


# DRF's CharField refuses NUL characters (ProhibitNullCharactersValidator) in every field,
# which the schema cannot show; the same rule as a pattern, it can.
NO_NULL_CHARACTERS = RegexValidator(r"^[^\x00]*$", message="Null characters are not allowed.")


class TextField(serializers.CharField):
    """A CharField whose schema states its refusal of NUL characters, as a `pattern`."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.validators = [
            *(v for v in self.validators if not isinstance(v, ProhibitNullCharactersValidator)),
            NO_NULL_CHARACTERS,
        ]
