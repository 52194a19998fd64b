#!/usr/bin/env bash
# Runs every test: builds the example plugins and test fixtures from source, then
# the whole workspace's tests (unit, runtime, end-to-end, crash), and prints one
# closing line with the totals over every test binary.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build-plugins.sh
# Backtraces of expected errors (dropped async stores, traps) cost time; panics keep theirs.
export RUST_LIB_BACKTRACE=0
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
cargo test --workspace "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
