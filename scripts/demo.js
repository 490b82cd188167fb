// The demo flow of `npm start`, built from the bundled examples, and the environment it
// reads its secrets from (each with a demo default that the README prints).
"use strict";
const fs = require("node:fs");
const path = require("node:path");

const root = path.resolve(__dirname, "..");

/** Examples that make up the demo, each on its own tab, in this order. */
const DEMO_EXAMPLES = ["credential-store-operations.json"];

/** Demo defaults; the real value wins whenever the variable is set. */
const DEFAULTS = {};

function environment() {
  const env = {};
  for (const [name, value] of Object.entries(DEFAULTS)) env[name] = process.env[name] || value;
  return env;
}

function prepare() {}

function flows() {
  const out = [];
  for (const file of DEMO_EXAMPLES) {
    const nodes = JSON.parse(fs.readFileSync(path.join(root, "examples", file), "utf8"));
    const tab = "demo-" + file.replace(/\.json$/, "");
    if (!nodes.some((n) => n.type === "tab")) {
      out.push({ id: tab, type: "tab", label: file.replace(/\.json$/, "").replace(/-/g, " ") });
    }
    for (const n of nodes) {
      const isConfig = n.x === undefined && n.y === undefined && n.type !== "comment";
      out.push(n.z === undefined && !isConfig && n.type !== "tab" ? { ...n, z: tab } : n);
    }
  }
  return out;
}

function printBanner(port, env, userDir) {
  const lines = [
    "",
    `node-red-contrib-provisioning demo: http://127.0.0.1:${port}`,
    `user directory: ${userDir}`,
  ];
  for (const name of Object.keys(DEFAULTS)) {
    const shown = process.env[name] ? "(from your environment)" : `${env[name]} (demo default)`;
    lines.push(`  ${name} = ${shown}`);
  }
  process.stdout.write(lines.join("\n") + "\n\n");
}

module.exports = { environment, prepare, flows, printBanner, DEMO_EXAMPLES };
