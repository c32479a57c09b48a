#!/usr/bin/env bash
# Measures the Worker as a deployer gets it (the `worker` profile, no test features) next to a workers-rs
# hello-world built the same way (examples/worker-hello): bundle size raw, gzip and brotli (what
# Cloudflare's upload limit counts is the compressed size), and cold start in workerd over fresh
# instances (median and p90). Prints the figures; asserts nothing about time (shared machines are noisy).
#
#   bash scripts/worker-size.sh [rounds]      # default 10 rounds
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-10}

declare -A dirs
for crate in examples/worker examples/worker-hello; do
  out=$(EDGE_WORKER_CRATE=$crate EDGE_WORKER_FEATURES= bash scripts/worker-build.sh)
  dirs[$crate]=$(sed -n 's/^bundle=//p' <<<"$out")
  miniflare=$(sed -n 's/^miniflare=//p' <<<"$out")
done

size_of() {
  node -e '
    const fs = require("fs"), zlib = require("zlib"), path = require("path");
    const dir = process.argv[1];
    const files = ["index.js", "index_bg.wasm", "worker/shim.mjs"].map((f) => path.join(dir, f)).filter(fs.existsSync);
    const raw = Buffer.concat(files.map((f) => fs.readFileSync(f)));
    const wasm = fs.readFileSync(path.join(dir, "index_bg.wasm"));
    const kb = (n) => Math.round(n / 102.4) / 10;
    console.log(JSON.stringify({
      wasm_kb: kb(wasm.length),
      bundle_kb: kb(raw.length),
      gzip_kb: kb(zlib.gzipSync(raw, { level: 9 }).length),
      brotli_kb: kb(zlib.brotliCompressSync(raw, { params: { [zlib.constants.BROTLI_PARAM_QUALITY]: 11 } }).length),
    }));' "$1"
}

echo "bundle sizes (kB = 1024 bytes; index.js + index_bg.wasm + shim):"
echo "  worker:      $(size_of "${dirs[examples/worker]}")"
echo "  hello-world: $(size_of "${dirs[examples/worker-hello]}")"
echo "cold starts, $rounds fresh workerd instances each, alternating:"
MINIFLARE_NODE_PATH=$miniflare node scripts/worker-startup.mjs "$rounds" \
  "worker=${dirs[examples/worker]}=/_edge/metrics" \
  "hello=${dirs[examples/worker-hello]}=/" | sed 's/^/  /'
