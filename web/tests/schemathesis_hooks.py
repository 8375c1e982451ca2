"""Schemathesis hooks for the contract test: data the schema describes but cannot generate.

Loaded by `st run` through SCHEMATHESIS_HOOKS (web/tests/test_api_contract.py). The schema
states the form of each input; some inputs are valid only if their content is right too,
which no JSON Schema can say. Schemathesis then generates well-formed but useless data and
counts the API's 400 as "valid data rejected". These generators make what the schema's
descriptions ask for, so that positive cases really are valid (schemathesis's own advice
for `validation_mismatch`: extend the generators to match the runtime rules):

- `image/jpeg`, `image/png` (the multipart `image`): real photos of several sizes;
- `application/zip` (the multipart `series`): zips of a DICOM study (the MRI phantom);
- `image_url`: a positive case's http(s) URL gets the host and port of the image server the
  test runs on loopback (the web tier may fetch from it: the test sets
  WEB_IMAGE_URL_ALLOW_NETWORKS to that address); no other host answers here. Only the host
  and port: whatever else the schema lets through (scheme, user info, path, length) is sent
  as generated, so a schema looser than the API still fails the run;
- `date_from` after `date_to` (a documented 400): swapped in positive cases.

Negative cases are left as generated: they must still be refused.
"""

from __future__ import annotations

import datetime as dt
import io
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import schemathesis
from hypothesis import strategies as st
from PIL import Image, ImageDraw

from mri_service.phantom import PhantomSpec, generate_series, write_series_zip

IMAGE_BASE_ENV = "CONTRACT_IMAGE_BASE"  # set by test_api_contract.py: the image server
_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


@st.composite
def photos(draw: st.DrawFn, image_format: str) -> bytes:
    """Returns a JPEG or PNG of a dark blob on skin tones, of a drawn size."""
    width = draw(st.integers(min_value=16, max_value=320))
    height = draw(st.integers(min_value=16, max_value=320))
    skin = draw(st.tuples(*[st.integers(min_value=120, max_value=240)] * 3))
    image = Image.new("RGB", (width, height), skin)
    ImageDraw.Draw(image).ellipse(
        (width // 4, height // 4, 3 * width // 4, 3 * height // 4), fill=(92, 58, 40)
    )
    buffer = io.BytesIO()
    image.save(buffer, format=image_format)
    return buffer.getvalue()


def series_zips() -> list[bytes]:
    """Returns two small studies: one with a lesion (it has key images), one without."""
    zips = []
    with tempfile.TemporaryDirectory(prefix="medimg-contract-") as folder:
        for lesion in (True, False):
            spec = PhantomSpec(slices=4, size=64, lesion=lesion, seed=7)
            path = write_series_zip(generate_series(spec), Path(folder) / f"{lesion}.zip")
            zips.append(path.read_bytes())
    return zips


def _positive(case: schemathesis.Case[Any]) -> bool:
    return case.meta is None or case.meta.generation.mode.is_positive


def _date(value: Any) -> dt.date | None:
    if isinstance(value, str) and _ISO_DATE.fullmatch(value):
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            return None
    return None


def ordered_date_range(ctx: schemathesis.HookContext, case: schemathesis.Case[Any]) -> Any:
    """Swaps `date_from` and `date_to` of a positive case when the range ends before it starts."""
    if not _positive(case):
        return case
    query = case.query or {}
    start, end = _date(query.get("date_from")), _date(query.get("date_to"))
    if start is not None and end is not None and start > end:
        query["date_from"], query["date_to"] = query["date_to"], query["date_from"]
    return case


def on_image_server(url: str, server: str) -> str:
    """Returns `url` with its host and port replaced by `server`'s; anything else unchanged."""
    scheme, separator, rest = url.partition("://")
    if not separator or scheme.lower() not in ("http", "https"):
        return url
    end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    user_info, at, host = rest[:end].rpartition("@")
    if not host:
        return url  # no host to replace: the API refuses it, and so must the schema
    # The image server speaks plain HTTP, whatever scheme the case drew.
    return f"http://{user_info}{at}{server}{rest[end:]}"


def fetchable_image_url(ctx: schemathesis.HookContext, case: schemathesis.Case[Any]) -> Any:
    """Points a positive case's `image_url` at the loopback image server."""
    server = os.environ.get(IMAGE_BASE_ENV, "").removeprefix("http://").rstrip("/")
    body = case.body
    url = body.get("image_url") if isinstance(body, dict) else None
    if server and _positive(case) and isinstance(body, dict) and isinstance(url, str):
        body["image_url"] = on_image_server(url, server)
    return case


def _map_case(operation_id: str, hook: Callable[..., Any]) -> None:
    """Registers `hook` as the `map_case` hook of one operation (schemathesis is untyped here)."""
    register: Any = schemathesis.hook("map_case")
    register.apply_to(operation_id=operation_id)(hook)


_map_case("diagnoses_list", ordered_date_range)
_map_case("diagnoses_create", fetchable_image_url)
schemathesis.openapi.media_type("image/jpeg", photos("JPEG"))
schemathesis.openapi.media_type("image/png", photos("PNG"))
schemathesis.openapi.media_type(
    "application/zip", st.sampled_from(series_zips()), aliases=["application/x-zip-compressed"]
)
