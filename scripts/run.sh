#!/usr/bin/env bash
# Builds the example plugins and starts the router on router.toml, with
# `hookrouter sink` on 127.0.0.1:9000 in the background so that the demo's
# forwards arrive somewhere you can see (its output: data/sink.log).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build-plugins.sh
if [ -z "${OPTUM_WEBHOOK_SECRET:-}" ]; then
  export OPTUM_WEBHOOK_SECRET=demo-optum-secret
  echo "OPTUM_WEBHOOK_SECRET was unset; using the demo secret \"$OPTUM_WEBHOOK_SECRET\"" >&2
fi
if [ -z "${GITHUB_WEBHOOK_SECRET:-}" ]; then
  export GITHUB_WEBHOOK_SECRET=demo-github-secret
  echo "GITHUB_WEBHOOK_SECRET was unset; using the demo secret \"$GITHUB_WEBHOOK_SECRET\"" >&2
fi
export RUST_LIB_BACKTRACE=0
cargo build --quiet -p hookrouter
bin="${CARGO_TARGET_DIR:-target}/debug/hookrouter"
mkdir -p data
"$bin" sink --listen 127.0.0.1:9000 > data/sink.log 2>&1 &
sink_pid=$!
trap 'kill "$sink_pid" 2>/dev/null || true' EXIT
echo "forwards go to hookrouter sink on http://127.0.0.1:9000 (tail -f data/sink.log)" >&2
echo "dashboard: http://127.0.0.1:8081/ (once the router is listening)" >&2
"$bin" serve --config router.toml "$@"
