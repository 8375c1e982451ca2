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

# shellcheck source=lib/apt_root.sh
source "$(dirname "$0")/lib/apt_root.sh"
apt_root_runner install_chromium "$CHROMIUM" chromium \
    "install Chromium yourself and set CHROMIUM_PATH to it"
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
