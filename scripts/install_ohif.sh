#!/usr/bin/env bash
# Fetches the prebuilt OHIF Viewer (npm package @ohif/app) for the viewer test and docs/viewer/.
#
# `npm pack` downloads the package's tarball from the npm registry (about 50 MB; npm checks
# its integrity against the registry) without installing anything or running any script;
# only its prebuilt static app, `dist/` (about 200 MB), is kept, under a cache folder that
# git ignores. Nothing is built: the package's engines say node >= 24, which only building
# it needs, and node 20 is enough for `npm pack`.
#
# Idempotent: does nothing when that version's dist/ is already complete (a stamp file is
# written after a full extraction, so an interrupted run is redone, never half used). Runs
# non-interactively (no stdin, no prompts).
# Usage: scripts/install_ohif.sh    (prints the dist folder's path on its last line)
# Environment: OHIF_VERSION (default 3.13.2), OHIF_CACHE_DIR (default var/cache/ohif in the
# checkout).
set -euo pipefail

VERSION="${OHIF_VERSION:-3.13.2}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
CACHE="${OHIF_CACHE_DIR:-$ROOT/var/cache/ohif}"
TARGET="$CACHE/$VERSION"
DIST="$TARGET/dist"
STAMP="$TARGET/.complete"

if [[ -f "$STAMP" && -f "$DIST/index.html" ]]; then
    echo "install_ohif: found OHIF $VERSION in $DIST, nothing to do"
    echo "$DIST"
    exit 0
fi

if ! command -v npm >/dev/null 2>&1; then
    echo "install_ohif: npm is missing; install Node.js 20+ with npm" \
        "(Debian: apt-get install -y nodejs npm)" >&2
    exit 1
fi

mkdir -p "$CACHE"
work="$(mktemp -d "$CACHE/.download.XXXXXX")"
trap 'rm -rf "$work"' EXIT

echo "install_ohif: npm pack @ohif/app@$VERSION (about 50 MB)"
# --ignore-scripts: a pack runs none anyway; said so that no lifecycle script ever runs here.
(cd "$work" && npm pack "@ohif/app@$VERSION" --ignore-scripts --no-fund --no-audit \
    --loglevel=error --silent </dev/null) >"$work/pack.out"
tarball="$work/$(tail -n 1 "$work/pack.out")"
if [[ ! -f "$tarball" ]]; then
    echo "install_ohif: npm pack did not write the tarball it named: $(cat "$work/pack.out")" >&2
    exit 1
fi

echo "install_ohif: extracting dist/ (about 200 MB)"
mkdir -p "$work/extract"
tar -xzf "$tarball" -C "$work/extract" --no-same-owner package/dist package/package.json
if [[ ! -f "$work/extract/package/dist/index.html" ]]; then
    echo "install_ohif: the package has no dist/index.html: not a prebuilt OHIF app" >&2
    exit 1
fi
packed_version="$(sed -n 's/^ *"version": *"\([^"]*\)".*/\1/p' "$work/extract/package/package.json" | head -n 1)"
if [[ "$packed_version" != "$VERSION" ]]; then
    echo "install_ohif: asked for $VERSION, the package says $packed_version" >&2
    exit 1
fi

# Replace any half-finished earlier attempt; the new folder appears whole, by one rename.
rm -rf "$TARGET"
mv "$work/extract/package" "$TARGET"
rm -f "$TARGET/package.json"
touch "$STAMP"
echo "install_ohif: installed OHIF $VERSION ($(du -sh "$DIST" | cut -f1))"
echo "$DIST"
