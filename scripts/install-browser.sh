#!/usr/bin/env bash
# Installs Debian's Chromium and chromedriver for the review page's browser tests
# (tests/test_review.py). Why Debian's packages: the machines that run the suite are offline
# except for the apt mirror, so a test tool's own browser download fails there.
# Idempotent and quiet: does nothing when both are already installed.
set -euo pipefail

BROWSER=/usr/bin/chromium
DRIVER=/usr/bin/chromedriver

if [ -x "$BROWSER" ] && [ -x "$DRIVER" ]; then
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-browser.sh: no apt-get here; install Chromium and chromedriver yourself" >&2
    echo "  (the browser tests skip without them)" >&2
    exit 1
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo -n"  # never prompt: CI has no terminal, and a hung prompt is worse than a skip
    else
        echo "install-browser.sh: needs root (or sudo) to install chromium chromedriver" >&2
        exit 1
    fi
fi

export DEBIAN_FRONTEND=noninteractive
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! { $SUDO apt-get update -qq && \
       $SUDO apt-get install -y -qq --no-install-recommends chromium chromium-driver; } >"$log" 2>&1; then
    cat "$log" >&2
    echo "install-browser.sh: apt-get failed (output above)" >&2
    exit 1
fi
echo "install-browser.sh: installed $("$BROWSER" --version 2>/dev/null || echo chromium)"
