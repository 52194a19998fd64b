#!/usr/bin/env bash
# Builds the example plugins into plugins/*.wasm and the Rust test-fixture plugins
# into $HOOKROUTER_FIXTURES_DIR (default target/fixtures). Quick when nothing changed:
# cargo is incremental, and the C and Python plugins are rebuilt only when a source
# is newer than the output. (The WAT fixtures are assembled by tests/build.rs.)
#
#   scripts/build-plugins.sh [all|plugins|fixtures]
#
# Environment: HOOKROUTER_FIXTURES_DIR, HOOKROUTER_WASM_TARGET_DIR (default
# target/wasm: never the host's target dir, so this can run inside a cargo build).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
what=${1:-all}
fixtures=${HOOKROUTER_FIXTURES_DIR:-$root/target/fixtures}
wasm_target=${HOOKROUTER_WASM_TARGET_DIR:-$root/target/wasm}

# When run from a build script, do not inherit the host build's settings.
unset CARGO_TARGET_DIR CARGO_BUILD_TARGET CARGO_ENCODED_RUSTFLAGS RUSTFLAGS \
  CARGO_BUILD_RUSTFLAGS RUSTC_WRAPPER RUSTC_WORKSPACE_WRAPPER CARGO_MAKEFLAGS MAKEFLAGS MFLAGS

die() { echo "build-plugins: $*" >&2; exit 1; }
need_cmd() { command -v "$1" >/dev/null 2>&1 || die "$1 not found (install: $2)"; }

# Copies $1 to $2 only if different, through a temp file and a rename (a plugin
# folder may be watched by a running router).
install_if_changed() {
  if ! cmp -s "$1" "$2"; then
    mkdir -p "$(dirname "$2")"
    cp "$1" "$2.tmp.$$" && mv "$2.tmp.$$" "$2"
    echo "build-plugins: built $2"
  fi
}

# True if $1 is missing or older than any of the other paths (files or folders).
stale() {
  local out=$1; shift
  [[ -e $out ]] || return 0
  [[ -n $(find "$@" -newer "$out" -print -quit) ]]
}

rust_wasm() { # manifest, crate names...
  local manifest=$1; shift
  need_cmd cargo "rustup (https://rustup.rs)"
  [[ -d $(rustc --print sysroot)/lib/rustlib/wasm32-wasip2 ]] ||
    die "the Rust target wasm32-wasip2 is missing (install: rustup target add wasm32-wasip2)"
  cargo build --quiet --release --target wasm32-wasip2 --manifest-path "$manifest" \
    --target-dir "$wasm_target" || die "cargo build of $manifest failed"
}

build_c_plugin() { # source, output
  stale "$2" "$1" || return 0
  need_cmd clang-19 "apt-get install clang-19 lld-19"
  need_cmd wasm-ld-19 "apt-get install lld-19"
  [[ -f /usr/include/wasm32-wasi/stdio.h ]] || die "wasi-libc headers not found (install: apt-get install wasi-libc)"
  compgen -G "/usr/lib/llvm-19/lib/clang/19/lib/wasi/libclang_rt.builtins-wasm32.a" >/dev/null ||
    die "wasm32 compiler-rt not found (install: apt-get install libclang-rt-19-dev-wasm32)"
  clang-19 --target=wasm32-wasi --sysroot=/usr -nostdlibinc -isystem /usr/include/wasm32-wasi \
    -O2 -Wall -Wextra -Werror -o "$2.tmp.$$" "$1" || die "clang-19 failed on $1"
  mv "$2.tmp.$$" "$2"
  echo "build-plugins: built $2"
}

build_py_plugin() { # folder, output
  stale "$2" "$1" "$root/plugin-sdk/wit" || return 0
  need_cmd componentize-py "pip install componentize-py==0.25.1"
  (cd "$1" && componentize-py -d "$root/plugin-sdk/wit" -w plugin componentize app \
    -o "$2.tmp.$$" >/dev/null) || die "componentize-py failed on $1"
  mv "$2.tmp.$$" "$2"
  echo "build-plugins: built $2"
}

if [[ $what == all || $what == plugins ]]; then
  rust_wasm "$root/plugins/Cargo.toml"
  install_if_changed "$wasm_target/wasm32-wasip2/release/payment_audit.wasm" "$root/plugins/payment_audit.wasm"
  build_c_plugin "$root/plugins/batch_notify/batch_notify.c" "$root/plugins/batch_notify.wasm"
  build_py_plugin "$root/plugins/refund_alert" "$root/plugins/refund_alert.wasm"
fi

if [[ $what == all || $what == fixtures ]]; then
  rust_wasm "$root/tests/fixtures/Cargo.toml"
  for crate in hostile relay sleeper trivial; do
    install_if_changed "$wasm_target/wasm32-wasip2/release/$crate.wasm" "$fixtures/$crate.wasm"
  done
  # The command-ABI relay, for the end-to-end benchmark.
  build_c_plugin "$root/tests/fixtures/c/cmd_relay.c" "$fixtures/cmd_relay.wasm"
fi
