#!/usr/bin/env bash
# The whole suite: real peers, build, unit tests of the cores, node tests in a real
# Node-RED runtime, and the runtime smoke tests on Node-RED 4 (Node 20) and 5 (Node 22).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-peers.sh
[ -d node_modules ] || npm ci --no-audit --no-fund
node scripts/build.js
bash scripts/ensure-nr5.sh
mapfile -t files < <(find dist/test -name '*.test.js' | sort)
exec node --test --test-concurrency=1 --test-timeout=180000 "${files[@]}"
