// Cold starts of built Worker bundles in workerd (through Miniflare), fresh each time:
//
//   node scripts/worker-startup.mjs <rounds> <name>=<bundle dir>=<path> …
//
// Each round starts every bundle in turn (alternating, so a busy moment of the machine falls on all of
// them alike) in a new Miniflare, which starts a new workerd: `startup` is `new Miniflare` until it is
// ready (workerd up, the module compiled and instantiated), `first` the first request to <path> (what
// the first request compiles and builds), `second` the same request again (the warm cost, for
// comparison). Prints one JSON line per bundle with the medians and p90s in milliseconds. Nothing leaves the machine (`cf: false`); Miniflare comes from $MINIFLARE_NODE_PATH.
import { createRequire } from "node:module";
import path from "node:path";
import { performance } from "node:perf_hooks";

const [roundsArg, ...specs] = process.argv.slice(2);
const rounds = Number(roundsArg);
const require = createRequire(path.join(process.env.MINIFLARE_NODE_PATH ?? "", "noop.js"));
const { Miniflare, Log, LogLevel } = require("miniflare");

const bundles = specs.map((spec) => {
  const [name, dir, route] = spec.split("=");
  return { name, dir, route, startup: [], first: [], second: [] };
});

for (let round = 0; round < rounds; round++) {
  for (const bundle of bundles) {
    const started = performance.now();
    const mf = new Miniflare({
      modules: true,
      scriptPath: path.join(bundle.dir, "index.js"),
      modulesRoot: bundle.dir,
      modulesRules: [{ type: "CompiledWasm", include: ["**/*.wasm"], fallthrough: true }],
      compatibilityDate: "2026-08-01",
      cf: false,
      host: "127.0.0.1",
      port: 0,
      log: new Log(LogLevel.WARN),
      kvNamespaces: ["EDGE_KV"],
      // The Worker's classes; a bundle without them (the hello-world) gets no bindings.
      durableObjects: bundle.name === "worker" ? { COUNTERS: "CounterObject", ROOMS: "RoomObject" } : {},
      bindings: { ORIGIN_URL: "http://127.0.0.1:9" },
    });
    const url = await mf.ready;
    const ready = performance.now();
    const response = await fetch(new URL(bundle.route, url));
    await response.arrayBuffer();
    const answered = performance.now();
    if (!response.ok) throw new Error(`${bundle.name}: ${bundle.route} answered ${response.status}`);
    const again = await fetch(new URL(bundle.route, url));
    await again.arrayBuffer();
    bundle.startup.push(ready - started);
    bundle.first.push(answered - ready);
    bundle.second.push(performance.now() - answered);
    await mf.dispose();
  }
}

const quantile = (values, q) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
};
for (const b of bundles) {
  const total = b.startup.map((s, i) => s + b.first[i]);
  const r = (x) => Math.round(x * 10) / 10;
  console.log(JSON.stringify({
    bundle: b.name,
    rounds,
    startup_ms: { p50: r(quantile(b.startup, 0.5)), p90: r(quantile(b.startup, 0.9)) },
    first_request_ms: { p50: r(quantile(b.first, 0.5)), p90: r(quantile(b.first, 0.9)) },
    second_request_ms: { p50: r(quantile(b.second, 0.5)), p90: r(quantile(b.second, 0.9)) },
    cold_start_ms: { p50: r(quantile(total, 0.5)), p90: r(quantile(total, 0.9)) },
  }));
}
