import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, before, describe, it } from "mocha";
import type { ProvisioningResult } from "../../lib/model/result";
import { ensureDemoPki } from "../../lib/pki/demo-pki";
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
    await helper.unload();
    await stopServer();
  });

  it("examples/plgd-dps-local.json provisions its device with the demo PKI", async () => {
    const dir = join(mkdtempSync(join(tmpdir(), "dps-example-")), "plgd-dps-demo-pki");
    ensureDemoPki(dir);
    const port = await freeTcpPort();
    const text = readFileSync(examplePath(), "utf8")
      .split("plgd-dps-demo-pki/")
      .join(`${dir}/`)
      .split("15684")
      .join(String(port));
    const flow = (JSON.parse(text) as Array<Record<string, unknown>>).map((n) => {
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
  });
});
