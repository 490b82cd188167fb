#!/usr/bin/env bash
# Node-RED 5 needs Node >= 22.9: fetch both from the npm registry into .cache/nr5, apart
# from the project's own node_modules (a `node` package there would shadow Node 20 in
# every npm script).
set -euo pipefail
cd "$(dirname "$0")/.."
dir=.cache/nr5
if [ -x "$dir/node_modules/node/bin/node" ] && [ -f "$dir/node_modules/node-red/package.json" ]; then exit 0; fi
mkdir -p "$dir"
[ -f "$dir/package.json" ] || echo '{"name":"nr5-smoke","private":true}' > "$dir/package.json"
npm install --prefix "$dir" --no-audit --no-fund --no-save node@22 node-red@5 >/dev/null
"$dir/node_modules/node/bin/node" --version
