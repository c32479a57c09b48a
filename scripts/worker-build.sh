#!/usr/bin/env bash
# Builds examples/worker into a bundle workerd runs, installing what that needs when it is missing:
#
#   bash scripts/worker-build.sh        # last lines: bundle=<dir> and miniflare=<node_modules dir>
#
# - the wasm32 toolchain (scripts/wasm-toolchain.sh: rustup's target, or Debian's rustc-web when rustup
#   cannot download one);
# - the wasm-bindgen CLI (the version in Cargo.lock) and worker-build, from crates.io;
# - miniflare (which carries workerd) and esbuild, from npm.
# Tools go to $EDGE_WASM_HOME (default ~/.cache/edge-wasm), outside the repository, and are kept between
# runs; worker-build's own downloads are replaced by them (WASM_BINDGEN_BIN, ESBUILD_BIN) and wasm-opt is
# off (examples/worker/Cargo.toml), so nothing is fetched from the web. The recipe follows
# ../shared/wasm/setup.sh, tested on the build machines.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

EDGE_WASM_HOME=${EDGE_WASM_HOME:-$HOME/.cache/edge-wasm}
TOOLS=$EDGE_WASM_HOME/tools
NODE_DIR=$EDGE_WASM_HOME/node
WORKER_BUILD_VER=${WORKER_BUILD_VER:-0.8.7}
MINIFLARE_VER=${MINIFLARE_VER:-4.20260730.0}
ESBUILD_VER=${ESBUILD_VER:-0.28.2}
log() { printf 'worker-build: %s\n' "$*" >&2; }

# Cargo sets these for the test that may have called us; they would confuse the nested builds.
unset CARGO_MANIFEST_DIR CARGO_PKG_NAME CARGO_CRATE_NAME CARGO_PRIMARY_PACKAGE CARGO_TARGET_TMPDIR

bindgen=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)
if [ "$("$TOOLS/bin/wasm-bindgen" --version 2>/dev/null | awk '{print $2}' || true)" != "$bindgen" ]; then
  log "installing wasm-bindgen-cli $bindgen into $TOOLS (first run only)"
  cargo install -q --locked --root "$TOOLS" wasm-bindgen-cli --version "$bindgen" ||
    cargo install -q --root "$TOOLS" wasm-bindgen-cli --version "$bindgen"
fi
if [ "$("$TOOLS/bin/worker-build" --version 2>/dev/null || true)" != "$WORKER_BUILD_VER" ]; then
  log "installing worker-build $WORKER_BUILD_VER into $TOOLS (first run only)"
  cargo install -q --locked --root "$TOOLS" worker-build --version "$WORKER_BUILD_VER" ||
    cargo install -q --root "$TOOLS" worker-build --version "$WORKER_BUILD_VER"
fi
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  log "installing Node.js and npm"
  SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
fi
if [ ! -x "$NODE_DIR/node_modules/.bin/esbuild" ] || [ ! -d "$NODE_DIR/node_modules/miniflare" ] ||
   [ "$(node -p "require('$NODE_DIR/node_modules/miniflare/package.json').version" 2>/dev/null)" != "$MINIFLARE_VER" ]; then
  log "installing miniflare $MINIFLARE_VER and esbuild $ESBUILD_VER into $NODE_DIR (first run only)"
  mkdir -p "$NODE_DIR"
  [ -f "$NODE_DIR/package.json" ] || echo '{"name":"edge-wasm-tools","private":true}' > "$NODE_DIR/package.json"
  (cd "$NODE_DIR" && npm install --no-audit --no-fund --loglevel=error "miniflare@$MINIFLARE_VER" "esbuild@$ESBUILD_VER" >&2)
fi

# EDGE_WORKER_CRATE picks another crate (examples/worker-hello, for the size and start-up comparison);
# EDGE_WORKER_FEATURES its cargo features (the workerd tests: conformance).
crate=${EDGE_WORKER_CRATE:-examples/worker}
features=${EDGE_WORKER_FEATURES:-}
log "building $crate for wasm32 (profile worker${features:+, features $features})"
(
  cd "$crate"
  export WASM_BINDGEN_BIN="$TOOLS/bin/wasm-bindgen" ESBUILD_BIN="$NODE_DIR/node_modules/.bin/esbuild"
  export CARGO_TARGET_DIR="${EDGE_WORKER_TARGET_DIR:-$PWD/../../target/worker}"
  bash ../../scripts/wasm-toolchain.sh --exec "$TOOLS/bin/worker-build" --profile worker . \
    ${features:+--features "$features"} >&2
)
echo "bundle=$PWD/$crate/build"
echo "miniflare=$NODE_DIR/node_modules"
