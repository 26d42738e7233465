#!/usr/bin/env bash
# What the real-browser tests of the dashboard (tests/api/browser.rs) need: Chromium from
# apt (/usr/bin/chromium), Node.js with npm, and puppeteer-core from npm in
# tests/browser/node_modules, installed exactly as tests/browser/package-lock.json says.
# puppeteer-core never downloads a browser; PUPPETEER_SKIP_DOWNLOAD is set all the same.
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""
if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null; then SUDO=sudo; fi

updated=""
apt_install() { # package...
  if [ -z "$updated" ]; then $SUDO apt-get update -qq; updated=1; fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@" >/dev/null
}

if [ ! -x /usr/bin/chromium ]; then
  echo "installing chromium from apt (the dashboard's browser tests)"
  apt_install chromium
fi
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "installing nodejs and npm from apt (the dashboard's browser tests)"
  apt_install nodejs npm
fi

# npm ci when node_modules is missing or was installed from another lockfile.
dir=tests/browser
stamp=$dir/node_modules/.synopticon-lock.sha256
want=$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ] ||
  [ ! -f "$dir/node_modules/puppeteer-core/package.json" ]; then
  echo "installing puppeteer-core from npm into $dir/node_modules"
  (cd "$dir" && PUPPETEER_SKIP_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  echo "$want" >"$stamp"
fi
