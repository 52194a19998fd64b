#!/usr/bin/env bash
# Builds the example plugins and starts the router on router.toml.
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
exec cargo run --quiet -p hookrouter -- serve --config router.toml "$@"
