#!/bin/sh
# System packages the sandbox needs: bubblewrap (aar.sandbox). setpriv (util-linux) and useradd
# (passwd) are part of every Debian/Ubuntu base system. Idempotent; a no-op (with a warning) where
# there is no apt-get or we are not root: aar then falls back to an unisolated subprocess sandbox.
set -u

warn() { echo "install-system-deps: WARNING: $*" >&2; }

if command -v bwrap >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    warn "bubblewrap missing and not root: install it (e.g. apt-get install bubblewrap); sandbox scores are not tamper-proof without it"
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    warn "bubblewrap missing and no apt-get: install it with your package manager; sandbox scores are not tamper-proof without it"
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
if ! apt-get install -y -q bubblewrap >/dev/null 2>&1; then
    apt-get update -q >/dev/null 2>&1 || true
    if ! apt-get install -y -q bubblewrap >/dev/null; then
        warn "apt-get install bubblewrap failed; sandbox falls back to a plain subprocess"
        exit 0
    fi
fi
echo "install-system-deps: installed bubblewrap ($(bwrap --version))"
