#!/usr/bin/env bash
# Makes a Rust toolchain for wasm32-unknown-unknown available, then runs cargo with it.
#
#   bash scripts/wasm-toolchain.sh cargo check --target wasm32-unknown-unknown -p edge-core
#   bash scripts/wasm-toolchain.sh --print-env     # show which route was taken
#   bash scripts/wasm-toolchain.sh --with-test-runner cargo test --target wasm32-unknown-unknown -p edge-wasm-tests
#                                                  # also install wasm-bindgen-test-runner (the version in
#                                                  # Cargo.lock, cached) and run the tests in Node
#   bash scripts/wasm-toolchain.sh --exec worker-build --release
#                                                  # run any command (a build tool that calls cargo) with the
#                                                  # wasm32 toolchain first on PATH
#   EDGE_WASM_ROUTE=rustweb bash scripts/...       # force the registry-only route (how CI machines without
#                                                  # rustup's wasm32 target build)
#
# Two routes, tried in order:
#   1. rustup: if the active toolchain has (or can add) the wasm32-unknown-unknown target, plain cargo is used.
#   2. registry-only: when rustup cannot download the target (air-gapped CI, our build machines), Debian's
#      `rustc-web` toolchain (rustc + cargo + std source + LLVM's wasm-ld/clang) is unpacked with `dpkg -x`
#      into $EDGE_WASM_HOME (default ~/.cache/edge-wasm, outside the repo, kept between runs) and std is
#      built from source with -Zbuild-std. Nothing in rustup or the system is changed.
#
# The recipe follows ../shared/wasm/setup.sh, which was tested end to end on the build machines; the Worker
# tools (wasm-bindgen-cli, worker-build, miniflare) are not needed to *build* the library crates and are
# installed by the workers test script instead.
set -euo pipefail

EDGE_WASM_HOME=${EDGE_WASM_HOME:-$HOME/.cache/edge-wasm}
RUSTWEB_VER=${RUSTWEB_VER:-1.96.0+dfsg1-1~deb12u2}
LLVM_VER=${LLVM_VER:-1:22.1.8-1~deb12u1}
RW=$EDGE_WASM_HOME/rustweb
TOOLS=$EDGE_WASM_HOME/tools
LLVM_BIN=$RW/usr/lib/llvm-22/bin

log() { printf 'wasm-toolchain: %s\n' "$*" >&2; }

rustup_has_wasm() {
  command -v rustup >/dev/null 2>&1 || return 1
  rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown && return 0
  # `rustup target add` answers at once when it cannot reach its server; bound it anyway.
  if [ "${EDGE_WASM_TRY_RUSTUP:-1}" = 1 ] && timeout 120 rustup target add wasm32-unknown-unknown >/dev/null 2>&1; then
    return 0
  fi
  return 1
}

install_rustweb() {
  [ -x "$RW/usr/bin/rustc" ] && [ -x "$LLVM_BIN/wasm-ld" ] && [ -d "$RW/usr/lib/rustlib/src/rust" ] && return 0
  command -v apt-get >/dev/null 2>&1 || { log "neither rustup's wasm32 target nor apt-get is available"; exit 1; }
  log "installing Debian rustc-web into $RW (first run only, ~150 MB)"
  apt-get update -qq || true
  local debs; debs=$(mktemp -d)
  (
    cd "$debs"
    dl() { apt-get download -q "$1=$2" 2>/dev/null || { log "$1=$2 gone, taking the current candidate"; apt-get download -q "$1"; }; }
    for p in rustc-web cargo-web libstd-rust-web-1.96 libstd-rust-web-dev rust-web-src; do dl "$p" "$RUSTWEB_VER"; done
    for p in libllvm22 lld-22 clang-22 libclang-cpp22 libclang-common-22-dev; do dl "$p" "$LLVM_VER"; done
    dl libgit2-1.5 1.5.1+ds-1+deb12u2; dl libhttp-parser2.9 2.9.4-5   # cargo-web links libgit2 1.5
    for p in libmbedtls14 libmbedcrypto7 libmbedx509-1; do dl "$p" 2.28.3-1; done
  )
  rm -rf "$RW.tmp"; mkdir -p "$RW.tmp"
  for f in "$debs"/*.deb; do dpkg -x "$f" "$RW.tmp"; done
  rm -rf "$debs"
  # worker-build only checks that this directory exists; std itself comes from -Zbuild-std.
  mkdir -p "$RW.tmp/usr/lib/rustlib/wasm32-unknown-unknown/lib"
  rm -rf "$RW"; mv "$RW.tmp" "$RW"
}

run_rustweb() {
  env PATH="$RW/usr/bin:$LLVM_BIN:$PATH" \
    LD_LIBRARY_PATH="$RW/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
    RUSTC="$RW/usr/bin/rustc" RUSTDOC="$RW/usr/bin/rustdoc" CARGO="$RW/usr/bin/cargo" \
    RUSTUP_TOOLCHAIN= RUSTC_BOOTSTRAP=1 CARGO_UNSTABLE_BUILD_STD=std,panic_abort \
    CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER="$LLVM_BIN/wasm-ld" \
    CC_wasm32_unknown_unknown="$LLVM_BIN/clang" \
    CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target/wasm32-rustweb}" \
    "$@"
}

# wasm-bindgen-test-runner runs wasm32 test binaries in Node; it must match the wasm-bindgen in Cargo.lock.
install_test_runner() {
  local want have
  want=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)
  [ -n "$want" ] || { log "no wasm-bindgen in Cargo.lock"; exit 1; }
  have=$("$TOOLS/bin/wasm-bindgen-test-runner" --version 2>/dev/null | awk '{print $2}' || true)
  if [ "$have" != "$want" ]; then
    log "installing wasm-bindgen-cli $want into $TOOLS (first run only, a few minutes)"
    # --locked can fail when the CLI's lockfile names a version the registry mirror lacks: resolve afresh.
    cargo install --locked --root "$TOOLS" wasm-bindgen-cli --version "$want" ||
      cargo install --root "$TOOLS" wasm-bindgen-cli --version "$want"
  fi
  if ! command -v node >/dev/null 2>&1; then
    log "installing Node.js to run wasm32 tests"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs >/dev/null
  fi
  export CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER="$TOOLS/bin/wasm-bindgen-test-runner"
}

with_runner=0
if [ "${1:-}" = --with-test-runner ]; then
  with_runner=1
  shift
fi

if [ "${EDGE_WASM_ROUTE:-}" != rustweb ] && rustup_has_wasm; then
  route=rustup
else
  route=rustweb
  install_rustweb
fi

if [ "${1:-}" = --print-env ]; then
  echo "route=$route EDGE_WASM_HOME=$EDGE_WASM_HOME"
  exit 0
fi
mode=${1:-}
case "$mode" in
  --exec | cargo) shift ;;
  *) log "usage: wasm-toolchain.sh [--with-test-runner] cargo <args...> | --exec <cmd...> | --print-env"; exit 2 ;;
esac
[ "$with_runner" = 1 ] && install_test_runner
if [ "$route" = rustup ]; then
  # Crates with C parts (ring) need a clang that targets wasm32. Use the one on PATH, or the LLVM that
  # comes with the registry-only toolchain (installed on demand, kept outside the repo).
  if [ -z "${CC_wasm32_unknown_unknown:-}" ]; then
    if command -v clang >/dev/null 2>&1; then
      export CC_wasm32_unknown_unknown=clang
    else
      install_rustweb
      export CC_wasm32_unknown_unknown="$LLVM_BIN/clang"
      export LD_LIBRARY_PATH="$RW/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    fi
  fi
  if [ "$mode" = --exec ]; then exec "$@"; else exec cargo "$@"; fi
elif [ "$mode" = --exec ]; then
  run_rustweb "$@"
else
  # The rustweb cargo is a different version from rustup's; keep its build artefacts apart.
  run_rustweb "$RW/usr/bin/cargo" "$@"
fi
