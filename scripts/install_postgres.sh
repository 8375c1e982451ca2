#!/usr/bin/env bash
# Installs Debian's PostgreSQL 15 server binaries for the tests that run a real PostgreSQL
# (web/tests/postgres.py: the web tests marked postgres, the fault suite).
#
# Idempotent: does nothing when initdb and pg_ctl are already there (PostgreSQL's own
# folder or the PATH). Runs non-interactively (no stdin): as root it calls apt-get
# directly, otherwise through `sudo -n`. The package's own cluster is not used: each test
# run initialises its own in a temporary folder on a free loopback port.
# Usage: scripts/install_postgres.sh    (prints the binaries' folder on its last line)
set -euo pipefail

BIN="/usr/lib/postgresql/15/bin"
if [[ -x "$BIN/initdb" && -x "$BIN/pg_ctl" ]]; then
    echo "install_postgres: found $BIN, nothing to do"
    echo "$BIN"
    exit 0
fi
if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
    echo "install_postgres: found $(command -v initdb), nothing to do"
    dirname "$(command -v initdb)"
    exit 0
fi

# shellcheck source=lib/apt_root.sh
source "$(dirname "$0")/lib/apt_root.sh"
apt_root_runner install_postgres "PostgreSQL 15 (initdb, pg_ctl)" postgresql-15 \
    "install PostgreSQL 15 yourself (initdb and pg_ctl in $BIN or on the PATH)"
if ! "${run_as_root[@]}" apt-get install -y -q postgresql-15 </dev/null; then
    echo "install_postgres: apt-get install failed; running apt-get update and trying again"
    "${run_as_root[@]}" apt-get update -q </dev/null
    "${run_as_root[@]}" apt-get install -y -q postgresql-15 </dev/null
fi

if [[ ! -x "$BIN/initdb" ]]; then
    echo "install_postgres: apt-get finished but $BIN/initdb is still missing" >&2
    exit 1
fi
echo "install_postgres: installed $("$BIN/postgres" --version)"
echo "$BIN"
