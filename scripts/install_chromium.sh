#!/usr/bin/env bash
# Installs Debian's Chromium for the browser tests (tests/browser/) when it is missing.
#
# Idempotent: does nothing when the browser is already there. Runs non-interactively
# (CI=true, no stdin): as root it calls apt-get directly, otherwise through `sudo -n`.
# Playwright drives this browser (executable_path); never run `playwright install`.
# Usage: scripts/install_chromium.sh    (prints the browser's path on its last line)
set -euo pipefail

CHROMIUM="${CHROMIUM_PATH:-/usr/bin/chromium}"

if [[ -x "$CHROMIUM" ]]; then
    echo "install_chromium: found $CHROMIUM, nothing to do"
    echo "$CHROMIUM"
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "install_chromium: $CHROMIUM is missing and apt-get is not available here;" \
        "install Chromium yourself and set CHROMIUM_PATH to it" >&2
    exit 1
fi

if [[ "$(id -u)" -eq 0 ]]; then
    run_as_root=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    run_as_root=(sudo -n)
else
    echo "install_chromium: $CHROMIUM is missing; installing it needs root" \
        "(run: sudo apt-get update && sudo apt-get install -y chromium)" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
echo "install_chromium: $CHROMIUM is missing; running apt-get update"
"${run_as_root[@]}" apt-get update -q </dev/null
echo "install_chromium: running apt-get install -y chromium (about 480 MB)"
"${run_as_root[@]}" apt-get install -y -q chromium </dev/null

if [[ ! -x "$CHROMIUM" ]]; then
    echo "install_chromium: apt-get finished but $CHROMIUM is still missing" >&2
    exit 1
fi
echo "install_chromium: installed $("$CHROMIUM" --version 2>/dev/null || echo chromium)"
echo "$CHROMIUM"
