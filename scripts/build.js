#!/usr/bin/env node
// Compiles TypeScript, then lays out dist/nodes the way the Node-RED loader wants it:
// each node's .html beside its .js, locales/ beside them, and icons/ inside dist/nodes
// (the loader reads icons only from a folder next to the node files).
"use strict";
const { execFileSync } = require("node:child_process");
const fs = require("node:fs");
const path = require("node:path");

const root = path.resolve(__dirname, "..");
const dist = path.join(root, "dist");

fs.rmSync(dist, { recursive: true, force: true });
execFileSync(process.execPath, [require.resolve("typescript/bin/tsc"), "-p", root], { stdio: "inherit" });

function copyTree(from, to, filter) {
  if (!fs.existsSync(from)) return;
  for (const entry of fs.readdirSync(from, { withFileTypes: true })) {
    const src = path.join(from, entry.name);
    const dst = path.join(to, entry.name);
    if (entry.isDirectory()) copyTree(src, dst, filter);
    else if (filter(entry.name)) {
      fs.mkdirSync(to, { recursive: true });
      fs.copyFileSync(src, dst);
    }
  }
}
const editorFile = (name) => name.endsWith(".html") || name.endsWith(".json");
copyTree(path.join(root, "nodes"), path.join(dist, "nodes"), editorFile);
copyTree(path.join(root, "icons"), path.join(dist, "nodes", "icons"), () => true);
