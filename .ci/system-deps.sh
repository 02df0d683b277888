#!/usr/bin/env bash
# System packages the test suite needs beyond Python and the services: Debian's chromium
# (tests/monitor/test_dashboard.py drives the dashboard in headless Chromium over CDP),
# installed with chromium-driver for anyone who drives it over WebDriver instead.
# `make test` runs this first. Idempotent, and instant when the browser is already there.
# As root it installs the packages with apt-get; otherwise it fails with the command to run.
set -euo pipefail

browser_present() {
  command -v chromium >/dev/null || command -v chromium-browser >/dev/null ||
    command -v google-chrome >/dev/null
}

if browser_present; then
  exit 0
fi

packages=(chromium chromium-driver)
if [ "$(id -u)" -ne 0 ]; then
  echo "system-deps: headless Chromium is missing (the dashboard test needs it)." >&2
  echo "system-deps: install Debian's packages ${packages[*]} as root, then rerun make test:" >&2
  echo "    sudo apt-get update && sudo apt-get install -y ${packages[*]}" >&2
  exit 1
fi
if ! command -v apt-get >/dev/null; then
  echo "system-deps: headless Chromium is missing and there is no apt-get here:" \
    "install the chromium browser with this system's package manager" >&2
  exit 1
fi
echo "system-deps: installing ${packages[*]} (apt-get)"
apt-get -o DPkg::Lock::Timeout=300 update -qq
DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq \
  "${packages[@]}" >/dev/null
if ! browser_present; then
  echo "system-deps: apt-get installed ${packages[*]} but no chromium is on PATH" >&2
  exit 1
fi
echo "system-deps: $(chromium --version 2>/dev/null || echo chromium) installed"
