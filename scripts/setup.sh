#!/usr/bin/env bash
# Installs what building the plugins and running the tests need, only where it
# is missing (quick when everything is there): the wasm targets, Debian's
# clang-19 with wasi-libc for C plugins, componentize-py for the Python plugin,
# util-linux's prlimit (the edge tests lower the router's open-file limit with
# it), PostgreSQL (the tests start throwaway clusters of their own from its
# binaries), and for the dashboard's browser tests Debian's chromium, Node.js and
# the node packages pinned by host/tests/browser/package-lock.json. Called by
# run.sh, test.sh and .ci/run, so both README commands work on a fresh machine.
set -euo pipefail
cd "$(dirname "$0")/.."

installed_targets=$(rustup target list --installed)
for t in wasm32-wasip1 wasm32-wasip2; do
  grep -qx "$t" <<<"$installed_targets" || rustup target add "$t"
done

need_apt=()
for pkg in clang-19 lld-19 wasi-libc libclang-rt-19-dev-wasm32 openssl util-linux chromium postgresql; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need_apt+=("$pkg")
done
command -v npm >/dev/null 2>&1 || need_apt+=(nodejs npm)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: missing Debian packages: ${need_apt[*]} (run: sudo apt-get install ${need_apt[*]})" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}"
fi

if ! command -v componentize-py >/dev/null 2>&1; then
  python3 -m pip install --quiet --disable-pip-version-check -r scripts/requirements.txt
fi

# The browser tests' driver (playwright-core, no browser download: it drives
# Debian's chromium). `npm ci` installs exactly what the lockfile pins.
browser=host/tests/browser
if [ ! -f "$browser/node_modules/playwright-core/package.json" ] ||
   [ "$browser/package-lock.json" -nt "$browser/node_modules/.package-lock.json" ]; then
  (cd "$browser" && npm ci --no-audit --no-fund --loglevel=error)
fi
