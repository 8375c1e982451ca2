"""The OpenAPI schema as the contract: schemathesis against the live API on the real stack.

The web tier runs as in production (`python -m web`, web/tests' siblings in tests/bench
start it the same way) on SQLite, with the real gateway, skin service (demo model) and MRI
service (demo models) behind it, so every operation answers for real: uploads are
diagnosed, series are checked and analysed. `st run --checks all` then generates requests
from /api/v1/schema/ in every phase (examples, coverage, fuzzing, and stateful, which
follows the schema's links from the create operations to the `{id}` ones with real ids)
and checks each answer against the schema: status codes, headers, media types, bodies,
and that valid data is accepted and invalid data refused. Any failure fails the test.

The seed is random and printed; API_CONTRACT_SEED=<seed> runs the same cases again.
web/tests/schemathesis_hooks.py generates the inputs whose content the schema cannot
describe (images, study zips, fetchable image URLs); web/api/README.md says more.
"""

from __future__ import annotations

import io
import json
import os
import re
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageDraw

from mri_service.settings import DEFAULT_MODEL_DIR
from tests.bench.web_load import CREATE_TOKEN, WebDatabase, manage, start_web, web_env
from tests.support.processes import ROOT, Process, start, start_gateway, wait_until_serving
from tests.test_skin_e2e import MODEL_DIR, START_TIMEOUT_S
from tests.tfserving_fake.fixture_model import shipped_model_present

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not shipped_model_present(), reason="the shipped skin demo model is absent"),
    pytest.mark.skipif(
        not (DEFAULT_MODEL_DIR / "model_card.json").is_file(),
        reason="the shipped MRI demo models are absent",
    ),
]

SCHEMA_PATH = "/api/v1/schema/?format=json"
HOOKS_MODULE = "web.tests.schemathesis_hooks"
# The image server's origin, for the hooks (read there under the same name); the module is
# not imported here: loading it registers schemathesis hooks, which is for `st run` only.
IMAGE_BASE_ENV = "CONTRACT_IMAGE_BASE"
SEED_ENV = "API_CONTRACT_SEED"
# Cases per operation and phase: the whole run stays near a minute on two cores.
MAX_EXAMPLES = 25
RUN_TIMEOUT_S = 240
LINKS_LINE = re.compile(r"API Links:\s+(\d+) covered / (\d+) selected")


@dataclass
class LiveApi:
    """The web tier on a loopback port, with the gateway, skin and MRI services behind it."""

    web: Process
    token: str

    @property
    def base_url(self) -> str:
        """Returns the web tier's origin."""
        return f"http://127.0.0.1:{self.web.port}"


class _ImageHandler(BaseHTTPRequestHandler):
    """Answers every GET with a photo: a PNG for paths ending .png, else a JPEG."""

    def do_GET(self) -> None:
        image_format = "PNG" if self.path.endswith(".png") else "JPEG"
        image = Image.new("RGB", (200, 150), (222, 176, 152))
        ImageDraw.Draw(image).ellipse((60, 40, 140, 110), fill=(92, 58, 40))
        buffer = io.BytesIO()
        image.save(buffer, format=image_format)
        body = buffer.getvalue()
        self.send_response(200)
        self.send_header("Content-Type", f"image/{image_format.lower()}")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Says nothing: the test's output is schemathesis's."""


@contextmanager
def image_server() -> Iterator[str]:
    """Serves photos on a loopback port for `image_url`; yields its origin."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ImageHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def live_api(scratch: Path) -> Iterator[LiveApi]:
    """Starts the stack (both services at once), migrates a SQLite database, yields the API."""
    (scratch / "spool").mkdir(parents=True)
    skin = start("skin", "skin_service", "SKIN_", env={"SKIN_MODEL_DIR": str(MODEL_DIR)})
    mri = start("mri", "mri_service", "MRI_", env={"MRI_SPOOL_DIR": str(scratch / "spool")})
    started: list[Process] = [skin, mri]
    try:
        wait_until_serving(skin, timeout=START_TIMEOUT_S)
        wait_until_serving(mri, timeout=90)
        gateway = start_gateway(
            f"skin=image@{skin.address};mri=series@{mri.address}", scratch / "gateway"
        )
        started.append(gateway)
        database = WebDatabase(f"sqlite:///{scratch / 'db.sqlite3'}", "SQLite (WAL)")
        env = {
            **web_env(database, gateway, scratch),
            # The test's image server is on loopback, which image_url may not reach
            # elsewhere; the setting exists for tests and private deployments.
            "WEB_IMAGE_URL_ALLOW_NETWORKS": "127.0.0.1/32",
            "WEB_IMAGE_URL_TIMEOUT_SECONDS": "5",
            # Every request comes from this one address (anonymous ones too: the check
            # that credentials are required sends some, and the token endpoint's): raised
            # so the run reaches the logic behind the rates, still counted and enforced.
            "WEB_API_RATE_ANON": "1000000/minute",
            "WEB_API_RATE_TOKEN": "1000000/minute",
        }
        manage(env, "migrate", "--no-input")
        token = manage(env, "shell", "-c", CREATE_TOKEN).strip().splitlines()[-1]
        web = start_web(env)
        started.append(web)
        yield LiveApi(web, token)
    finally:
        for process in reversed(started):
            process.terminate()


def schemathesis_command(api: LiveApi, report: Path, seed: int) -> list[str]:
    """Returns the `st run` command line: every check, every phase, a bounded case count."""
    return [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "run",
        f"{api.base_url}{SCHEMA_PATH}",
        "--header",
        f"Authorization: Token {api.token}",
        "--checks",
        "all",
        "--phases",
        "examples,coverage,fuzzing,stateful",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--seed",
        str(seed),
        "--workers",
        "2",
        "--request-timeout",
        "30",
        # Examples found in one run are not replayed in the next: each run stands alone.
        "--generation-database",
        "none",
        "--report",
        "json",
        "--report-json-path",
        str(report),
        "--no-color",
    ]


def links_covered(output: str) -> tuple[int, int]:
    """Returns (covered, total) of the stateful phase's "API Links:" line, else (0, 0)."""
    found = LINKS_LINE.search(output)
    return (int(found[1]), int(found[2])) if found else (0, 0)


def summary(report: dict[str, Any], links: tuple[int, int], seconds: float, seed: int) -> str:
    """Returns the run in one line: operations, cases, failures, links, time and seed."""
    cases, operations = report["test_cases"], report["operations"]
    return (
        f"schemathesis: {operations['tested']}/{operations['total']} operations tested, "
        f"{cases['generated']} cases generated, {cases['unique_failures']} failures, "
        f"{len(report['errors'])} errors, {links[0]}/{links[1]} links followed, "
        f"{seconds:.0f} s, seed {seed}"
    )


def unreached(report: dict[str, Any]) -> list[str]:
    """Returns the `{id}` operations that never answered but 404: no real id reached them.

    2xx (`accepted`) or 409 (`conflicts`: a retry of a record that did not fail) means a
    real id got there; schemathesis reuses the ids that the stateful links capture.
    """
    return [
        operation
        for operation, phases in report["valid_rates"].items()
        if "{" in operation
        and not any(rates["accepted"] + rates["conflicts"] for rates in phases.values())
    ]


def test_the_live_api_keeps_its_openapi_schema(tmp_path: Path) -> None:
    seed = int(os.environ.get(SEED_ENV) or secrets.randbits(64))
    report_path = tmp_path / "schemathesis.json"
    with image_server() as images, live_api(tmp_path / "stack") as api:
        began = time.monotonic()
        completed = subprocess.run(
            schemathesis_command(api, report_path, seed),
            cwd=tmp_path,  # whatever schemathesis writes stays out of the checkout
            env={
                **os.environ,
                "PYTHONPATH": str(ROOT),
                "SCHEMATHESIS_HOOKS": HOOKS_MODULE,
                IMAGE_BASE_ENV: images,
            },
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT_S,
        )
        seconds = time.monotonic() - began
        web_log = api.web.log()
    output = completed.stdout + completed.stderr
    assert report_path.is_file(), output
    report = json.loads(report_path.read_text())
    links = links_covered(completed.stdout)
    line = summary(report, links, seconds, seed)
    print(line)
    failed = f"{line}\n{output[-20000:]}\nweb log:\n{web_log[-5000:]}"
    assert report["complete"] and report["stop_reason"] == "completed", failed
    assert report["operations"]["tested"] == report["operations"]["total"], failed
    assert report["test_cases"]["unique_failures"] == 0, failed
    assert not report["errors"], failed
    assert completed.returncode == 0, failed
    phases = {name: phase["status"] for name, phase in report["phases"].items()}
    assert phases["coverage"] == phases["fuzzing"] == phases["stateful"] == "success", failed
    # The stateful phase followed the schema's links, and real ids reached every `{id}` one.
    assert links[0] > 0, failed
    assert not unreached(report), failed
