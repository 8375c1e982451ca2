#!/usr/bin/env bash
# The contracts' checks of `make lint`: `buf lint` on protos/ (protos/buf.yaml says which
# rules and why the few exceptions), then `buf breaking` against the previous commit's
# protos/, so that no commit removes or renumbers what a deployed caller sends.
#
# The previous commit is read with `git archive` (it works in worktrees and needs no
# network); a checkout with no previous commit, or not a git checkout at all, skips the
# breaking check and says so. BUF_AGAINST_REF picks another commit (e.g. origin/main).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BUF="$("$ROOT/scripts/install_buf.sh" | tail -n 1)"
AGAINST="${BUF_AGAINST_REF:-HEAD~1}"

cd "$ROOT"
"$BUF" lint protos
echo "buf lint: protos/ clean"

if ! git rev-parse --verify --quiet "$AGAINST^{commit}" >/dev/null 2>&1; then
    echo "buf breaking: skipped, no commit $AGAINST to compare with"
    exit 0
fi
previous="$(mktemp -d)"
trap 'rm -rf "$previous"' EXIT
if ! git archive "$AGAINST" protos | tar -x -C "$previous" 2>/dev/null \
    || [[ ! -f "$previous/protos/buf.yaml" ]]; then
    # Commits from before buf.yaml: their protos are read with this commit's buf.yaml.
    git archive "$AGAINST" protos/medimg | tar -x -C "$previous"
    cp protos/buf.yaml "$previous/protos/buf.yaml"
fi
"$BUF" breaking protos --against "$previous/protos"
echo "buf breaking: nothing removed or renumbered since $AGAINST ($(git rev-parse --short "$AGAINST"))"
