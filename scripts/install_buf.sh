#!/usr/bin/env bash
# Fetches the buf CLI (npm package @bufbuild/buf-<platform>) for `make lint`'s proto checks.
#
# `npm pack` downloads the platform package's tarball from the npm registry (about 10 MB;
# npm checks its integrity against the registry) without installing or running anything;
# only its prebuilt binary, bin/buf, is kept, under a cache folder that git ignores.
#
# Idempotent: does nothing when that version's binary is already there and answers
# --version (it is moved into place only once complete). Runs non-interactively.
# Usage: scripts/install_buf.sh    (prints the binary's path on its last line)
# Environment: BUF_VERSION (default 1.75.0), BUF_CACHE_DIR (default var/cache/buf in the
# checkout).
set -euo pipefail

VERSION="${BUF_VERSION:-1.75.0}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
CACHE="${BUF_CACHE_DIR:-$ROOT/var/cache/buf}"
BINARY="$CACHE/$VERSION/buf"

if [[ -x "$BINARY" ]] && "$BINARY" --version >/dev/null 2>&1; then
    echo "$BINARY"
    exit 0
fi

case "$(uname -s)-$(uname -m)" in
    Linux-x86_64) platform=linux-x64 ;;
    Linux-aarch64 | Linux-arm64) platform=linux-aarch64 ;;
    Darwin-arm64) platform=darwin-arm64 ;;
    Darwin-x86_64) platform=darwin-x64 ;;
    *)
        echo "install_buf: no buf package for $(uname -s) $(uname -m)" >&2
        exit 1
        ;;
esac

if ! command -v npm >/dev/null 2>&1; then
    echo "install_buf: npm is missing; install Node.js 20+ with npm" \
        "(Debian: apt-get install -y nodejs npm)" >&2
    exit 1
fi

mkdir -p "$CACHE/$VERSION"
work="$(mktemp -d "$CACHE/.download.XXXXXX")"
trap 'rm -rf "$work"' EXIT

echo "install_buf: npm pack @bufbuild/buf-$platform@$VERSION" >&2
(cd "$work" && npm pack "@bufbuild/buf-$platform@$VERSION" --ignore-scripts --no-fund \
    --no-audit --loglevel=error --silent </dev/null) >"$work/pack.out"
tarball="$work/$(tail -n 1 "$work/pack.out")"
if [[ ! -f "$tarball" ]]; then
    echo "install_buf: npm pack did not write the tarball it named: $(cat "$work/pack.out")" >&2
    exit 1
fi
tar -xzf "$tarball" -C "$work" --no-same-owner package/bin/buf
chmod 0755 "$work/package/bin/buf"
found="$("$work/package/bin/buf" --version)"
if [[ "$found" != "$VERSION" ]]; then
    echo "install_buf: asked for $VERSION, the binary says $found" >&2
    exit 1
fi
mv "$work/package/bin/buf" "$BINARY"
echo "$BINARY"
