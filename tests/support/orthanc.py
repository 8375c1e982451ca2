"""Starts a real Orthanc PACS on loopback for tests, from a JSON config of its own in a temp folder.

```python
from tests.support.orthanc import running_orthanc

with running_orthanc(tmp_path / "orthanc", modalities={"medimg": ("MEDIMG", "127.0.0.1", 11112)},
                     serve_folders={"/ohif": ohif_dist}) as orthanc:
    orthanc.http_url      # "http://127.0.0.1:<port>": REST API; DICOMweb at f"{http_url}/dicom-web"
    orthanc.dicom_port    # its DICOM port on 127.0.0.1; orthanc.aet is its AE title
    orthanc.upload(path_or_bytes)          # POST /instances: {"ID", "ParentStudy", "Status", ...}
    orthanc.get_json("/studies")           # any REST GET, answer parsed
    orthanc.post_json("/modalities/medimg/store", {"Resources": [study_id], "Synchronous": True})
    orthanc.qido("/studies", {"PatientID": "X"})   # QIDO-RS: a list of DICOM JSON datasets
    orthanc.get_bytes(f"/instances/{id}/file")     # raw answer of a GET (a Part-10 file here)
    orthanc.log()                          # what Orthanc printed so far
```

`running_orthanc(folder, *, aet, modalities, serve_folders, extra_config, timeout_s)` is a
context manager usable from a pytest fixture. It writes `folder/orthanc.json` (storage and
SQLite index in `folder/storage`, log in `folder/orthanc.log`) with:

- `HttpPort` and `DicomPort`: free loopback ports;
- `RemoteAccessAllowed: false`, `AuthenticationEnabled: false`: no password, and Orthanc
  itself answers 401 to any HTTP client that is not on the machine;
- the DICOMweb plugin at `/dicom-web/` (QIDO-RS, WADO-RS, STOW-RS), and when `serve_folders`
  is given the ServeFolders plugin mapping each URL root (such as "/ohif") to a folder, so a
  viewer is served from the same origin as `/dicom-web`;
- `modalities`: `DicomModalities`, name -> (AE title, host, port), the peers Orthanc may
  C-STORE to (`POST /modalities/<name>/store`); stores from any AE are accepted
  (`DicomAlwaysAllowStore`, Orthanc's default) as a PACS accepts a modality's results;
- `StableAge` 1 s (tests do not wait a minute) and no saved jobs; `extra_config` is merged
  last and wins, for anything else.

**Loopback only.** Orthanc 1.10 has no option to choose the address it listens on: both
its HTTP server (civetweb, `HttpPort` only) and its DICOM server (DCMTK) bind 0.0.0.0, as
`ss -ltnp` shows. Here it is started with a tiny `LD_PRELOAD` library, compiled on first
use with the system C compiler into the folder, whose `bind()` turns the wildcard address
into 127.0.0.1 (and `::` into `::1`); `ss -ltnp` then lists `127.0.0.1:<port>` for both.
Without a C compiler it still starts, bound to 0.0.0.0 (`Orthanc.loopback_only` is False,
and a warning says so): HTTP from other hosts is still refused by `RemoteAccessAllowed`.

Orthanc itself comes from `scripts/install_dicom_tools.sh`, which `orthanc_binary()` runs
when it is missing (as a fresh CI machine needs); the context manager stops Orthanc with
SIGTERM on exit (SIGKILL after 15 s).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.processes import ROOT, free_port

INSTALL_SCRIPT = ROOT / "scripts" / "install_dicom_tools.sh"
PLUGIN_DIR = Path("/usr/share/orthanc/plugins")
DICOMWEB_PLUGIN = PLUGIN_DIR / "libOrthancDicomWeb.so"
SERVE_FOLDERS_PLUGIN = PLUGIN_DIR / "libServeFolders.so"
DICOMWEB_ROOT = "/dicom-web/"

# bind() of the wildcard address becomes loopback: Orthanc 1.10 cannot be told where to listen.
LOOPBACK_SHIM_C = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

int bind(int fd, const struct sockaddr *addr, socklen_t len) {
    static int (*real_bind)(int, const struct sockaddr *, socklen_t);
    if (!real_bind)
        real_bind = (int (*)(int, const struct sockaddr *, socklen_t))dlsym(RTLD_NEXT, "bind");
    if (addr && addr->sa_family == AF_INET && len >= sizeof(struct sockaddr_in)) {
        struct sockaddr_in copy;
        memcpy(&copy, addr, sizeof copy);
        if (copy.sin_addr.s_addr == htonl(INADDR_ANY))
            copy.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        return real_bind(fd, (const struct sockaddr *)&copy, sizeof copy);
    }
    if (addr && addr->sa_family == AF_INET6 && len >= sizeof(struct sockaddr_in6)) {
        struct sockaddr_in6 copy;
        memcpy(&copy, addr, sizeof copy);
        if (memcmp(&copy.sin6_addr, &in6addr_any, sizeof in6addr_any) == 0)
            copy.sin6_addr = in6addr_loopback;
        return real_bind(fd, (const struct sockaddr *)&copy, sizeof copy);
    }
    return real_bind(fd, addr, len);
}
"""


class OrthancError(RuntimeError):
    """Orthanc could not be installed or started, or a REST call failed; says which."""


def orthanc_binary() -> str:
    """Returns the Orthanc executable, installing it with the project script when missing."""
    found = shutil.which("Orthanc")
    if found and DICOMWEB_PLUGIN.is_file():
        return found
    done = subprocess.run(
        [str(INSTALL_SCRIPT)], capture_output=True, text=True, timeout=600, check=False
    )
    found = shutil.which("Orthanc")
    if done.returncode != 0 or not found or not DICOMWEB_PLUGIN.is_file():
        raise OrthancError(
            f"Orthanc is needed and {INSTALL_SCRIPT.name} could not install it "
            f"(exit {done.returncode}): {(done.stderr or done.stdout).strip()[-2000:]}"
        )
    return found


def loopback_shim(folder: Path) -> Path | None:
    """Compiles the bind()-to-loopback library into folder; None without a C compiler."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        return None
    source, library = folder / "loopback_bind.c", folder / "loopback_bind.so"
    source.write_text(LOOPBACK_SHIM_C, encoding="utf-8")
    built = subprocess.run(
        [compiler, "-shared", "-fPIC", "-O2", "-o", str(library), str(source), "-ldl"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return library if built.returncode == 0 else None


def orthanc_config(
    folder: Path,
    *,
    http_port: int,
    dicom_port: int,
    aet: str,
    modalities: Mapping[str, tuple[str, str, int]],
    serve_folders: Mapping[str, Path],
    extra_config: Mapping[str, Any],
) -> dict[str, Any]:
    """Returns the JSON config of a test Orthanc (pure: nothing is written or started)."""
    plugins = [str(DICOMWEB_PLUGIN)]
    if serve_folders:
        plugins.append(str(SERVE_FOLDERS_PLUGIN))
    storage = str(folder / "storage")
    config: dict[str, Any] = {
        "Name": f"medimg-test-{aet}",
        "StorageDirectory": storage,
        "IndexDirectory": storage,
        "HttpPort": http_port,
        "DicomPort": dicom_port,
        "DicomAet": aet,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "HttpDescribeErrors": True,
        "Plugins": plugins,
        "DicomWeb": {"Enable": True, "Root": DICOMWEB_ROOT, "EnableWado": False},
        "DicomModalities": {name: list(peer) for name, peer in modalities.items()},
        "DicomAlwaysAllowStore": True,
        "DicomAlwaysAllowEcho": True,
        "DicomScuTimeout": 30,
        # Tests never wait Orthanc's default minute for a study to become stable.
        "StableAge": 1,
        "SaveJobs": False,
        "JobsHistorySize": 100,
        "StorageCompression": False,
    }
    if serve_folders:
        config["ServeFolders"] = {
            "AllowCache": False,
            "GenerateETag": True,
            # A modern viewer (OHIF) ships ES modules and WebAssembly; browsers insist on types.
            "Extensions": {
                ".mjs": "text/javascript",
                ".wasm": "application/wasm",
                ".map": "application/json",
                ".webmanifest": "application/manifest+json",
            },
            "Folders": {root: str(Path(path).resolve()) for root, path in serve_folders.items()},
        }
    config.update(extra_config)
    return config


@dataclass
class Orthanc:
    """A running Orthanc on loopback and small helpers for its REST and DICOMweb APIs."""

    folder: Path
    http_port: int
    dicom_port: int
    aet: str
    popen: subprocess.Popen[bytes]
    loopback_only: bool

    @property
    def http_url(self) -> str:
        """Returns the base URL of the REST API, such as http://127.0.0.1:8042."""
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def dicomweb_url(self) -> str:
        """Returns the DICOMweb root, such as http://127.0.0.1:8042/dicom-web."""
        return f"{self.http_url}{DICOMWEB_ROOT.rstrip('/')}"

    @property
    def log_path(self) -> Path:
        """Returns the file Orthanc's output goes to."""
        return self.folder / "orthanc.log"

    def log(self) -> str:
        """Returns what Orthanc printed so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        timeout_s: float = 60.0,
    ) -> bytes:
        """Sends one HTTP request to a path of this Orthanc and returns the body of a 2xx answer.

        Raises OrthancError with the status and Orthanc's message otherwise.
        """
        url = path if path.startswith("http") else f"{self.http_url}{path}"
        request = urllib.request.Request(url, data=body, method=method, headers=dict(headers or {}))
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as answer:
                data: bytes = answer.read()
                return data
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")[:2000]
            raise OrthancError(f"{method} {path}: HTTP {exc.code}: {detail}") from None

    def get_bytes(self, path: str, *, accept: str | None = None) -> bytes:
        """Returns the raw answer of a GET, such as `/instances/<id>/file`."""
        return self.request("GET", path, headers={"Accept": accept} if accept else None)

    def get_json(self, path: str) -> Any:
        """Returns the parsed answer of a REST GET, such as `/studies` or `/system`."""
        return json.loads(self.request("GET", path))

    def post_json(self, path: str, body: Any, *, timeout_s: float = 120.0) -> Any:
        """POSTs body as JSON (a str is sent as is) and returns the parsed answer."""
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        answer = self.request(
            "POST",
            path,
            data,
            headers={"Content-Type": "application/json"},
            timeout_s=timeout_s,
        )
        return json.loads(answer) if answer.strip() else None

    def delete(self, path: str) -> None:
        """Deletes a resource, such as `/studies/<id>`."""
        self.request("DELETE", path)

    def upload(self, dicom: Path | bytes) -> dict[str, Any]:
        """Stores one Part-10 file through POST /instances; returns Orthanc's answer.

        The answer holds "ID" (the instance), "ParentStudy", "ParentSeries" and "Status"
        ("Success" or "AlreadyStored"); a file Orthanc refuses raises OrthancError.
        """
        data = dicom.read_bytes() if isinstance(dicom, Path) else dicom
        answer = self.request(
            "POST", "/instances", data, headers={"Content-Type": "application/dicom"}
        )
        parsed: dict[str, Any] = json.loads(answer)
        return parsed

    def upload_folder(self, folder: Path) -> list[dict[str, Any]]:
        """Uploads every file under folder (sorted), returning Orthanc's answers."""
        return [self.upload(path) for path in sorted(folder.rglob("*")) if path.is_file()]

    def qido(self, path: str, params: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
        """Returns a QIDO-RS search (DICOM JSON), such as qido("/studies/<uid>/series").

        path is relative to the DICOMweb root; params are the query's matching keys and
        options (`{"ModalitiesInStudy": "SR", "includefield": "all"}`).
        """
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        answer = self.get_bytes(
            f"{DICOMWEB_ROOT.rstrip('/')}/{path.lstrip('/')}{query}",
            accept="application/dicom+json",
        )
        found: list[dict[str, Any]] = json.loads(answer) if answer.strip() else []
        return found

    def find_study(self, study_instance_uid: str) -> str | None:
        """Returns Orthanc's ID of the study with this StudyInstanceUID, None when absent."""
        # /tools/lookup answers [{"ID", "Type", "Path"}] for a UID of any level.
        found = self.post_json("/tools/lookup", study_instance_uid)
        for item in found or []:
            if item.get("Type") == "Study":
                return str(item["ID"])
        return None

    def wait_until_up(self, timeout_s: float) -> None:
        """Waits until GET /system answers; raises OrthancError with the log if it never does."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise OrthancError(f"Orthanc exited with {self.popen.returncode}:\n{self.log()}")
            try:
                self.get_json("/system")
                return
            except (OSError, OrthancError):
                time.sleep(0.1)
        raise OrthancError(f"Orthanc's REST API did not answer in {timeout_s} s:\n{self.log()}")

    def stop(self, timeout_s: float = 15.0) -> int:
        """Stops Orthanc with SIGTERM (SIGKILL after timeout_s) and returns its exit code."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        return self.popen.returncode


@contextmanager
def running_orthanc(
    folder: Path,
    *,
    aet: str = "ORTHANC",
    modalities: Mapping[str, tuple[str, str, int]] | None = None,
    serve_folders: Mapping[str, Path] | None = None,
    extra_config: Mapping[str, Any] | None = None,
    timeout_s: float = 30.0,
) -> Iterator[Orthanc]:
    """Runs Orthanc on loopback from a config written into folder; stops it on exit.

    See the module's docstring for what the config holds. folder is created if needed and
    keeps the storage, the index, the config and the log (left for a failing test to read).
    """
    binary = orthanc_binary()
    folder.mkdir(parents=True, exist_ok=True)
    for root, path in (serve_folders or {}).items():
        if not root.startswith("/") or not Path(path).is_dir():
            raise OrthancError(f"serve_folders: {root!r} must start with / and name a folder")
    http_port, dicom_port = free_port(), free_port()
    config = orthanc_config(
        folder,
        http_port=http_port,
        dicom_port=dicom_port,
        aet=aet,
        modalities=modalities or {},
        serve_folders=serve_folders or {},
        extra_config=extra_config or {},
    )
    config_path = folder / "orthanc.json"
    config_path.write_text(json.dumps(config, indent=2), encoding="utf-8")
    shim = loopback_shim(folder)
    if shim is None:
        warnings.warn(
            "no C compiler: Orthanc listens on 0.0.0.0 (remote HTTP is still refused)",
            stacklevel=3,
        )
    env = dict(os.environ)
    if shim is not None:
        env["LD_PRELOAD"] = " ".join(p for p in (str(shim), env.get("LD_PRELOAD", "")) if p)
    with (folder / "orthanc.log").open("wb") as log_file:
        popen = subprocess.Popen(
            [binary, str(config_path)],
            cwd=folder,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    orthanc = Orthanc(folder, http_port, dicom_port, aet, popen, loopback_only=shim is not None)
    try:
        orthanc.wait_until_up(timeout_s)
        yield orthanc
    finally:
        orthanc.stop()
