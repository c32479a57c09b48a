#!/usr/bin/env bash
# The public HTTP caching conformance suite (http-tests/cache-tests, `http-cache-tests` on npm, pinned)
# against a cache-only reverse proxy built from the SDK's public API (edge-cache/examples/conformance_proxy.rs:
# CacheLayer with a memory tier in front of the suite's origin, served by edge_core::server). Prints the
# score table next to the published proxies' results and fails below the targets.
#
#   bash scripts/cache-tests.sh [min required] [min optimal]      (defaults: 154 and 75)
#   EDGE_CACHE_TEST=<test id> bash scripts/cache-tests.sh          (one test, with its exchange dumped)
#
# The package is installed once into $EDGE_CACHE_TESTS_HOME (default ~/.cache/edge-cache-tests) from npm.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

VERSION=0.4.5
MIN_REQUIRED=${1:-154}
MIN_OPTIMAL=${2:-75}
HOME_DIR=${EDGE_CACHE_TESTS_HOME:-$HOME/.cache/edge-cache-tests}
PKG=$HOME_DIR/node_modules/http-cache-tests
if ! grep -q "\"version\": \"$VERSION\"" "$PKG/package.json" 2>/dev/null; then
  mkdir -p "$HOME_DIR"
  (cd "$HOME_DIR" && npm install --no-audit --no-fund --omit=dev --loglevel=error "http-cache-tests@$VERSION" >&2)
fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
ORIGIN_PORT=$(free_port)
PROXY_PORT=$(free_port)
TARGET=${CARGO_TARGET_DIR:-$PWD/target}
OUT=$TARGET/cache-tests
mkdir -p "$OUT"
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; }
trap cleanup EXIT

cargo build -q -p edge-cache --features tower --example conformance_proxy
(cd "$PKG" && npm_config_protocol=http npm_config_port=$ORIGIN_PORT npm_config_pidfile="$PWD/../../server-$ORIGIN_PORT.pid" \
  exec node server/server.mjs >"$OUT/origin.log" 2>&1) &
pids+=($!)
"$TARGET/debug/examples/conformance_proxy" "127.0.0.1:$PROXY_PORT" "http://127.0.0.1:$ORIGIN_PORT" \
  >"$OUT/proxy.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$ORIGIN_PORT") 2>/dev/null && (exec 3<>"/dev/tcp/127.0.0.1/$PROXY_PORT") 2>/dev/null; then
    break
  fi
  sleep 0.1
done

run_cli() {
  (cd "$PKG" && npm_config_base="http://127.0.0.1:$PROXY_PORT" npm_package_config_base="" \
    npm_config_id="$1" npm_package_config_id="" node --no-warnings cli.mjs)
}
if [ -n "${EDGE_CACHE_TEST:-}" ]; then
  run_cli "$EDGE_CACHE_TEST"
  exit 0
fi
run_cli "" >"$OUT/results.json"
node scripts/cache-tests-score.mjs "$PKG" "$OUT/results.json" "$MIN_REQUIRED" "$MIN_OPTIMAL" | tee "$OUT/score.md"
