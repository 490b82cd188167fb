#!/usr/bin/env node
// `npm start`: a local Node-RED on http://127.0.0.1:1880 with this package loaded from the
// working tree and the demo flow. The user directory is .node-red/ inside the project
// (git ignores it); flows you change there are kept across starts (--reset-flows restores
// the demo).
"use strict";
const { spawn } = require("node:child_process");
const crypto = require("node:crypto");
const fs = require("node:fs");
const path = require("node:path");
const demo = require("./demo");

const root = path.resolve(__dirname, "..");
const userDir = path.resolve(process.env.NODE_RED_DEMO_DIR || path.join(root, ".node-red"));
const port = Number(process.env.PORT || 1880);
const reset = process.argv.includes("--reset-flows");

fs.mkdirSync(path.join(userDir, "node_modules"), { recursive: true, mode: 0o700 });

// Install this package the way `npm install <dir>` does: a link in the user directory.
const link = path.join(userDir, "node_modules", "node-red-contrib-provisioning");
try {
  if (fs.readlinkSync(link) !== root) fs.unlinkSync(link);
} catch {
  /* no link yet */
}
if (!fs.existsSync(link)) fs.symlinkSync(root, link, "dir");
const userPkg = path.join(userDir, "package.json");
if (!fs.existsSync(userPkg))
  fs.writeFileSync(userPkg, JSON.stringify({ name: "node-red-user", private: true }, null, 2));

// Credentials in flows_cred.json are encrypted with this secret; made once, kept 0600.
let secret = process.env.NODE_RED_CREDENTIAL_SECRET;
const secretFile = path.join(userDir, ".credential-secret");
if (!secret) {
  if (!fs.existsSync(secretFile)) {
    fs.writeFileSync(secretFile, crypto.randomBytes(32).toString("hex"), { mode: 0o600 });
  }
  secret = fs.readFileSync(secretFile, "utf8").trim();
}

const env = { ...process.env, ...demo.environment(userDir) };
demo.prepare(userDir, env);

fs.writeFileSync(
  path.join(userDir, "settings.js"),
  `// Written by scripts/start.js on every start; edit that script, not this file.
module.exports = {
  uiHost: "127.0.0.1",
  uiPort: ${port},
  flowFile: "flows.json",
  credentialSecret: process.env.NODE_RED_DEMO_CREDENTIAL_SECRET,
  contextStorage: {
    default: { module: "memory" },
    file: { module: "localfilesystem" },
  },
  editorTheme: { tours: false },
  telemetry: { enabled: false },
  logging: { console: { level: "info" } },
};
`,
);

const flowsFile = path.join(userDir, "flows.json");
if (reset || !fs.existsSync(flowsFile)) {
  fs.writeFileSync(flowsFile, JSON.stringify(demo.flows(), null, 2));
  demo.writeCredentials(userDir, secret);
}

let running = [];
try {
  running = JSON.parse(fs.readFileSync(flowsFile, "utf8"));
} catch {
  /* flows Node-RED cannot read either: it says so itself */
}
if (Array.isArray(running) && demo.followPortVariables(running))
  fs.writeFileSync(flowsFile, JSON.stringify(running, null, 2));
demo.printBanner(port, env, userDir, Array.isArray(running) ? running : []);

const red = require.resolve("node-red/red.js");
const child = spawn(process.execPath, [red, "-u", userDir, "-s", path.join(userDir, "settings.js")], {
  // Relative file names in the demo flows (the demo PKI) resolve inside the user directory.
  cwd: userDir,
  stdio: "inherit",
  env: { ...env, NODE_RED_DEMO_CREDENTIAL_SECRET: secret },
});
for (const sig of ["SIGINT", "SIGTERM"]) process.on(sig, () => child.kill(sig));
child.on("exit", (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
