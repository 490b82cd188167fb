import assert from "node:assert/strict";
import { mkdtempSync } from "node:fs";
import type { Server } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, afterEach, before, describe, it } from "mocha";
import { FileBackend } from "../../lib/stores/file";
import { curl } from "../support/mainflux-fixtures";
import {
  backends,
  helper,
  nextInput,
  serveHttpNode,
  startServer,
  stopServer,
  testStoreModule,
  type TestNode,
} from "../support/node-helper";

// eslint-disable-next-line @typescript-eslint/no-require-imports
const serviceNode = require("../../nodes/bootstrap-service") as unknown;
const nodes = [testStoreModule, serviceNode];

interface Msg {
  topic?: string;
  payload: { operation: string; config: { external_id: string; thing_id: string } };
}

function flow(over: Record<string, unknown> = {}) {
  return [
    { id: "tab", type: "tab" },
    { id: "sstore", type: "test-store", name: "service" },
    {
      id: "svc",
      z: "tab",
      type: "bootstrap-service",
      store: "sstore",
      allowPlain: true,
      initEnabled: true,
      initExternalId: "${MF_RESTART_EXTERNAL_ID}",
      initThingId: "demo-thing-1",
      initChannels: "ch-1",
      wires: [["results"], []],
      ...over,
    },
    { id: "results", z: "tab", type: "helper" },
  ];
}
const CREDS = { svc: { initExternalKey: "restart-external-key", initThingKey: "restart-thing-key" } };

/** The next `n` messages a helper node receives, in order (rejects after 15 s). */
function inputs(node: TestNode, n: number): Promise<Msg[]> {
  const got: Msg[] = [];
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      node.off("input", on);
      reject(new Error(`expected ${n} messages, got ${got.length}`));
    }, 15000);
    const on = (msg: Msg) => {
      got.push(msg);
      if (got.length < n) return;
      clearTimeout(timer);
      node.off("input", on);
      resolve(got);
    };
    node.on("input", on);
  });
}

describe("bootstrap-service restarted with changed settings", () => {
  let http: { url: string; server: Server };
  const bootstrap = (id: string) =>
    curl(["-H", "Authorization: Thing restart-external-key", `${http.url}/things/bootstrap/${id}`]);

  before(async () => {
    await startServer();
    http = await serveHttpNode();
  });
  afterEach(async () => {
    await helper.unload();
    backends.clear();
    delete process.env.MF_RESTART_EXTERNAL_ID;
  });
  after(async () => {
    http.server.closeAllConnections();
    await new Promise<void>((r) => http.server.close(() => r()));
    await stopServer();
  });

  /** Deploys the flow on a file store in `dir` (a new backend each time, as after a restart). */
  async function deploy(dir: string, externalId: string, over: Record<string, unknown> = {}) {
    process.env.MF_RESTART_EXTERNAL_ID = externalId;
    backends.set("service", new FileBackend({ directory: dir }));
    await helper.load(nodes, flow(over), CREDS);
    return helper.getNode("results");
  }

  it("another external id in the environment wins: the new id is served, the old one is gone", async () => {
    const dir = mkdtempSync(join(tmpdir(), "mf-restart-"));
    let results = await deploy(dir, "device-a");
    assert.equal((await nextInput<Msg>(results)).payload.config.external_id, "device-a");
    assert.equal((await bootstrap("device-a")).status, 200);

    await helper.unload();
    results = await deploy(dir, "device-b");
    const [removed, added] = await inputs(results, 2);
    assert.equal(removed.payload.operation, "remove");
    assert.equal(removed.payload.config.external_id, "device-a");
    assert.equal(added.payload.operation, "add");
    assert.deepEqual(added.payload.config, {
      ...added.payload.config,
      external_id: "device-b",
      thing_id: "demo-thing-1",
    });
    const b = await bootstrap("device-b");
    assert.equal(b.status, 200);
    assert.equal(JSON.parse(b.body.toString()).thing_id, "demo-thing-1");
    assert.equal((await bootstrap("device-a")).status, 404, "the old configuration is not served silently");
  });

  it("turning the initial configuration off removes the one the dialog made", async () => {
    const dir = mkdtempSync(join(tmpdir(), "mf-restart-"));
    const results = await deploy(dir, "device-a");
    await nextInput<Msg>(results);
    await helper.unload();
    const again = await deploy(dir, "device-a", { initEnabled: false });
    const removed = await nextInput<Msg>(again);
    assert.equal(removed.payload.operation, "remove");
    assert.equal((await bootstrap("device-a")).status, 404);
  });
});
