#!/usr/bin/env node
// `npm run soak`: the soak, fuzz, fault, race, abuse and TLS suites of issue 8 against the
// demo in the real node-red program, each part in its own mocha run, then one
// summary table of all of them. Never part of `npm test` in this long form (the test
// command runs dist/test/soak/soak-short.test.js: 2 minutes and a small fuzz batch).
//
//   npm run soak                          5 minutes of soak, 2,000 fuzz inputs per transport, every part
//   npm run soak -- --minutes 60          a longer soak
//   npm run soak -- --fuzz                the full fuzz run: 100,000 inputs per transport
//   npm run soak -- --fuzz 250000         or as many as given
//   npm run soak -- --only faults,tls     some parts only (soak, fuzz, faults, races, abuse, tls)
//   npm run soak -- --nr5                 against Node-RED 5 on Node 22 (.cache/nr5) instead of 4
//   npm run soak -- --no-build            use dist/ as it is
"use strict";
const { spawnSync } = require("node:child_process");
const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");

const root = path.resolve(__dirname, "..");
const args = process.argv.slice(2);
const value = (name, fallback) => {
  const i = args.indexOf(name);
  if (i < 0) return undefined;
  const next = args[i + 1];
  return next !== undefined && !next.startsWith("--") ? next : fallback;
};
const minutes = Number(value("--minutes", "5") ?? 5);
const fuzzFlag = value("--fuzz", "100000");
const fuzzCount = Number(fuzzFlag ?? 2000);
const only = (value("--only", "") ?? "").split(",").filter(Boolean);
if (!(minutes > 0) || !(fuzzCount >= 0)) {
  process.stderr.write("usage: npm run soak -- [--minutes N] [--fuzz [N]] [--only part,...] [--no-build]\n");
  process.exit(2);
}

const PARTS = {
  // The soak itself, then the secrets scan of its run.
  soak: {
    file: "dist/test/soak/soak-short.test.js",
    env: { SOAK_MINUTES: String(minutes) },
  },
  fuzz: { file: "dist/test/fuzz/fuzz.suite.js", env: { FUZZ_COUNT: String(fuzzCount) } },
  faults: { file: "dist/test/abuse/faults.suite.js", env: {} },
  races: { file: "dist/test/abuse/races.suite.js", env: {} },
  abuse: { file: "dist/test/abuse/abuse.suite.js", env: {} },
  tls: { file: "dist/test/abuse/tls.suite.js", env: {} },
};
for (const p of only)
  if (!PARTS[p]) {
    process.stderr.write(`unknown part ${p}; parts: ${Object.keys(PARTS).join(", ")}\n`);
    process.exit(2);
  }

if (!args.includes("--no-build")) {
  spawnSync("bash", [path.join(root, "scripts", "ensure-peers.sh")], { stdio: "inherit" });
  if (args.includes("--nr5"))
    spawnSync("bash", [path.join(root, "scripts", "ensure-nr5.sh")], { stdio: "inherit" });
  const b = spawnSync(process.execPath, [path.join(root, "scripts", "build.js")], { stdio: "inherit" });
  if (b.status !== 0) process.exit(b.status ?? 1);
}

// Every temporary file of the parts (keys, user directories, brokers' files) and the rows
// they report go under one directory of this run, removed at the end, as npm test does.
const runTmp = fs.mkdtempSync(path.join(os.tmpdir(), "nr-provisioning-soak-"));
// Peers run as other users (PostgreSQL as postgres) pass through it by name, without listing it.
fs.chmodSync(runTmp, 0o711);
const results = path.join(runTmp, "rows.jsonl");
const failed = [];
const started = Date.now();
for (const [name, part] of Object.entries(PARTS)) {
  if (only.length && !only.includes(name)) continue;
  process.stdout.write(`\n== ${name} (${part.file})\n`);
  // mocha with the repository's .mocharc.json (spec reporter), a part's tests allowed 4 h.
  const r = spawnSync(
    process.execPath,
    [path.join(root, "node_modules", "mocha", "bin", "mocha.js"), "--timeout", "14400000", part.file],
    {
      cwd: root,
      stdio: "inherit",
      env: {
        ...process.env,
        ...part.env,
        SOAK_RESULTS: results,
        TMPDIR: runTmp,
        ...(args.includes("--nr5") ? { SOAK_NODE_RED: "5" } : {}),
      },
    },
  );
  if (r.status !== 0) failed.push(name);
}

const { readRows, formatTable } = require(path.join(root, "dist", "test", "support", "soak-summary.js"));
process.stdout.write(
  `\n== summary (${Math.round((Date.now() - started) / 60000)} min; soak ${minutes} min, fuzz ${fuzzCount} per transport)\n\n` +
    formatTable(readRows(results)) +
    "\n\n" +
    (failed.length ? `parts with failures: ${failed.join(", ")}\n` : "every part passed\n"),
);
fs.rmSync(runTmp, { recursive: true, force: true });
process.exit(failed.length ? 1 : 0);
