#!/usr/bin/env bash
# The whole suite: real peers, build, unit tests of the cores, node tests in a real
# Node-RED runtime, and the runtime smoke tests on Node-RED 4 (Node 20) and 5 (Node 22).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-peers.sh
[ -d node_modules ] || npm ci --no-audit --no-fund
node scripts/build.js
bash scripts/ensure-nr5.sh
# mocha (.mocharc.json: 180 s per test and hook, spec reporter), every file in one process,
# one file after another in this order, no --exit: the run ends when nothing is left open.
mapfile -t files < <(find dist/test -name '*.test.js' | sort)
# Every temporary file of the run (test keys and certificates, Node-RED user directories,
# brokers' and databases' files) goes under one directory of its own, removed when the run
# ends, passed or failed: hundreds of them, private keys among them, were left in /tmp.
run_tmp=$(mktemp -d "${TMPDIR:-/tmp}/nr-provisioning-test.XXXXXX")
# Some tests run a peer as another user (PostgreSQL's initdb as postgres, a file store as
# nobody) in a directory of its own under this one: they may pass through by name, not list.
chmod 711 "$run_tmp"
trap 'rm -rf "$run_tmp"' EXIT
TMPDIR="$run_tmp" node node_modules/mocha/bin/mocha.js "${files[@]}"
