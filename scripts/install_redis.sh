#!/usr/bin/env bash
# Installs Debian's redis-server for the tests that run a real Redis (web/tests/test_series_celery.py).
#
# Idempotent: does nothing when redis-server is already on the PATH. Runs non-interactively
# (no stdin): as root it calls apt-get directly, otherwise through `sudo -n`. The package is
# not started as a service; each test starts its own server on a free loopback port.
# Usage: scripts/install_redis.sh    (prints the server's path on its last line)
set -euo pipefail

if command -v redis-server >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1; then
    echo "install_redis: found $(command -v redis-server), nothing to do"
    command -v redis-server
    exit 0
fi

# shellcheck source=lib/apt_root.sh
source "$(dirname "$0")/lib/apt_root.sh"
apt_root_runner install_redis redis-server redis-server \
    "install Redis 7 yourself (redis-server and redis-cli on the PATH)"
if ! "${run_as_root[@]}" apt-get install -y -q redis-server </dev/null; then
    echo "install_redis: apt-get install failed; running apt-get update and trying again"
    "${run_as_root[@]}" apt-get update -q </dev/null
    "${run_as_root[@]}" apt-get install -y -q redis-server </dev/null
fi

if ! command -v redis-server >/dev/null 2>&1; then
    echo "install_redis: apt-get finished but redis-server is still missing" >&2
    exit 1
fi
echo "install_redis: installed $(redis-server --version)"
command -v redis-server
