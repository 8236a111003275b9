#!/usr/bin/env bash
# Make sure Debian's chromium is at /usr/bin/chromium for the console's browser tests
# (tests/console, driven by Playwright with executable_path=/usr/bin/chromium). Installs
# it with apt-get where it is missing; never downloads a browser build of its own.
set -u
if [ -x /usr/bin/chromium ]; then echo "chromium is at /usr/bin/chromium"; exit 0; fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "/usr/bin/chromium is missing and this machine has no apt-get: install Debian's" >&2
  echo "chromium package (the console's browser tests drive it)" >&2
  exit 1
fi
sudo=""
if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
echo "installing chromium (apt-get install chromium) for the console's browser tests"
$sudo apt-get update -qq || true
if ! DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >/dev/null; then
  echo "apt-get install chromium failed: install it by hand" >&2
  exit 1
fi
[ -x /usr/bin/chromium ] || { echo "chromium installed but /usr/bin/chromium is missing" >&2; exit 1; }
echo "chromium is at /usr/bin/chromium"
