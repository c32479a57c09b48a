// Runs the built Worker in workerd (through Miniflare) on 127.0.0.1, for tests/workerd.rs.
//
//   node tests/miniflare.mjs <bundle dir> '<bindings as JSON>'
//
// Prints the Worker's URL on the first line of standard output, then serves until standard input closes
// (the test that spawned it has exited), and disposes of workerd. `cf: false` keeps Miniflare from
// fetching its `cf.json` from the internet; nothing leaves the machine. Miniflare comes from
// $MINIFLARE_NODE_PATH (scripts/worker-toolchain.sh installs it, cached outside the repository).
import fs from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";

const [bundle, bindingsJson] = process.argv.slice(2);
const require = createRequire(path.join(process.env.MINIFLARE_NODE_PATH ?? "", "noop.js"));
const { Miniflare, Log, LogLevel } = require("miniflare");

// The probe objects exist only in the test build (feature `conformance`); a deployable build has none.
const script = path.join(bundle, "index.js");
const probes = fs.readFileSync(script, "utf8").includes("AlarmProbeObject")
  ? { ALARM_PROBE: "AlarmProbeObject", STORAGE_KIT: "StorageKitObject" }
  : {};

const mf = new Miniflare({
  modules: true,
  scriptPath: path.join(bundle, "index.js"),
  modulesRoot: bundle,
  modulesRules: [{ type: "CompiledWasm", include: ["**/*.wasm"], fallthrough: true }],
  compatibilityDate: "2026-08-01",
  cf: false,
  host: "127.0.0.1",
  port: 0,
  log: new Log(LogLevel.INFO),
  kvNamespaces: ["EDGE_KV"],
  durableObjects: {
    COUNTERS: "CounterObject",
    ROOMS: "RoomObject",
    ...probes,
  },
  bindings: JSON.parse(bindingsJson ?? "{}"),
});

const url = await mf.ready;
process.stdout.write(`EDGE_WORKER_URL=${url.origin}\n`);
process.stdin.resume();
process.stdin.on("end", async () => {
  await mf.dispose();
  process.exit(0);
});
