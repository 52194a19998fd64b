#!/usr/bin/env bash
# Runs every test: builds the example plugins and test fixtures from source, then
# the whole workspace's tests (unit, runtime, end-to-end, crash).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build-plugins.sh
# Backtraces of expected errors (dropped async stores, traps) cost time; panics keep theirs.
export RUST_LIB_BACKTRACE=0
cargo test --workspace "$@"
