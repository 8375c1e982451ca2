"""OHIF Viewer against a real Orthanc holding a phantom study and medimg's DICOM result."""

# How OHIF is served, and why not from Orthanc's ServeFolders: the prebuilt @ohif/app
# bundle is compiled for the root path (index.html loads "/app.bundle.*.js" and its
# webpack runtime fetches chunks from "/"), and its router needs every unknown path
# (/viewer?StudyInstanceUIDs=...) answered with index.html. ServeFolders can only serve
# under a prefix (/ohif/) and answers 404 for /ohif/viewer. So, as nginx does in a
# deployment (docs/viewer/README.md), a small front server serves the viewer at "/", our
# docs/viewer/app-config.js at /app-config.js, and forwards /dicom-web/ to Orthanc: one
# origin for the browser, no CORS, no rewriting of OHIF's files. Its headers are those of
# docs/viewer/nginx.conf (and of the cluster's nginx, docker/ohif/default.conf.template).

from __future__ import annotations

import functools
import http.client
import http.server
import threading
import urllib.parse
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mri_service import domain, fusion
from mri_service.backends import read_card
from mri_service.backends.embedded import EmbeddedBackend
from mri_service.fusion import SliceResult
from mri_service.ingest import load_study
from mri_service.phantom import PhantomSpec, generate_series, write_series_zip
from mri_service.report import build_reports
from tests.support.install import installed_tool
from tests.support.orthanc import Orthanc, running_orthanc
from tests.support.processes import ROOT

APP_CONFIG = ROOT / "docs" / "viewer" / "app-config.js"
MODEL_DIR = ROOT / "mri_service" / "models" / "mri-demo"
# Small but real: 4 phases x 8 slices of 128 px (the models' input size). Seed 1 is a study
# where the shipped demo models flag two adjacent slices, one of them by the fusion rule.
PHANTOM = PhantomSpec(slices=8, size=128, seed=1)
DICOMWEB_PREFIX = "/dicom-web/"
# Request headers that concern one hop only (RFC 9110 7.6.1), never forwarded.
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)


@dataclass(frozen=True)
class AnalysedStudy:
    """A phantom study, its analysis by the shipped models, and the DICOM result of it."""

    study_uid: str
    images: tuple[bytes, ...]  # every phase's Part 10 files
    measurement_report: bytes  # TID 1500 Comprehensive 3D SR
    key_images: bytes  # Key Object Selection, b"" when no slice is flagged
    results: tuple[SliceResult, ...]

    @property
    def flagged(self) -> tuple[SliceResult, ...]:
        """Returns the slices whose fused decision is positive."""
        return tuple(r for r in self.results if r.positive)


@dataclass(frozen=True)
class Viewer:
    """OHIF served at `url` (same origin as Orthanc's DICOMweb), and the study it shows."""

    url: str
    orthanc: Orthanc
    study: AnalysedStudy

    def study_url(self) -> str:
        """Returns the viewer's URL that opens the study in the default mode."""
        query = urllib.parse.urlencode({"StudyInstanceUIDs": self.study.study_uid})
        return f"{self.url}/viewer?{query}"


def analyse_phantom(folder: Path, spec: PhantomSpec = PHANTOM) -> AnalysedStudy:
    """Generates the study and analyses it as mri_service does, with the shipped models.

    The same steps as MriSeriesServicer.AnalyzeSeries, in this process to spare a gRPC
    server: the zip read by ingestion, both models run by the embedded (torch) backend,
    BreastWise's fusion, then mri_service.report builds the SR and the KOS.
    """
    card = read_card(MODEL_DIR)
    zip_path = write_series_zip(generate_series(spec), folder / "study.zip")
    loaded = load_study(zip_path, card.input_size, with_attributes=True)
    probabilities = {}
    for name, batch in domain.model_inputs(loaded.planes).items():
        backend = EmbeddedBackend(MODEL_DIR, name)
        backend.load()
        probabilities[name] = backend.predict(batch).reshape(-1)
    results = fusion.analyse(probabilities, card.threshold)
    if loaded.attributes is None:
        raise RuntimeError("load_study returned no patient and study attributes")
    reports = build_reports(results, card, loaded.study, loaded.attributes)
    with zipfile.ZipFile(zip_path) as archive:
        images = tuple(archive.read(name) for name in sorted(archive.namelist()))
    return AnalysedStudy(
        study_uid=loaded.study.study_uid,
        images=images,
        measurement_report=reports.measurement_report,
        key_images=reports.key_images,
        results=tuple(results),
    )


class _FrontHandler(http.server.SimpleHTTPRequestHandler):
    """Serves OHIF's files at "/", our app-config.js, and forwards /dicom-web/ to Orthanc."""

    # Set on a subclass per server: where Orthanc listens, and the config file served.
    upstream: tuple[str, int] = ("127.0.0.1", 8042)
    app_config: Path = APP_CONFIG
    extensions_map = {  # noqa: RUF012 - the base declares it an instance attribute
        **http.server.SimpleHTTPRequestHandler.extensions_map,
        ".js": "text/javascript",
        ".mjs": "text/javascript",
        ".wasm": "application/wasm",
    }

    def do_GET(self) -> None:
        """Answers a viewer file, the config, index.html for a route, or Orthanc's answer."""
        path = urllib.parse.urlsplit(self.path).path
        if path.startswith(DICOMWEB_PREFIX):
            self._forward()
        elif path == "/app-config.js":
            self._send_file(self.app_config, "text/javascript")
        elif Path(self.translate_path(path)).is_file():
            super().do_GET()
        else:
            # An OHIF route (/viewer, /viewer/dicomweb...): the single-page app answers it.
            self._send_file(Path(self.directory) / "index.html", "text/html")

    def do_POST(self) -> None:
        """Forwards a POST under /dicom-web/ (STOW-RS); refuses the rest."""
        if urllib.parse.urlsplit(self.path).path.startswith(DICOMWEB_PREFIX):
            self._forward()
        else:
            self.send_error(405)

    def end_headers(self) -> None:
        """Makes the viewer's pages cross-origin isolated, as the cluster's nginx does.

        OHIF uses SharedArrayBuffer (multi-threaded decoding) only in an isolated page;
        every resource is on this origin, so require-corp blocks nothing.
        """
        if not self.path.startswith(DICOMWEB_PREFIX):
            self.send_header("Cross-Origin-Opener-Policy", "same-origin")
            self.send_header("Cross-Origin-Embedder-Policy", "require-corp")
        super().end_headers()

    def _send_file(self, path: Path, content_type: str) -> None:
        body = path.read_bytes()
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def _forward(self) -> None:
        """Sends the request on to Orthanc and its whole answer back (studies are small)."""
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        # The browser's Host goes on, as nginx's `proxy_set_header Host $http_host` does:
        # Orthanc writes the BulkDataURIs of its metadata from it, so they point here.
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
        connection = http.client.HTTPConnection(*self.upstream, timeout=60)
        try:
            connection.request(self.command, self.path, body=body, headers=headers)
            answer = connection.getresponse()
            payload = answer.read()
            self.send_response(answer.status, answer.reason)
            for key, value in answer.getheaders():
                if key.lower() not in _HOP_BY_HOP and key.lower() != "content-length":
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        finally:
            connection.close()

    def log_message(self, format: str, *args: object) -> None:
        """Keeps the test's output quiet: Playwright's trace says what was fetched."""


@dataclass
class FrontServer:
    """The one origin the browser sees: OHIF at "/", Orthanc's DICOMweb at /dicom-web/."""

    server: http.server.ThreadingHTTPServer
    thread: threading.Thread

    @property
    def url(self) -> str:
        """Returns http://127.0.0.1:PORT, without a trailing slash."""
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        """Stops serving and closes the socket."""
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


def start_front_server(dist: Path, orthanc: Orthanc, app_config: Path = APP_CONFIG) -> FrontServer:
    """Starts the front server on a free loopback port, in a daemon thread."""

    class Handler(_FrontHandler):
        upstream = ("127.0.0.1", orthanc.http_port)

    Handler.app_config = app_config
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Handler, directory=str(dist))
    )
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="ohif-front", daemon=True)
    thread.start()
    return FrontServer(server, thread)


@pytest.fixture(scope="session")
def ohif_dist() -> Path:
    """Installs OHIF's prebuilt app with the project's script; fails, never skips, if it cannot."""
    dist = installed_tool("install_ohif.sh", "OHIF is needed by the viewer test", timeout_s=600)
    return Path(dist)


@pytest.fixture(scope="module")
def analysed_study(tmp_path_factory: pytest.TempPathFactory) -> AnalysedStudy:
    """The phantom study with the SR and KOS that medimg's analysis of it produced."""
    return analyse_phantom(tmp_path_factory.mktemp("analysed"))


@pytest.fixture(scope="module")
def viewer(
    tmp_path_factory: pytest.TempPathFactory, ohif_dist: Path, analysed_study: AnalysedStudy
) -> Iterator[Viewer]:
    """Orthanc holding the study, its SR and its KOS; OHIF in front of it on one origin."""
    with running_orthanc(tmp_path_factory.mktemp("orthanc")) as orthanc:
        documents = [analysed_study.measurement_report, analysed_study.key_images]
        for payload in (*analysed_study.images, *documents):
            if payload:
                orthanc.upload(payload)
        front = start_front_server(ohif_dist, orthanc)
        try:
            yield Viewer(front.url, orthanc, analysed_study)
        finally:
            front.close()
