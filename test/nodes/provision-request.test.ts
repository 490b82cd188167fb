import { after, afterEach, before, describe, it } from "mocha";
import assert from "node:assert/strict";
import { X509Certificate, createPrivateKey } from "node:crypto";
import { MemoryBackend } from "../../lib/stores/memory";
import type { StoreBackend } from "../../lib/stores/backend";
import type { ProvisioningResult } from "../../lib/model/result";
import provisionRequestNode from "../../nodes/provision-request";
import {
  helper,
  startServer,
  stopServer,
  fakeStoreConfigModule,
  tlsConfigModule,
  catchModule,
  type TestNode,
} from "../support/tbdevice-helper";
import { TbLikeProfile, startMqttResponder } from "../support/tbdevice-responder";
import { startAedesPeer, startHttpPeer } from "../support/tbdevice-peers";
import { startMosquitto, type Mosquitto } from "../support/mosquitto";
import { makeTestPki, type TestPki } from "../support/pki";
import { freeTcpPort } from "../support/ports";
import { within } from "../support/events";

describe("nodes/provision-request", () => {
  type Msg = Record<string, unknown> & { payload: ProvisioningResult; _msgid: string };
  interface Call {
    args: unknown[];
  }

  let store: StoreBackend | undefined;
  const storeModule = fakeStoreConfigModule(() => store);
  const modules = [provisionRequestNode, storeModule, tlsConfigModule, catchModule];

  let pki: TestPki;
  let broker: Mosquitto;
  before(async () => {
    await startServer();
    pki = makeTestPki("NodeTest");
    broker = await startMosquitto({ tls: { certPath: pki.serverCertPath, keyPath: pki.serverKeyPath } });
  });
  afterEach(async () => {
    await helper.unload();
    store = undefined;
  });
  after(async () => {
    await broker?.stop();
    await stopServer();
  });

  function hostPort(url: string): { host: string; port: string } {
    const u = new URL(url);
    return { host: u.hostname, port: u.port };
  }

  function prNode(over: Record<string, unknown> = {}) {
    return {
      id: "pr",
      type: "provision-request",
      z: "tab",
      name: "",
      scheme: "mqtt",
      host: "127.0.0.1",
      port: String(broker.port),
      credentialsType: "ACCESS_TOKEN",
      timeout: 10,
      retryIntervals: "0.05",
      retryJitter: 0,
      retryMax: -1,
      retryRefusals: false,
      wires: [["out"]],
      ...over,
    };
  }

  function flow(pr: Record<string, unknown>, extra: unknown[] = []): unknown[] {
    return [
      { id: "tab", type: "tab", label: "t" },
      pr,
      { id: "out", type: "helper", z: "tab" },
      { id: "catcher", type: "catch", z: "tab", scope: null, uncaught: false, wires: [["caught"]] },
      { id: "caught", type: "helper", z: "tab" },
      ...extra,
    ].map((n) =>
      // The runtime tells flow nodes from config nodes by their x and y.
      ["tab", "credential-store-config", "tls-config"].includes((n as { type: string }).type)
        ? n
        : { x: 0, y: 0, ...(n as object) },
    );
  }

  function creds(profile: TbLikeProfile, more: Record<string, string> = {}) {
    return { pr: { provisionKey: profile.key, provisionSecret: profile.secret, ...more } };
  }

  /** Messages arriving at a node, taken one by one in arrival order. */
  function queue(node: TestNode) {
    const got: Msg[] = [];
    const waiters: Array<(m: Msg) => void> = [];
    node.on("input", (msg: Msg) => {
      const w = waiters.shift();
      if (w) w(msg);
      else got.push(msg);
    });
    const next = (what = "a message"): Promise<Msg> => {
      const m = got.shift();
      if (m) return Promise.resolve(m);
      return within(20000, what, (resolve: (v: Msg) => void) => waiters.push(resolve));
    };
    return {
      next,
      take: async (n: number): Promise<Msg[]> => {
        const out: Msg[] = [];
        for (let i = 0; i < n; i++) out.push(await next(`message ${i + 1} of ${n}`));
        return out;
      },
    };
  }

  function statusTexts(node: TestNode): string[] {
    const texts: string[] = [];
    node.on("call:status", (call: Call) => texts.push(String((call.args[0] as { text?: string }).text)));
    return texts;
  }

  it("deploy trigger provisions once at start; status walks connecting, requesting, provisioned", async () => {
    const profile = new TbLikeProfile();
    const responder = await startMqttResponder(broker.url, profile);
    try {
      await helper.load(modules, flow(prNode({ onDeploy: true, deviceName: "deploy-dev" })), creds(profile));
      const texts = statusTexts(helper.getNode("pr"));
      const msg = await queue(helper.getNode("out")).next();
      assert.equal(msg.payload.device.name, "deploy-dev");
      assert.equal(msg.payload.reused, false);
      assert.match(msg.payload.credentials.token ?? "", /^tok-deploy-dev-/);
      assert.deepEqual(
        texts.filter((t) => t.startsWith("provision-request.status.")),
        [
          "provision-request.status.connecting",
          "provision-request.status.requesting",
          "provision-request.status.provisioned",
        ],
      );
    } finally {
      await responder.stop();
    }
  });

  it("per-message overrides: many devices at once over MQTT, each answer on its own message", async () => {
    const profile = new TbLikeProfile();
    const peer = await startAedesPeer(profile);
    try {
      const { host, port } = hostPort(peer.url);
      await helper.load(modules, flow(prNode({ host, port, deviceName: "dialog-name" })), creds(profile));
      const pr = helper.getNode("pr");
      const out = queue(helper.getNode("out")).take(5);
      const names = ["child-a", "child-b", "child-c", "child-d"];
      for (const [i, n] of names.entries()) pr.receive({ deviceName: n, tag: i, gateway: i === 0 });
      pr.receive({
        deviceName: "basic-dev",
        credentialsType: "MQTT_BASIC",
        clientId: "c1",
        username: "u1",
        password: "p1-secret",
      });
      const msgs = await out;
      for (const [i, n] of names.entries()) {
        const m = msgs.find((x) => x.tag === i) as Msg;
        assert.equal(m.payload.device.name, n);
        assert.equal(m.deviceName, n, "the input message's properties are kept");
        assert.match(m.payload.credentials.token ?? "", new RegExp(`^tok-${n}-`));
      }
      assert.deepEqual(msgs.find((x) => x.tag === 0)?.payload.configuration, { gateway: true });
      const basic = msgs.find((x) => x.deviceName === "basic-dev") as Msg;
      assert.deepEqual(basic.payload.credentials, {
        type: "MQTT_BASIC",
        clientId: "c1",
        username: "u1",
        password: "p1-secret",
      });
      assert.equal(new Set(msgs.map((m) => m._msgid)).size, 5);
      assert.ok(
        !profile.requests.some((r) => r.deviceName === "dialog-name"),
        "msg.deviceName wins over the dialog",
      );
    } finally {
      await peer.stop();
    }
  });

  it("store: the second message reuses, msg.reprovision asks again and saves", async () => {
    store = new MemoryBackend();
    const profile = new TbLikeProfile();
    const peer = await startHttpPeer(profile);
    try {
      const { host, port } = hostPort(peer.url);
      await helper.load(
        modules,
        flow(prNode({ scheme: "http", host, port, deviceName: "kept", store: "st" }), [
          { id: "st", type: "credential-store-config", z: "tab" },
        ]),
        creds(profile),
      );
      const pr = helper.getNode("pr");
      const out = queue(helper.getNode("out"));
      pr.receive({});
      const first = await out.next();
      assert.equal(first.payload.reused, false);
      const saved = await store.get("thingsboard/kept");
      assert.equal(saved?.meta.protocol, "thingsboard");
      assert.equal(saved?.meta.endpoint, `${peer.url}/api/v1/provision`);
      assert.equal(profile.requests.length, 1);

      const texts = statusTexts(pr);
      pr.receive({});
      const second = await out.next();
      assert.equal(second.payload.reused, true);
      assert.equal(second.payload.credentials.token, first.payload.credentials.token);
      assert.equal(profile.requests.length, 1, "nothing was asked");
      assert.ok(texts.includes("provision-request.status.reused"));

      profile.devices.clear(); // the server side was reset: the device may provision again
      pr.receive({ reprovision: true });
      const third = await out.next();
      assert.equal(third.payload.reused, false);
      assert.equal(profile.requests.length, 2);
      assert.notEqual(third.payload.credentials.token, first.payload.credentials.token);
      assert.equal(
        ((await store.get("thingsboard/kept"))?.value as { credentials: { token: string } }).credentials
          .token,
        third.payload.credentials.token,
      );
    } finally {
      await peer.stop();
    }
  });

  it("'local' asks this Node-RED: its uiPort and httpNodeRoot, whatever host and port the node holds", async () => {
    const profile = new TbLikeProfile();
    const peer = await startHttpPeer(profile);
    try {
      // The peer stands in for this runtime's HTTP server: Node-RED listens where uiPort says.
      helper.settings({ uiPort: Number(hostPort(peer.url).port), uiHost: "0.0.0.0", httpNodeRoot: "/" });
      await helper.load(
        modules,
        flow(prNode({ scheme: "local", host: "", port: "1", deviceName: "here", onDeploy: false })),
        creds(profile),
      );
      const out = queue(helper.getNode("out"));
      helper.getNode("pr").receive({});
      const got = await out.next();
      assert.equal(got.payload.endpoint, `${peer.url}/api/v1/provision`);
      assert.equal(profile.requests.length, 1);
    } finally {
      helper.settings({});
      await peer.stop();
    }
  });

  it("'local' on a runtime that serves https: https to its port, verified as any server (tls-config CA, else refused)", async () => {
    const profile = new TbLikeProfile();
    const peer = await startHttpPeer(profile, { cert: pki.serverCert, key: pki.serverKey });
    try {
      const port = Number(new URL(peer.url).port);
      helper.settings({ uiPort: port, https: { cert: pki.serverCert, key: pki.serverKey } });
      const tlsNode = {
        id: "tls",
        type: "tls-config",
        z: "tab",
        cert: "",
        key: "",
        ca: "",
        verifyservercert: true,
      };
      await helper.load(
        modules,
        flow(prNode({ scheme: "local", host: "", port: "", tls: "tls", deviceName: "secure-here" }), [
          tlsNode,
        ]),
        { ...creds(profile), tls: { cadata: pki.caCert } },
      );
      const out = queue(helper.getNode("out"));
      helper.getNode("pr").receive({});
      assert.equal((await out.next()).payload.endpoint, `https://127.0.0.1:${port}/api/v1/provision`);

      await helper.unload();
      await helper.load(
        modules,
        flow(prNode({ scheme: "local", host: "", port: "", deviceName: "no-ca-here" })),
        creds(profile),
      );
      const caught = queue(helper.getNode("caught"));
      helper.getNode("pr").receive({});
      assert.equal(((await caught.next()).error as { code?: string }).code, "TLS");
      assert.equal(profile.requests.length, 1, "nothing reached the unverified server");
    } finally {
      helper.settings({});
      await peer.stop();
    }
  });

  it("retry: the broker comes up after the first attempt failed, then the device is provisioned", async () => {
    const port = await freeTcpPort();
    const profile = new TbLikeProfile();
    let late: Mosquitto | undefined;
    let responder: Awaited<ReturnType<typeof startMqttResponder>> | undefined;
    try {
      await helper.load(
        modules,
        flow(prNode({ port: String(port), retryIntervals: "0.2", deviceName: "late" })),
        creds(profile),
      );
      const pr = helper.getNode("pr");
      const out = queue(helper.getNode("out"));
      let starting: Promise<void> | undefined;
      pr.on("call:status", (call: Call) => {
        const text = String((call.args[0] as { text?: string }).text);
        if (text.startsWith("provision-request.status.retrying") && !starting) {
          starting = (async () => {
            late = await startMosquitto({ port });
            responder = await startMqttResponder(late.url, profile);
          })();
        }
      });
      pr.receive({});
      const msg = await out.next("the provisioned device");
      assert.equal(msg.payload.device.name, "late");
      assert.ok(starting, "a retry happened");
    } finally {
      await responder?.stop();
      await late?.stop();
    }
  });

  it("FAILURE is not retried and NOT_FOUND is final: done(err) with msg.error.code and msg.errorStatus, red status", async () => {
    const profile = new TbLikeProfile();
    const responder = await startMqttResponder(broker.url, profile);
    try {
      profile.devices.set("exists", { provisionDeviceKey: "", provisionDeviceSecret: "" });
      await helper.load(modules, flow(prNode({ deviceName: "exists" })), creds(profile));
      const pr = helper.getNode("pr");
      const caught = queue(helper.getNode("caught"));
      const texts = statusTexts(pr);
      pr.receive({ tag: "f" });
      const f = await caught.next();
      assert.equal((f.error as { code?: string }).code, "REFUSED");
      assert.equal(f.errorStatus, "FAILURE", "ThingsBoard's own word reaches the Catch node");
      assert.equal(f.tag, "f");
      assert.equal(profile.requests.length, 1, "not retried");
      assert.equal(texts.at(-1), "provision-request.status.failed");

      await helper.unload();
      await helper.load(
        modules,
        flow(prNode({ deviceName: "nf" })),
        creds(profile, { provisionSecret: "wrong-secret" }),
      );
      const caught2 = queue(helper.getNode("caught"));
      helper.getNode("pr").receive({});
      const nf = await caught2.next();
      assert.equal((nf.error as { code?: string }).code, "NOT_FOUND");
      assert.equal(nf.errorStatus, "NOT_FOUND");
      assert.match(
        (nf.error as { message: string }).message,
        // Node-RED's msg.error.message is the error's toString(): "ProvisioningError: ...".
        /^ProvisioningError: provision-request\.errors\.codes\.NOT_FOUND: \S/,
        "the node's sentence for the code, then the core's detail",
      );
      assert.equal(profile.requests.length, 2);
    } finally {
      await responder.stop();
    }
  });

  it("timeout: no answer within the attempt's time ends in TIMEOUT when attempts run out", async () => {
    const profile = new TbLikeProfile();
    profile.override = () => "drop";
    const responder = await startMqttResponder(broker.url, profile);
    try {
      await helper.load(modules, flow(prNode({ timeout: 0.3, retryMax: 2 })), creds(profile));
      const caught = queue(helper.getNode("caught"));
      helper.getNode("pr").receive({});
      const m = await caught.next();
      assert.equal((m.error as { code?: string }).code, "TIMEOUT");
      assert.equal(profile.requests.length, 2);
    } finally {
      await responder.stop();
    }
  });

  it("X.509: key and certificate made on the device; the key is in the result, never in the request", async () => {
    const profile = new TbLikeProfile();
    const responder = await startMqttResponder(broker.url, profile);
    try {
      await helper.load(
        modules,
        flow(prNode({ credentialsType: "X509_CERTIFICATE", deviceName: "cert-dev" })),
        creds(profile),
      );
      const out = queue(helper.getNode("out"));
      helper.getNode("pr").receive({});
      const m = await out.next();
      const cert = new X509Certificate(m.payload.credentials.certificate as string);
      assert.equal(cert.subject, "CN=cert-dev");
      const key = createPrivateKey(m.payload.credentials.privateKey as string);
      assert.equal(key.asymmetricKeyDetails?.namedCurve, "prime256v1");
      assert.ok(cert.checkPrivateKey(key));
      assert.equal(m.payload.expiresAt, new Date(cert.validTo).toISOString());
      assert.ok(!profile.raw.join("").includes("PRIVATE KEY"));
    } finally {
      await responder.stop();
    }
  });

  it("TLS from the core tls-config node: verified with its CA; without it the server is refused", async () => {
    const profile = new TbLikeProfile();
    const responder = await startMqttResponder(broker.url, profile);
    try {
      const tlsNode = {
        id: "tls",
        type: "tls-config",
        z: "tab",
        cert: "",
        key: "",
        ca: "",
        verifyservercert: true,
      };
      await helper.load(
        modules,
        flow(prNode({ scheme: "mqtts", port: String(broker.tlsPort), tls: "tls", deviceName: "tls-dev" }), [
          tlsNode,
        ]),
        { ...creds(profile), tls: { cadata: pki.caCert } },
      );
      const out = queue(helper.getNode("out"));
      helper.getNode("pr").receive({});
      assert.equal((await out.next()).payload.endpoint, `mqtts://127.0.0.1:${broker.tlsPort}`);

      await helper.unload();
      await helper.load(
        modules,
        flow(prNode({ scheme: "mqtts", port: String(broker.tlsPort), deviceName: "no-ca" })),
        creds(profile),
      );
      const caught = queue(helper.getNode("caught"));
      helper.getNode("pr").receive({});
      assert.equal(((await caught.next()).error as { code?: string }).code, "TLS");
      assert.equal(profile.requests.length, 1, "nothing reached the unverified server");
    } finally {
      await responder.stop();
    }
  });

  it("a tls-config that does not verify the server is a visible choice: the node warns at deploy", async () => {
    const warned = async (verifyservercert: boolean) => {
      const tlsNode = {
        id: "tls",
        type: "tls-config",
        z: "tab",
        cert: "",
        key: "",
        ca: "",
        verifyservercert,
      };
      await helper.load(
        modules,
        flow(prNode({ scheme: "mqtts", port: "1", tls: "tls", deviceName: "v", onDeploy: false }), [tlsNode]),
        {},
      );
      const pr = helper.getNode("pr") as unknown as { warn: { args: unknown[][] } };
      const texts = pr.warn.args.map((a) => String(a[0]));
      await helper.unload();
      return texts;
    };
    assert.ok((await warned(false)).includes("provision-request.warn.no-verify"));
    assert.ok(!(await warned(true)).includes("provision-request.warn.no-verify"));
  });

  it("${ENV} credentials, the reference script's variables as defaults, and no secret in status, log or error", async () => {
    const profile = new TbLikeProfile("env-key-0001", "env-secret-0002");
    const responder = await startMqttResponder(broker.url, profile);
    process.env.THINGSBOARD_PROVISION_DEVICE_KEY = profile.key;
    process.env.TBD_TEST_SECRET = profile.secret;
    try {
      await helper.load(modules, flow(prNode({ deviceName: "env-dev" })), {
        pr: { provisionSecret: "${TBD_TEST_SECRET}" },
      });
      const pr = helper.getNode("pr");
      const said: string[] = [];
      for (const m of ["status", "log", "warn", "error", "debug", "trace"]) {
        pr.on(`call:${m}`, (call: Call) =>
          said.push(
            JSON.stringify(call.args, (_k, v) =>
              v instanceof Error ? { m: v.message, c: (v as { code?: string }).code } : v,
            ),
          ),
        );
      }
      const out = queue(helper.getNode("out"));
      const caught = queue(helper.getNode("caught"));
      pr.receive({});
      assert.equal((await out.next()).payload.device.name, "env-dev");
      assert.equal(profile.requests[0].provisionDeviceKey, profile.key);
      assert.equal(profile.requests[0].provisionDeviceSecret, profile.secret);
      // A failure whose server text echoes the secret: it must not come back out.
      profile.override = () => ({ status: "FAILURE", errorMsg: `bad ${profile.secret} for ${profile.key}` });
      pr.receive({ deviceName: "echo" });
      const failed = await caught.next();
      const text = JSON.stringify(failed.error) + said.join("\n");
      assert.ok(said.length > 0);
      assert.ok(!text.includes(profile.secret), "secret not shown");
      assert.ok(!text.includes(profile.key), "key not shown");
    } finally {
      delete process.env.THINGSBOARD_PROVISION_DEVICE_KEY;
      delete process.env.TBD_TEST_SECRET;
      await responder.stop();
    }
  });

  it("close aborts a pending retry wait and completes the message", async () => {
    const port = await freeTcpPort();
    const profile = new TbLikeProfile();
    await helper.load(modules, flow(prNode({ port: String(port), retryIntervals: "600" })), creds(profile));
    const pr = helper.getNode("pr");
    const retrying = within(20000, "retrying", (resolve: (v: true) => void) =>
      pr.on("call:status", (call: Call) => {
        if (String((call.args[0] as { text?: string }).text).startsWith("provision-request.status.retrying"))
          resolve(true);
      }),
    );
    let errors = 0;
    pr.on("call:error", () => errors++);
    pr.receive({});
    await retrying;
    await helper.unload(); // would hang until the close timeout if the wait were not aborted
    assert.equal(errors, 0, "an abort is not an error");
  });

  it("a configuration error fails each message, never the runtime", async () => {
    await helper.load(modules, flow(prNode({ host: "" })), { pr: {} });
    const caught = queue(helper.getNode("caught"));
    helper.getNode("pr").receive({});
    assert.equal(((await caught.next()).error as { code?: string }).code, "CONFIG");
  });
});
