#!/usr/bin/env node
// `npm run bench`: runs the benchmarks in dist/test/bench/*.bench.js one after another.
// Each starts the servers it measures in processes of their own (the real node-red
// program, and a bare baseline answering with a fixed answer), drives them from storm
// client processes, and prints every figure beside the baseline's, measured in the same
// run, as a ratio. Benchmarks never decide whether a test passes (never part of npm test).
//
//   npm run bench                          quick sizes: a few minutes on 2 cores
//   npm run bench -- --full                the sizes of issue 11 (long: an hour or more)
//   npm run bench -- mqtt http             some benchmarks only (file names containing these words)
//   npm run bench -- --profile /tmp/prof   also a CPU profile of Node-RED under the MQTT storm
//   npm run bench -- mqtt --target mqtt://192.0.2.10:1883   storm your own server (no baseline;
//                                          BENCH_KEY and BENCH_SECRET: its provision key and secret)
// Every size can be set on its own: BENCH_DEVICES=1000,20000 BENCH_CONCURRENCY=100,1000
// BENCH_CLIENTS=4 BENCH_GC_EVERY=10000 ... (each benchmark's header lists its own).
"use strict";
const fs = require("node:fs");
const path = require("node:path");

const dir = path.resolve(__dirname, "..", "dist", "test", "bench");
const args = process.argv.slice(2);
const only = [];
for (let i = 0; i < args.length; i++) {
  const a = args[i];
  if (a === "--full") process.env.BENCH_FULL = "1";
  else if (a === "--profile") process.env.BENCH_PROFILE = path.resolve(args[++i] ?? ".");
  else if (a === "--target") process.env.BENCH_TARGET = args[++i] ?? "";
  else if (a.startsWith("--")) {
    process.stderr.write(`unknown option ${a}\n`);
    process.exit(2);
  } else only.push(a);
}
if (process.env.BENCH_PROFILE) fs.mkdirSync(process.env.BENCH_PROFILE, { recursive: true });

(async () => {
  const files = fs
    .readdirSync(dir)
    .filter((f) => f.endsWith(".bench.js"))
    .filter((f) => only.length === 0 || only.some((o) => f.includes(o)))
    .sort();
  const os = require("node:os");
  process.stdout.write(
    `${new Date().toISOString()}  ${os.cpus().length} x ${os.cpus()[0]?.model ?? "cpu"}, ` +
      `${(os.totalmem() / 2 ** 30).toFixed(1)} GiB, Node ${process.versions.node}, ` +
      `${process.env.BENCH_FULL === "1" ? "full" : "quick"} sizes\n`,
  );
  for (const file of files) {
    const mod = require(path.join(dir, file));
    process.stdout.write(`\n== ${file.replace(/\.bench\.js$/, "")}\n`);
    const t0 = Date.now();
    await mod.run();
    process.stdout.write(`(${((Date.now() - t0) / 1000).toFixed(0)} s)\n`);
  }
})().catch((err) => {
  process.stderr.write(String(err && err.stack ? err.stack : err) + "\n");
  process.exit(1);
});
