# Sourced by scripts/install_*.sh: how to run apt-get as root without a prompt.
#
# apt_root_runner TOOL MISSING PACKAGE HINT sets the array `run_as_root` (empty as root, `sudo -n`
# where sudo needs no password) and exports DEBIAN_FRONTEND=noninteractive; when apt-get
# is missing or root cannot be had, it says that MISSING is missing and what to do instead
# (HINT: how to install it by hand; PACKAGE: the Debian package), and exits 1.

apt_root_runner() {
    local tool="$1" missing="$2" package="$3" hint="$4"
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "$tool: $missing is missing and apt-get is not available here; $hint" >&2
        exit 1
    fi
    if [[ "$(id -u)" -eq 0 ]]; then
        run_as_root=()
    elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        run_as_root=(sudo -n)
    else
        echo "$tool: $missing is missing; installing it needs root" \
            "(run: sudo apt-get update && sudo apt-get install -y $package)" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
}
