import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, before, describe, it } from "mocha";
import type { ProvisioningResult } from "../../lib/model/result";
import { MemoryBackend } from "../../lib/stores/memory";
import dpsClientNode from "../../nodes/dps-client";
import dpsEnrollmentGroupNode from "../../nodes/dps-enrollment-group";
import dpsServiceNode from "../../nodes/dps-service";
import { within } from "../support/events";
import { freeTcpPort } from "../support/ports";
import {
  fakeStoreConfigModule,
  helper,
  startServer,
  stopServer,
  tlsConfigModule,
} from "../support/tbdevice-helper";

describe("nodes/dps-example", () => {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const injectModule: unknown = require("@node-red/nodes/core/common/20-inject.js");
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const commentModule: unknown = require("@node-red/nodes/core/common/90-comment.js");

  const store = new MemoryBackend();
  const modules = [
    dpsClientNode,
    dpsServiceNode,
    dpsEnrollmentGroupNode,
    tlsConfigModule,
    injectModule,
    commentModule,
    fakeStoreConfigModule(() => store),
  ];

  /** The example file, found upwards from here (the build folders differ in depth). */
  function examplePath(): string {
    for (let d = __dirname; d !== dirname(d); d = dirname(d)) {
      const p = join(d, "examples", "plgd-dps-local.json");
      if (existsSync(p)) return p;
    }
    throw new Error("examples/plgd-dps-local.json not found");
  }

  before(() => startServer());
  after(async () => {
    helper.settings({});
    await helper.unload();
    await stopServer();
  });

  it("examples/plgd-dps-local.json, as imported, provisions its device with the demo PKI its nodes make", async () => {
    // No PKI made beforehand: the nodes with "demo PKI" ticked make it in the user directory.
    const userDir = mkdtempSync(join(tmpdir(), "dps-example-"));
    helper.settings({ userDir });
    const port = await freeTcpPort();
    // The port lives in one place, the tab's environment (DPS_PORT); nothing else names it.
    const text = readFileSync(examplePath(), "utf8");
    const nodes = JSON.parse(text) as Array<Record<string, unknown>>;
    const named = nodes.flatMap((n) =>
      Object.entries(n)
        .filter(([k, v]) => k !== "info" && k !== "env" && /(^|\D)15684(?!\d)/.test(JSON.stringify(v)))
        .map(([k]) => `${String(n.id)}.${k}`),
    );
    assert.deepEqual(named, [], "only the tab's environment names the port");
    const tab = nodes.find((n) => n.type === "tab") as { env: Array<{ name: string; value: string }> };
    const env = tab.env.find((e) => e.name === "DPS_PORT");
    assert.ok(env, "the tab's environment holds DPS_PORT");
    env.value = String(port);
    const flowText = JSON.stringify(nodes);
    const flow = (JSON.parse(flowText) as Array<Record<string, unknown>>).map((n) => {
      // debug nodes become helpers so the test can read what they would show
      if (n.type === "debug") return { id: n.id, type: "helper", z: n.z, x: 0, y: 0 };
      return n;
    });
    await helper.load(modules, flow);
    const got = await within<Record<string, unknown>>(20000, "the example's result", (resolve) =>
      helper.getNode("dps-ex-result").on("input", (m: Record<string, unknown>) => resolve(m)),
    );
    const r = got.payload as ProvisioningResult;
    assert.equal(r.dialect, "plgd-dps");
    assert.equal(r.device.name, "demo device");
    assert.equal(r.configuration.servers?.[0].uri, "coaps+tcp://127.0.0.1:5684");
    assert.equal(
      existsSync(join(userDir, "plgd-dps-demo-pki", "dps-server.pem")),
      true,
      "made in the user directory",
    );
  });
});
