#!/usr/bin/env bash
# Installs Debian's Orthanc (a real PACS), its DICOMweb plugin and dicom3tools (dciodvfy).
#
# For the tests that validate medimg's DICOM objects with dciodvfy and that send studies
# between Orthanc and medimg's DICOM receiver. Idempotent: does nothing when Orthanc, its
# DICOMweb plugin and dciodvfy are all there. Runs non-interactively (no stdin): as root it
# calls apt-get directly, otherwise through `sudo -n`. The packages' own Orthanc service is
# not used: each test starts its own Orthanc, bound to loopback, from a config of its own.
# Usage: scripts/install_dicom_tools.sh    (prints dciodvfy's path on its last line)
set -euo pipefail

DICOMWEB_PLUGIN=/usr/share/orthanc/plugins/libOrthancDicomWeb.so
have_all() {
    command -v Orthanc >/dev/null 2>&1 && command -v dciodvfy >/dev/null 2>&1 \
        && [[ -e "$DICOMWEB_PLUGIN" ]]
}

if have_all; then
    echo "install_dicom_tools: found Orthanc, its DICOMweb plugin and dciodvfy, nothing to do"
    command -v dciodvfy
    exit 0
fi

# shellcheck source=lib/apt_root.sh
source "$(dirname "$0")/lib/apt_root.sh"
apt_root_runner install_dicom_tools "Orthanc or dciodvfy" "orthanc orthanc-dicomweb dicom3tools" \
    "install Orthanc 1.10+, its DICOMweb plugin and dicom3tools yourself"
packages=(orthanc orthanc-dicomweb dicom3tools)
# Debian starts the packaged Orthanc service on install; it is not wanted (and cannot start
# without systemd here). policy-rc.d refuses every service start while apt runs.
policy=/usr/sbin/policy-rc.d
if [[ ! -e "$policy" ]]; then
    printf '#!/bin/sh\nexit 101\n' | "${run_as_root[@]}" tee "$policy" >/dev/null
    "${run_as_root[@]}" chmod +x "$policy"
    trap '"${run_as_root[@]}" rm -f "$policy"' EXIT
fi
if ! "${run_as_root[@]}" apt-get install -y -q --no-install-recommends "${packages[@]}" </dev/null; then
    echo "install_dicom_tools: apt-get install failed; running apt-get update and trying again"
    "${run_as_root[@]}" apt-get update -q </dev/null
    "${run_as_root[@]}" apt-get install -y -q --no-install-recommends "${packages[@]}" </dev/null
fi

if ! have_all; then
    echo "install_dicom_tools: apt-get finished but Orthanc, $DICOMWEB_PLUGIN or dciodvfy is missing" >&2
    exit 1
fi
echo "install_dicom_tools: installed $(Orthanc --version 2>/dev/null | head -1)"
command -v dciodvfy
