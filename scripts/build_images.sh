#!/usr/bin/env bash
# Builds medimg's container images (what `make images` runs); see docker/README.md.
#
#   scripts/build_images.sh                     every image
#   scripts/build_images.sh skin mri            only these (names from the list below)
#   scripts/build_images.sh retina              a plug-in disease service (medimg new-service)
#   scripts/build_images.sh -- --platform linux/amd64   extra arguments for every build
#
# Each image is built from the repository root as context (.dockerignore trims it) and
# tagged medimg/<name>:<version>, the version being pyproject.toml's. The engine is
# $CONTAINER_ENGINE, else docker, else podman. A checkout without web/ (a plug-in's own
# repository, say) skips the web image with a message.
# Besides the built-in images, every plug-in disease service is built: a
# <name>_service/component.json whose docker/<name>.Dockerfile exists (both written by
# `medimg new-service <name>`), found here, never listed. The ohif image's build fetches
# @ohif/app from the npm registry (docker/README.md), the Python images' builds from PyPI.
set -euo pipefail

# Before anything else, and with shell builtins only, so that the message is the first thing
# a machine without an engine prints.
engine="${CONTAINER_ENGINE:-}"
if [ -z "$engine" ]; then
  for candidate in docker podman; do
    if command -v "$candidate" >/dev/null 2>&1; then
      engine="$candidate"
      break
    fi
  done
fi
if [ -z "$engine" ]; then
  echo "build_images: no container engine: neither docker nor podman is on PATH." >&2
  echo "build_images: install one (docker with its daemon running, or podman) to build the images." >&2
  exit 1
fi
if ! command -v "$engine" >/dev/null 2>&1; then
  echo "build_images: CONTAINER_ENGINE=$engine is not on PATH." >&2
  exit 1
fi
# A docker client without a daemon behind it (as on the development machine) is no engine.
if ! "$engine" info >/dev/null 2>&1; then
  echo "build_images: '$engine' is on PATH but no engine answers ('$engine info' failed)." >&2
  echo "build_images: start its daemon, or set CONTAINER_ENGINE to another engine (podman)." >&2
  exit 1
fi

script_dir="${BASH_SOURCE[0]%/*}"
[ "$script_dir" = "${BASH_SOURCE[0]}" ] && script_dir=.
cd "$script_dir/.."

# The image names, in build order, each built from docker/<name>.Dockerfile.
images=(gateway skin mri trainer web dicom-receiver skin-model mri-model ohif)

# Then the plug-ins, in the order medimg starts them: by folder name, in byte order whatever
# the locale. The folder names the plug-in (medimg refuses a component.json that sits
# anywhere but <name>_service/), so no JSON is read here.
LC_ALL=C
no_dockerfile=()
for manifest in *_service/component.json; do
  [ -f "$manifest" ] || continue # the pattern matched nothing
  name="${manifest%_service/component.json}"
  for known in "${images[@]}"; do
    [ "$known" = "$name" ] && continue 2
  done
  if [ -f "docker/$name.Dockerfile" ]; then
    images+=("$name")
  else
    no_dockerfile+=("$name")
  fi
done

version=""
while IFS= read -r line; do
  if [[ "$line" =~ ^version[[:space:]]*=[[:space:]]*\"([^\"]+)\" ]]; then
    version="${BASH_REMATCH[1]}"
    break
  fi
done <pyproject.toml
if [ -z "$version" ]; then
  echo "build_images: no version = \"...\" line in pyproject.toml" >&2
  exit 1
fi

selected=()
build_args=()
while [ "$#" -gt 0 ]; do
  if [ "$1" = "--" ]; then
    shift
    build_args=("$@")
    break
  fi
  known=""
  for name in "${images[@]}"; do
    [ "$name" = "$1" ] && known=yes
  done
  for name in ${no_dockerfile[@]+"${no_dockerfile[@]}"}; do
    if [ "$name" = "$1" ]; then
      echo "build_images: ${name}_service has no docker/$name.Dockerfile; see docker/README.md" >&2
      exit 2
    fi
  done
  if [ -z "$known" ]; then
    echo "build_images: unknown image '$1'; known: ${images[*]}" >&2
    exit 2
  fi
  selected+=("$1")
  shift
done

built=()
skipped=()
if [ "${#selected[@]}" -eq 0 ]; then
  selected=("${images[@]}")
  for name in ${no_dockerfile[@]+"${no_dockerfile[@]}"}; do
    echo "==> skipping medimg/$name:$version: ${name}_service has no docker/$name.Dockerfile (docker/README.md)"
    skipped+=("medimg/$name:$version")
  done
fi
for name in "${selected[@]}"; do
  tag="medimg/$name:$version"
  if [ "$name" = web ] && [ ! -f web/manage.py ]; then
    echo "==> skipping $tag: web/ is not in this checkout; docker/web.Dockerfile needs it"
    skipped+=("$tag")
    continue
  fi
  echo "==> $engine build -f docker/$name.Dockerfile -t $tag ."
  # The +-expansion keeps an empty array legal under `set -u` in bash 3.2 (macOS's).
  "$engine" build ${build_args[@]+"${build_args[@]}"} -f "docker/$name.Dockerfile" -t "$tag" .
  built+=("$tag")
done

echo "==> built: ${built[*]:-none}"
if [ "${#skipped[@]}" -gt 0 ]; then
  echo "==> skipped: ${skipped[*]}"
fi
