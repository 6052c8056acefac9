#!/bin/sh
# Installs a Vulkan driver for weft-nn's GPU path (wgpu on Vulkan): Debian's
# Mesa drivers, which include llvmpipe, a software Vulkan device on the CPU,
# so that the GPU tests run on machines without a GPU (CI, laptops).
# Machines with a GPU use the same packages (Mesa's radv/anv drivers) or
# their vendor's driver.
#
# Idempotent: does nothing when both packages are installed.
# Usage: scripts/install-vulkan.sh   (as root, or with sudo available)
set -eu

PACKAGES="mesa-vulkan-drivers libvulkan1"

installed() {
    for p in $PACKAGES; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || return 1
    done
}

if ! command -v dpkg-query >/dev/null 2>&1; then
    # macOS has Metal and Windows DX12, which weft-nn uses as they are.
    echo "install-vulkan: not a Debian-like system, nothing installed; on Linux without" \
        "a GPU, install Mesa's Vulkan drivers (llvmpipe) and the Vulkan loader yourself" >&2
    exit 0
fi

if installed; then
    exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
    SUDO=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO="sudo"
else
    echo "install-vulkan: the Vulkan driver weft-nn's GPU tests need is missing; run:" >&2
    echo "  sudo apt-get install -y --no-install-recommends $PACKAGES" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
echo "install-vulkan: installing $PACKAGES" >&2
# shellcheck disable=SC2086
if ! $SUDO apt-get install -y --no-install-recommends $PACKAGES; then
    # A fresh image's package lists may be missing or stale.
    $SUDO apt-get update
    # shellcheck disable=SC2086
    $SUDO apt-get install -y --no-install-recommends $PACKAGES
fi
installed
