import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PROJECT_ROOT } from "../support/node-red";
import { freeTcpPort } from "../support/ports";
import { startProcess, type Started } from "../support/process";

/** The first README command's second half: `npm start` (scripts/start.js after the build). */
describe("npm start: the demo runtime", () => {
  let demo: Started;
  let url: string;
  let dir: string;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "demo-"));
    const port = await freeTcpPort();
    url = `http://127.0.0.1:${port}`;
    demo = await startProcess(
      process.execPath,
      [join(PROJECT_ROOT, "scripts", "start.js")],
      /(?=[\s\S]*Server now running)(?=[\s\S]*Started flows)/,
      {
        cwd: PROJECT_ROOT,
        env: { ...process.env, PORT: String(port), NODE_RED_DEMO_DIR: dir },
        timeoutMs: 60000,
      },
    );
  });
  after(async () => {
    await demo?.stop();
  });

  test("serves the editor on 127.0.0.1 and deploys the demo flow without error", async () => {
    const res = await fetch(url);
    assert.equal(res.status, 200);
    assert.doesNotMatch(demo.output(), /\[error\]|Missing node types|Waiting for missing types/);
    const flows = JSON.parse(readFileSync(join(dir, "flows.json"), "utf8")) as Array<{ type: string }>;
    assert.ok(
      flows.some((n) => n.type === "tab"),
      "the demo flow has a tab",
    );
  });

  test("keeps its credential secret private to the user directory", () => {
    assert.equal(statSync(join(dir, ".credential-secret")).mode & 0o777, 0o600);
    const secret = readFileSync(join(dir, ".credential-secret"), "utf8").trim();
    assert.doesNotMatch(demo.output(), new RegExp(secret));
  });
});
