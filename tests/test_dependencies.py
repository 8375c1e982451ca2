"""Dependencies point one way: web -> gateway -> services -> model servers, never back.

Each package's ruff.toml bans the imports it may not make (ruff's TID251), and `make lint`
runs them; this proves each ban is wired to its package by asking ruff about a probe
import placed, in name only, inside the package.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SERVICES = ("gateway", "skin_service", "mri_service", "trainer_service", "dicom_receiver")
BANS = {
    "web": SERVICES,
    "servicekit": (*SERVICES, "web", "medimg_cli"),
    **{service: tuple(s for s in (*SERVICES, "web") if s != service) for service in SERVICES},
}
RUFF = Path(sys.executable).with_name("ruff")


def banned_imports(package: str, module: str, *, where: str = "probe.py") -> list[str]:
    """Returns what ruff reports for `import module` in a file of `package`."""
    checked = subprocess.run(
        [str(RUFF), "check", "--output-format", "json", "--stdin-filename", f"{package}/{where}"],
        input=f'"""A probe."""\n\nimport {module}\n',
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return [found["code"] for found in json.loads(checked.stdout or "[]")]


@pytest.mark.parametrize(("package", "module"), [(p, m) for p, ms in BANS.items() for m in ms])
def test_a_package_may_not_import_what_it_must_reach_over_grpc(package: str, module: str) -> None:
    assert "TID251" in banned_imports(package, module)


@pytest.mark.parametrize("package", list(BANS))
def test_a_package_may_import_servicekit_and_its_tests_what_they_exercise(package: str) -> None:
    assert "TID251" not in banned_imports(package, "servicekit")
    other = BANS[package][0]
    assert "TID251" not in banned_imports(package, other, where="tests/test_probe.py")
