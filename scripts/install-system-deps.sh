#!/bin/sh
# System packages: bubblewrap (aar.sandbox), chromium (the dashboard's real-browser test, driven by
# Playwright through /usr/bin/chromium) and PostgreSQL's server binaries (the referee suite starts its
# own throwaway server with initdb and pg_ctl: tests/referee/pgserver.py; Debian keeps them in
# /usr/lib/postgresql/<version>/bin, off PATH, where the tests look). setpriv (util-linux) and
# useradd (passwd) are part of every Debian/Ubuntu base system. Idempotent; each package is a no-op
# (with a warning) where there is no apt-get or we are not root: aar then falls back to an unisolated
# subprocess sandbox, and the browser and PostgreSQL tests fail with a message saying what to install.
set -u

warn() { echo "install-system-deps: WARNING: $*" >&2; }

# apt_install PACKAGE WHY: install one Debian package (updating the index once if needed); 1 on failure.
apt_install() {
    if [ "$(id -u)" != 0 ]; then
        warn "$1 missing and not root: install it (e.g. apt-get install $1); $2"
        return 1
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        warn "$1 missing and no apt-get: install it with your package manager; $2"
        return 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -q "$1" >/dev/null 2>&1; then
        apt-get update -q >/dev/null 2>&1 || true
        if ! apt-get install -y -q "$1" >/dev/null; then
            warn "apt-get install $1 failed; $2"
            return 1
        fi
    fi
    return 0
}

install_bubblewrap() {
    command -v bwrap >/dev/null 2>&1 && return 0
    if apt_install bubblewrap "sandbox scores are not tamper-proof without it (plain subprocess fallback)"; then
        echo "install-system-deps: installed bubblewrap ($(bwrap --version))"
    fi
}

install_chromium() {
    if [ -x /usr/bin/chromium ]; then
        return 0
    fi
    if apt_install chromium "the dashboard's browser test (tests/lab/test_browser.py) fails without it"; then
        echo "install-system-deps: installed chromium ($(/usr/bin/chromium --version 2>/dev/null))"
    fi
}

# pg_bindir: the directory holding PostgreSQL's initdb and pg_ctl (PATH, then Debian's layout); 1 if none.
pg_bindir() {
    if command -v pg_ctl >/dev/null 2>&1 && command -v initdb >/dev/null 2>&1; then
        dirname "$(command -v pg_ctl)"
        return 0
    fi
    for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k4 -n -r); do
        if [ -x "$d/pg_ctl" ] && [ -x "$d/initdb" ]; then
            echo "$d"
            return 0
        fi
    done
    return 1
}

install_postgresql() {
    pg_bindir >/dev/null && return 0
    why="the referee's PostgreSQL tests (tests/referee/test_postgres.py, make test-postgres) fail without it"
    # the tests start their own server: no system cluster (Debian's package would create and start one)
    if apt_install postgresql-common "$why"; then
        conf=/etc/postgresql-common/createcluster.conf
        if [ -f "$conf" ] && ! grep -q '^[[:space:]]*create_main_cluster' "$conf"; then
            echo 'create_main_cluster = false' >>"$conf"
        fi
    fi
    if apt_install postgresql "$why"; then
        echo "install-system-deps: installed PostgreSQL ($(pg_bindir)/postgres: $("$(pg_bindir)/postgres" --version))"
    fi
}

install_bubblewrap
install_chromium
install_postgresql
exit 0
