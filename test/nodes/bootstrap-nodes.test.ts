import assert from "node:assert/strict";
import type { Server } from "node:http";
import { after, afterEach, before, describe, it } from "mocha";
import type { ProvisioningResult } from "../../lib/model/result";
import { MemoryBackend } from "../../lib/stores/memory";
import { curl, pythonDevice } from "../support/mainflux-fixtures";
import {
  backends,
  helper,
  testStoreModule,
  nextInput,
  serveHttpNode,
  startServer,
  statusOf,
  stopServer,
  type TestNode,
} from "../support/node-helper";

// eslint-disable-next-line @typescript-eslint/no-require-imports
const fetchNode = require("../../nodes/bootstrap-fetch") as unknown;
// eslint-disable-next-line @typescript-eslint/no-require-imports
const serviceNode = require("../../nodes/bootstrap-service") as unknown;
// eslint-disable-next-line @typescript-eslint/no-require-imports
const catchNode = require("@node-red/nodes/core/common/25-catch.js") as unknown;
// eslint-disable-next-line @typescript-eslint/no-require-imports
const tlsNode = require("@node-red/nodes/core/network/05-tls.js") as unknown;
const nodes = [testStoreModule, fetchNode, serviceNode, catchNode, tlsNode];

const ENC = "0123456789abcdef0123456789abcdef";
// What the flows' ${ENV} references read; set for this file only (mocha runs every file
// in one process).
const ENV = {
  MF_TEST_EXTERNAL_ID: "dev-env-1",
  MF_TEST_EXTERNAL_KEY: "env-external-key",
  MF_TEST_ENCRYPT_KEY: ENC,
};

interface Msg {
  topic?: string;
  payload: Record<string, unknown>;
  error?: { code: string };
  errorStatus?: string | number;
}

function flow(fetchOver: Record<string, unknown>, serviceOver: Record<string, unknown> = {}, url = "") {
  return [
    { id: "tab", type: "tab" },
    { id: "store", type: "test-store", name: "device" },
    { id: "sstore", type: "test-store", name: "service" },
    {
      id: "svc",
      z: "tab",
      type: "bootstrap-service",
      store: "sstore",
      allowPlain: true,
      initEnabled: true,
      initExternalId: "${MF_TEST_EXTERNAL_ID}",
      initThingId: "thing-1",
      initChannels: "ch-1, ch-2",
      initContent: '{"broker":"mqtt://127.0.0.1:1883"}',
      wires: [["results"], ["audit"]],
      ...serviceOver,
    },
    {
      id: "dev",
      z: "tab",
      type: "bootstrap-fetch",
      url,
      externalId: "${MF_TEST_EXTERNAL_ID}",
      mode: "secure",
      retryIntervals: "0.05",
      retryJitter: 0,
      retryMax: 3,
      store: "store",
      onDeploy: false,
      wires: [["out"]],
      ...fetchOver,
    },
    { id: "catcher", z: "tab", type: "catch", scope: null, uncaught: false, wires: [["errors"]] },
    { id: "results", z: "tab", type: "helper" },
    { id: "audit", z: "tab", type: "helper" },
    { id: "out", z: "tab", type: "helper" },
    { id: "errors", z: "tab", type: "helper" },
  ];
}

const CREDS = {
  svc: {
    encryptionKey: "${MF_TEST_ENCRYPT_KEY}",
    initExternalKey: "${MF_TEST_EXTERNAL_KEY}",
    initThingKey: "thing-key-1",
    managementToken: "tok",
  },
  dev: { externalKey: "${MF_TEST_EXTERNAL_KEY}", encryptionKey: "${MF_TEST_ENCRYPT_KEY}" },
};

describe("bootstrap-fetch and bootstrap-service in a Node-RED runtime", () => {
  let http: { url: string; server: Server };

  before(async () => {
    Object.assign(process.env, ENV);
    await startServer();
    http = await serveHttpNode();
  });
  afterEach(async () => {
    await helper.unload();
    backends.clear();
  });
  after(async () => {
    http.server.closeAllConnections();
    await new Promise<void>((r) => http.server.close(() => r()));
    await stopServer();
    for (const k of Object.keys(ENV)) delete process.env[k];
  });

  it("a device bootstraps in secure mode through httpNode, stores the result and reuses it after a redeploy", async () => {
    const device = new MemoryBackend();
    backends.set("device", device);
    backends.set("service", new MemoryBackend());
    await helper.load(nodes, flow({ url: http.url }), CREDS);
    const results = helper.getNode("results");
    const added = await nextInput<Msg>(results);
    assert.equal(added.payload.operation, "add");
    const audit = nextInput<Msg>(helper.getNode("audit"));
    const out = nextInput<Msg>(helper.getNode("out"));
    helper.getNode("dev").receive({});
    const r = (await out).payload as unknown as ProvisioningResult;
    assert.equal(r.dialect, "mainflux");
    assert.equal(r.reused, false);
    assert.equal(r.device.id, "thing-1");
    assert.equal(r.device.name, "dev-env-1");
    assert.equal(r.credentials.token, "thing-key-1");
    assert.deepEqual(r.configuration.channels, [{ id: "ch-1" }, { id: "ch-2" }]);
    assert.deepEqual(r.configuration.content, { broker: "mqtt://127.0.0.1:1883" });
    const a = (await audit).payload;
    assert.equal(a.outcome, "provisioned");
    assert.equal(a.transport, "http+secure");
    assert.ok(!JSON.stringify(a).includes("env-external-key"));
    assert.ok((await device.get("mainflux/dev-env-1")) !== undefined);

    // Redeploy: the stored configuration is used without asking the service.
    await helper.unload();
    backends.set("device", device);
    backends.set("service", new MemoryBackend());
    await helper.load(nodes, flow({ url: "http://127.0.0.1:1" }), CREDS);
    const again = nextInput<Msg>(helper.getNode("out"));
    helper.getNode("dev").receive({});
    const reused = (await again).payload as unknown as ProvisioningResult;
    assert.equal(reused.reused, true);
    assert.equal(reused.credentials.token, "thing-key-1");
  });

  it("re-bootstrap replaces the stored configuration only when the new one arrived whole", async () => {
    const device = new MemoryBackend();
    backends.set("device", device);
    backends.set("service", new MemoryBackend());
    await helper.load(nodes, flow({ url: http.url }), CREDS);
    await nextInput(helper.getNode("results"));
    const first = nextInput<Msg>(helper.getNode("out"));
    helper.getNode("dev").receive({});
    await first;
    const before = JSON.stringify((await device.get("mainflux/dev-env-1"))?.value);

    // The service changes the thing key: a re-bootstrap picks it up.
    const updated = nextInput<Msg>(helper.getNode("results"));
    helper
      .getNode("svc")
      .receive({ topic: "update", payload: { external_id: "dev-env-1", thing_key: "thing-key-2" } });
    assert.equal((await updated).payload.operation, "update");
    const second = nextInput<Msg>(helper.getNode("out"));
    helper.getNode("dev").receive({ rebootstrap: true });
    assert.equal(((await second).payload as unknown as ProvisioningResult).credentials.token, "thing-key-2");
    const after2 = JSON.stringify((await device.get("mainflux/dev-env-1"))?.value);
    assert.notEqual(after2, before);

    // Now the key is wrong on the service side: 403, final; the store keeps the last good one.
    helper
      .getNode("svc")
      .receive({ topic: "update", payload: { external_id: "dev-env-1", external_key: "rotated" } });
    await nextInput(helper.getNode("results"));
    const err = nextInput<Msg>(helper.getNode("errors"));
    helper.getNode("dev").receive({ rebootstrap: true });
    const caught = await err;
    const denied = caught.error as { code?: string } | undefined;
    assert.equal(denied?.code, "DENIED");
    assert.equal(caught.errorStatus, 403, "the HTTP status reaches the Catch node");
    assert.equal(JSON.stringify((await device.get("mainflux/dev-env-1"))?.value), after2);
  });

  it("an encryption key of the wrong length is refused at deploy with a clear message", async () => {
    await helper.load(nodes, flow({ url: http.url, store: "" }, { store: "" }), {
      ...CREDS,
      dev: { externalKey: "k", encryptionKey: "x".repeat(50) },
    });
    const dev = helper.getNode("dev");
    const s = await statusOf(dev, ["red"]);
    assert.equal(s.text, "bootstrap-fetch.status.config");
    const errs = dev.error.args.filter((_a, i) => dev.error.thisValues[i] === dev).map((a) => String(a[0]));
    assert.ok(
      errs.some((e) => e.includes("bootstrap-fetch.errors.config")),
      errs.join("\n"),
    );
    const err = nextInput<Msg>(helper.getNode("errors"));
    dev.receive({});
    assert.equal((await err).error?.code, "CONFIG");
  });

  it("a tls-config that does not verify the service is a visible choice: the device warns at deploy", async () => {
    const warnings = async (verifyservercert: boolean) => {
      await helper.load(
        nodes,
        [
          ...flow({ url: "https://127.0.0.1:1", store: "", tls: "tls" }, { store: "" }),
          { id: "tls", type: "tls-config", z: "tab", cert: "", key: "", ca: "", verifyservercert },
        ],
        CREDS,
      );
      const dev = helper.getNode("dev");
      const out = dev.warn.args.filter((_a, i) => dev.warn.thisValues[i] === dev).map((a) => String(a[0]));
      await helper.unload();
      return out;
    };
    assert.ok((await warnings(false)).includes("bootstrap-fetch.warn.no-verify"));
    assert.ok(!(await warnings(true)).includes("bootstrap-fetch.warn.no-verify"));
  });

  it("a flow imported with values its dialogs would mark says so at deploy; a clean one does not", async () => {
    const warningsOf = (id: string) => {
      const n = helper.getNode(id);
      return n.warn.args.filter((_a, i) => n.warn.thisValues[i] === n).map((a) => String(a[0]));
    };
    await helper.load(
      nodes,
      flow(
        { url: "http://127.0.0.1:1", retryJitter: 99999999, timeout: -1, retryIntervals: "not valid!" },
        { decideTimeout: "not valid!", gcmWindow: 99999999 },
      ),
      CREDS,
    );
    const dev = warningsOf("dev");
    const svc = warningsOf("svc");
    await helper.unload();
    assert.ok(dev.includes("bootstrap-fetch.warn.bad-settings"), dev.join("; "));
    assert.ok(svc.includes("bootstrap-service.warn.bad-settings"), svc.join("; "));
    await helper.load(nodes, flow({ url: "http://127.0.0.1:1" }), CREDS);
    const clean = [...warningsOf("dev"), ...warningsOf("svc")];
    await helper.unload();
    assert.ok(!clean.some((w) => w.endsWith("warn.bad-settings")), clean.join("; "));
  });

  it("warns at deploy when httpNodeAuth would ask devices for Basic credentials", async () => {
    const warnings = async (settings: Record<string, unknown>) => {
      helper.settings(settings);
      try {
        await helper.load(nodes, flow({ url: http.url, store: "" }, { store: "" }), CREDS);
        const svc = helper.getNode("svc");
        await statusOf(svc, ["green"]);
        return svc.warn.args.filter((_a, i) => svc.warn.thisValues[i] === svc).map((a) => String(a[0]));
      } finally {
        await helper.unload();
        helper.settings({});
      }
    };
    assert.ok(
      (await warnings({ httpNodeAuth: { user: "u", pass: "p" } })).includes(
        "bootstrap-service.warn.node-auth",
      ),
    );
    assert.ok(!(await warnings({})).includes("bootstrap-service.warn.node-auth"));
  });

  it("a device waits while its id is unknown (404) and bootstraps once the config is added by message", async () => {
    backends.set("service", new MemoryBackend());
    await helper.load(
      nodes,
      flow(
        { url: http.url, store: "", waitUnknown: true, retryMax: -1, externalId: "late-1", mode: "plain" },
        { initEnabled: false },
      ),
      CREDS,
    );
    const dev = helper.getNode("dev") as TestNode;
    const out = nextInput<Msg>(helper.getNode("out"));
    dev.receive({});
    await statusOf(dev, ["yellow"]);
    helper.getNode("svc").receive({
      topic: "add",
      payload: { external_id: "late-1", external_key: "env-external-key", channels: ["c"] },
    });
    const r = (await out).payload as unknown as ProvisioningResult;
    assert.equal(r.device.name, "late-1");
    assert.equal(r.credentials.type, "THING_KEY");
  });

  it("management by message never shows keys; by HTTP with the bearer token; routes go on close", async () => {
    backends.set("service", new MemoryBackend());
    await helper.load(nodes, flow({ url: http.url, store: "" }), CREDS);
    const results = helper.getNode("results");
    await nextInput(results);
    const listed = nextInput<Msg>(results);
    helper.getNode("svc").receive({ topic: "list" });
    const text = JSON.stringify((await listed).payload);
    assert.ok(
      text.includes("dev-env-1") && !text.includes("env-external-key") && !text.includes("thing-key-1"),
    );
    const bad = nextInput<Msg>(helper.getNode("errors"));
    helper.getNode("svc").receive({ topic: "explode" });
    assert.equal((await bad).error?.code, "INVALID");

    let r = await curl(["-H", "Authorization: Bearer tok", `${http.url}/things/configs/thing-1`]);
    assert.equal(r.status, 200);
    r = await curl([
      "-X",
      "PUT",
      "-H",
      "Authorization: Bearer tok",
      "-H",
      "Content-Type: application/json",
      "-d",
      '{"state":1}',
      `${http.url}/things/state/thing-1`,
    ]);
    assert.equal(r.status, 200);
    r = await curl(["-H", "Authorization: Bearer nope", `${http.url}/things/configs/thing-1`]);
    assert.equal(r.status, 401);
    // An independent device (Python) bootstraps against the runtime, too.
    const py = await pythonDevice(http.url, "dev-env-1", "env-external-key", ENC);
    assert.equal(py.status, 200);
    assert.equal((JSON.parse(py.body) as { thing_key: string }).thing_key, "thing-key-1");

    await helper.unload();
    r = await curl(["-H", "Authorization: Thing env-external-key", `${http.url}/things/bootstrap/dev-env-1`]);
    assert.equal(r.status, 404);
    assert.ok(!r.body.toString().includes("thing-key-1"));
  });
  it("guard settings: after the set number of wrong keys an address gets 429, audited, status yellow", async () => {
    backends.set("device", new MemoryBackend());
    backends.set("service", new MemoryBackend());
    await helper.load(
      nodes,
      flow({ url: http.url }, { failSlowAfter: 1000, failLockAfter: 3, failLockMinutes: 5 }),
      CREDS,
    );
    await nextInput<Msg>(helper.getNode("results"));
    const audits: Msg[] = [];
    helper.getNode("audit").on("input", (m: Msg) => audits.push(m));
    const url = `${http.url}/things/bootstrap/dev-env-1`;
    for (let i = 0; i < 3; i++)
      assert.equal((await curl(["-H", `Authorization: Thing wrong-${i}`, url])).status, 403);
    const r = await curl(["-H", "Authorization: Thing env-external-key", url]);
    assert.equal(r.status, 429);
    assert.match(r.headers, /retry-after: \d+/i);
    const status = await statusOf(helper.getNode("svc") as TestNode, ["yellow"]);
    assert.match(status.text, /serving-locked/);
    assert.equal(audits.filter((m) => m.payload.outcome === "locked").length, 3);
    assert.ok(!JSON.stringify(audits).includes("env-external-key"));
  });
  it("with Decision on a request waits for the flow: approved gets its configuration, refused gets 403", async () => {
    backends.set("device", new MemoryBackend());
    backends.set("service", new MemoryBackend());
    await helper.load(nodes, flow({ url: http.url }, { decide: true, decideTimeout: 60 }), CREDS);
    const results = helper.getNode("results");
    assert.equal((await nextInput<Msg>(results)).payload.operation, "add");
    const url = `${http.url}/things/bootstrap/dev-env-1`;
    const ask = async (approve: boolean) => {
      const asked = nextInput<Msg & { correlationId?: string }>(results);
      const answer = curl(["-H", "Authorization: Thing env-external-key", url]);
      const m = await asked;
      assert.equal(m.topic, "provision-request");
      assert.equal(m.payload.deviceName, "dev-env-1");
      assert.equal(m.payload.dialect, "mainflux");
      assert.ok(!JSON.stringify(m).includes("env-external-key"), "the request to decide holds no key");
      helper
        .getNode("svc")
        .receive({ correlationId: m.correlationId, payload: { approve, reason: "not now" } });
      return answer;
    };
    const ok = await ask(true);
    assert.equal(ok.status, 200);
    assert.equal((JSON.parse(ok.body.toString()) as { thing_id: string }).thing_id, "thing-1");
    const no = await ask(false);
    assert.equal(no.status, 403);
    assert.ok(!no.body.toString().includes("thing-key-1"));
  });

  it("the dialog's rate limit: past the burst a remote gets 429 with Retry-After", async () => {
    backends.set("device", new MemoryBackend());
    backends.set("service", new MemoryBackend());
    await helper.load(nodes, flow({ url: http.url }, { rateLimit: 0.01, rateBurst: 2 }), CREDS);
    await nextInput<Msg>(helper.getNode("results"));
    const url = `${http.url}/things/bootstrap/dev-env-1`;
    const statuses: number[] = [];
    let last = { headers: "" };
    for (let i = 0; i < 3; i++) {
      const r = await curl(["-H", "Authorization: Thing env-external-key", url]);
      statuses.push(r.status);
      last = r;
    }
    assert.deepEqual(statuses, [200, 200, 429]);
    assert.match(last.headers, /retry-after: \d+/i);
  });
});
