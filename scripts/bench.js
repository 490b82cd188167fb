#!/usr/bin/env node
// `npm run bench`: runs every benchmark in dist/test/bench/*.bench.js one after another
// in this process tree. Each prints its own figures and the ratio against a baseline it
// measures in the same run (bare aedes, a plain fs write, ...). Benchmarks never decide
// whether a test passes.
"use strict";
const fs = require("node:fs");
const path = require("node:path");

const dir = path.resolve(__dirname, "..", "dist", "test", "bench");
const only = process.argv.slice(2);

(async () => {
  const files = fs
    .readdirSync(dir)
    .filter((f) => f.endsWith(".bench.js"))
    .filter((f) => only.length === 0 || only.some((o) => f.includes(o)))
    .sort();
  for (const file of files) {
    const mod = require(path.join(dir, file));
    process.stdout.write(`\n== ${file.replace(/\.bench\.js$/, "")}\n`);
    await mod.run();
  }
})().catch((err) => {
  process.stderr.write(String(err && err.stack ? err.stack : err) + "\n");
  process.exit(1);
});
