import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import { after, afterEach, before, describe, it } from "mocha";
import type { ProvisioningResult } from "../../lib/model/result";
import type { StoreBackend } from "../../lib/stores/backend";
import { MemoryBackend } from "../../lib/stores/memory";
import dpsClientNode from "../../nodes/dps-client";
import dpsEnrollmentGroupNode from "../../nodes/dps-enrollment-group";
import dpsServiceNode from "../../nodes/dps-service";
import { GROUP_ID, makeDpsFixture } from "../support/dps-fixtures";
import { within } from "../support/events";
import { HAPROXY_MISSING, haproxyPresent, startHaproxy } from "../support/haproxy";
import { freeTcpPort } from "../support/ports";
import {
  fakeStoreConfigModule,
  helper,
  startServer,
  stopServer,
  tlsConfigModule,
  type TestNode,
} from "../support/tbdevice-helper";

describe("nodes/dps-nodes", () => {
  type Msg = { topic?: string; payload: Record<string, unknown> };

  let store: StoreBackend | undefined;
  const modules = [
    dpsClientNode,
    dpsServiceNode,
    dpsEnrollmentGroupNode,
    tlsConfigModule,
    fakeStoreConfigModule(() => store),
  ];
  const fx = makeDpsFixture();

  before(() => startServer());
  afterEach(async () => {
    await helper.unload();
  });
  after(() => stopServer());

  function flow(port: number, device = fx.device, autoStart = true, svc: Record<string, unknown> = {}) {
    const g = fx.groupConfig();
    const nodes = [
      { id: "tab", type: "tab", label: "dps" },
      { id: "tls-svc", type: "tls-config", cert: "", key: "", ca: "", verifyservercert: true },
      { id: "tls-dev", type: "tls-config", cert: "", key: "", ca: "", verifyservercert: true },
      { id: "st", type: "credential-store-config" },
      {
        id: "grp",
        type: "dps-enrollment-group",
        name: "demo",
        groupId: GROUP_ID,
        owner: g.owner,
        attestationChain: g.attestationChain,
        expiredCertificateEnabled: false,
        hubId: g.hub.hubId,
        gateways: g.hub.gateways.join("\n"),
        hubCaPool: g.hub.caPool,
        authorizationProvider: "plgd",
        tokenMode: "static",
        caCertificate: fx.hubCa.cert,
        validity: "30d",
      },
      {
        id: "svc",
        type: "dps-service",
        z: "tab",
        host: "127.0.0.1",
        port,
        tls: "tls-svc",
        groups: ["grp"],
        wires: [["audit"]],
        x: 0,
        y: 0,
        ...svc,
      },
      {
        id: "cli",
        type: "dps-client",
        z: "tab",
        endpoints: `coaps+tcp://127.0.0.1:${port}`,
        tls: "tls-dev",
        store: "st",
        storeKey: "plgd-dps/node-test",
        retryIntervals: "0.2, 0.4",
        autoStart,
        wires: [["result"], ["status"]],
        x: 0,
        y: 0,
      },
      { id: "result", type: "helper", z: "tab", x: 0, y: 0 },
      { id: "status", type: "helper", z: "tab", x: 0, y: 0 },
      { id: "audit", type: "helper", z: "tab", x: 0, y: 0 },
      { id: "decisions", type: "helper", z: "tab", x: 0, y: 0 },
    ];
    const credentials = {
      "tls-svc": { certdata: fx.dpsServer.cert, keydata: fx.dpsServer.key },
      "tls-dev": { certdata: device.cert, keydata: device.key, cadata: fx.dpsCa },
      grp: { caKey: fx.hubCa.key, accessToken: "node-test-token" },
    };
    return { nodes, credentials };
  }

  function collect(id: string) {
    const got: Msg[] = [];
    const waiters: Array<{ pred: (m: Msg) => boolean; resolve: (m: Msg) => void }> = [];
    helper.getNode(id).on("input", (m: Msg) => {
      got.push(m);
      const i = waiters.findIndex((w) => w.pred(m));
      if (i >= 0) waiters.splice(i, 1)[0].resolve(m);
    });
    return {
      got,
      wait: (pred: (m: Msg) => boolean, what: string) =>
        within<Msg>(20000, what, (resolve) => {
          const seen = got.find(pred);
          if (seen) resolve(seen);
          else waiters.push({ pred, resolve });
        }),
    };
  }

  async function load(port: number, device = fx.device, autoStart = true, svc: Record<string, unknown> = {}) {
    const f = flow(port, device, autoStart, svc);
    await helper.load(modules, f.nodes, f.credentials);
    return {
      result: collect("result"),
      status: collect("status"),
      audit: collect("audit"),
      decisions: collect("decisions"),
      cli: helper.getNode("cli") as TestNode,
      svc: helper.getNode("svc") as TestNode,
    };
  }

  it("dps-client provisions against dps-service in one runtime and outputs the full result", async () => {
    store = new MemoryBackend();
    const port = await freeTcpPort();
    const { result, status, audit } = await load(port);
    const msg = await result.wait(() => true, "the provisioning result");
    const r = msg.payload as unknown as ProvisioningResult;
    assert.equal(msg.topic, "plgd-dps/provisioned");
    assert.equal(r.dialect, "plgd-dps");
    assert.equal(r.reused, false);
    assert.equal(r.credentials.type, "IDENTITY_CERTIFICATE");
    assert.equal(r.credentials.token, "node-test-token");
    assert.equal(new X509Certificate(r.credentials.certificate ?? "").subject, `CN=uuid:${r.device.id}`);
    assert.ok(r.credentials.privateKey?.includes("PRIVATE KEY"));
    assert.equal(r.configuration.hubId, fx.groupConfig().hub.hubId);
    const last = await status.wait(
      (m) => (m.payload.status as string[]).includes("CLOUD_STARTED"),
      "the provisioned status",
    );
    assert.equal(typeof last.payload.mask, "number");
    const ev = await audit.wait((m) => m.payload.outcome === "provisioned", "the audit event");
    assert.equal(ev.payload.deviceId, r.device.id);
    assert.equal(ev.payload.profile, GROUP_ID);
    assert.ok(!JSON.stringify(audit.got).includes("node-test-token"), "the audit output holds no token");
    assert.ok(!JSON.stringify(status.got).includes("node-test-token"), "the status output holds no token");
  });

  it("dps-service names its group in a config slot; a flow saved with the list still runs", async () => {
    // The slot (a real config reference) wins over a stale list naming a group that is gone.
    store = new MemoryBackend();
    const port = await freeTcpPort();
    const { result, audit } = await load(port, fx.device, true, {
      group: "grp",
      group3: "grp",
      groups: ["gone"],
    });
    await result.wait(() => true, "the provisioning result through the slot");
    const ev = await audit.wait((m) => m.payload.outcome === "provisioned", "the audit event");
    assert.equal(ev.payload.profile, GROUP_ID);
  });

  it("a restart resumes from the store; a factory reset provisions a new device", async () => {
    store = new MemoryBackend();
    const port = await freeTcpPort();
    const first = await load(port);
    const r1 = (await first.result.wait(() => true, "the first result"))
      .payload as unknown as ProvisioningResult;
    await helper.unload();

    // Started by a message here: an automatic start would answer before the test listens.
    const second = await load(port, fx.device, false);
    second.cli.receive({ topic: "start" });
    const r2 = (await second.result.wait(() => true, "the resumed result"))
      .payload as unknown as ProvisioningResult;
    assert.equal(r2.reused, true);
    assert.equal(r2.device.id, r1.device.id);
    assert.equal(r2.credentials.certificate, r1.credentials.certificate);

    second.cli.receive({ reset: true });
    const r3 = (await second.result.wait((m) => m.payload.reused === false, "the result after the reset"))
      .payload as unknown as ProvisioningResult;
    assert.notEqual(r3.device.id, r1.device.id);
    const stored = await store.get("plgd-dps/node-test");
    assert.equal((stored?.value as { device: { id: string } }).device.id, r3.device.id);
  });

  it("a device of an unknown manufacturer is refused with 4.03", async () => {
    store = new MemoryBackend();
    const port = await freeTcpPort();
    const { status, audit, result } = await load(port, fx.other.device);
    const failed = await status.wait(
      (m) => (m.payload.error as { coapCode?: string } | undefined)?.coapCode === "4.03",
      "the refusal",
    );
    assert.ok((failed.payload.status as string[]).includes("FAILURE"));
    assert.match(String((failed.payload.error as { message: string }).message), /no enrollment group/);
    const ev = await audit.wait((m) => m.payload.outcome === "refused", "the refused audit event");
    assert.equal(ev.payload.reason, "denied");
    assert.equal(result.got.length, 0);
  });

  it("dps-service with Decision on asks the flow on output 1 and issues the certificate once it approves", async () => {
    store = new MemoryBackend();
    const port = await freeTcpPort();
    const { decisions, audit, result, svc, status } = await load(port, fx.device, true, {
      decide: true,
      decideTimeout: "10",
      wires: [["decisions"], ["audit"]],
    });
    const asked = await decisions.wait(() => true, "the request to decide");
    const request = asked.payload as { deviceId?: string; proof?: string; dialect?: string };
    assert.equal(request.dialect, "plgd-dps");
    assert.equal(request.proof, "manufacturer-certificate");
    assert.equal(result.got.length, 0, "nothing issued before the decision");
    svc.receive({
      correlationId: (asked as { correlationId?: string }).correlationId,
      payload: { approve: true },
    });
    const r = (await result.wait(() => true, "the result after the approval"))
      .payload as unknown as ProvisioningResult;
    assert.equal(r.device.id, request.deviceId);
    const ev = await audit.wait((m) => m.payload.outcome === "provisioned", "the audit event on output 2");
    assert.equal(ev.payload.deviceId, r.device.id);
    assert.ok(status.got.length > 0);
  });

  it("dps-service keeps its devices in the credential store it names", async () => {
    store = new MemoryBackend();
    const port = await freeTcpPort();
    const { result } = await load(port, fx.device, true, { store: "st" });
    const r = (await result.wait(() => true, "the result")).payload as unknown as ProvisioningResult;
    const rec = await store.get(`plgd-dps/devices/${r.device.id}`);
    assert.equal((rec?.value as { deviceId?: string } | undefined)?.deviceId, r.device.id);
  });

  describe("behind HAProxy send-proxy-v2", () => {
    before(function () {
      if (!haproxyPresent()) {
        console.warn(HAPROXY_MISSING);
        this.skip();
      }
    });

    it("with the PROXY protocol ticked, dps-client provisions through HAProxy", async () => {
      store = new MemoryBackend();
      const backend = await freeTcpPort();
      const proxy = await startHaproxy([{ backendPort: backend }]);
      try {
        // The client dials HAProxy; the service listens behind it and expects its header.
        const { result, audit } = await load(proxy.ports[0]!, fx.device, true, {
          port: backend,
          proxyProtocol: true,
        });
        const r = (await result.wait(() => true, "the result through HAProxy"))
          .payload as unknown as ProvisioningResult;
        assert.equal(r.credentials.type, "IDENTITY_CERTIFICATE");
        const ev = await audit.wait((m) => m.payload.outcome === "provisioned", "the audit event");
        // The device's own address and port, from the header (on loopback both are 127.0.0.1).
        assert.match(String(ev.payload.remote), /^127\.0\.0\.1:\d+$/);
      } finally {
        await proxy.stop();
      }
    });

    it("unticked (a flow saved before the option), HAProxy's header breaks TLS: the client reports the failure", async () => {
      store = new MemoryBackend();
      const backend = await freeTcpPort();
      const proxy = await startHaproxy([{ backendPort: backend }]);
      try {
        const { status, result } = await load(proxy.ports[0]!, fx.device, true, { port: backend });
        const failed = await status.wait((m) => m.payload.error !== undefined, "a failed attempt");
        assert.ok(failed.payload.error);
        assert.equal(result.got.length, 0, "nothing provisioned");
      } finally {
        await proxy.stop();
      }
    });
  });
});
