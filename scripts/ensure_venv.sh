#!/usr/bin/env bash
# Creates .venv and installs the project with the given extras when missing or stale.
# The stamp is keyed on pyproject.toml, the extras and the Python version, so a second
# run with nothing changed returns in well under a second.
set -euo pipefail
extras="${1:-all,dev}"
venv="${VENV:-.venv}"
python="${PYTHON:-python3.11}"
command -v "$python" >/dev/null 2>&1 || python=python3

key=$( { cat pyproject.toml; echo "$extras"; "$python" --version; } | sha256sum | cut -c1-16)
stamp="$venv/.medimg-deps-$key"
if [ -f "$stamp" ] && [ -x "$venv/bin/python" ]; then
  exit 0
fi
echo "==> installing medimg[$extras] into $venv (dependency spec changed or first run)"
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --upgrade pip setuptools wheel
# torch is pinned to the CPU wheel on this machine's find-links; see pyproject.toml.
"$venv/bin/python" -m pip install --quiet -e ".[$extras]"
rm -f "$venv"/.medimg-deps-*
touch "$stamp"
echo "==> $venv ready"
