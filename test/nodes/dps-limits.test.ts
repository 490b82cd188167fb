import assert from "node:assert/strict";
import { once } from "node:events";
import { connect, type Socket } from "node:net";
import { after, afterEach, before, describe, it } from "mocha";
import type { StoreBackend } from "../../lib/stores/backend";
import dpsClientNode from "../../nodes/dps-client";
import dpsEnrollmentGroupNode from "../../nodes/dps-enrollment-group";
import dpsServiceNode from "../../nodes/dps-service";
import { GROUP_ID, makeDpsFixture } from "../support/dps-fixtures";
import { within } from "../support/events";
import { freeTcpPort } from "../support/ports";
import {
  fakeStoreConfigModule,
  helper,
  startServer,
  stopServer,
  tlsConfigModule,
} from "../support/tbdevice-helper";

describe("nodes/dps-limits", () => {
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

  function flow(port: number, svc: Record<string, unknown>, device = fx.device, autoStart = true) {
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
        ...svc,
        wires: [["audit"]],
        x: 0,
        y: 0,
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
    ];
    const credentials = {
      "tls-svc": { certdata: fx.dpsServer.cert, keydata: fx.dpsServer.key },
      "tls-dev": { certdata: device.cert, keydata: device.key, cadata: fx.dpsCa },
      grp: { caKey: fx.hubCa.key, accessToken: "node-test-token" },
    };
    return { nodes, credentials };
  }

  it("dps-service: the per-address connection cap from the dialog closes connections over it at once", async () => {
    const port = await freeTcpPort();
    const f = flow(port, { maxConnections: "10", maxConnectionsPerAddress: "1" }, fx.device, false);
    await helper.load(modules, f.nodes, f.credentials);
    await within<void>(10000, "the service to listen", (resolve) => {
      const probe = () => {
        // From another address, so the probe never counts against 127.0.0.1's share.
        const s = connect({ port, host: "127.0.0.1", localAddress: "127.0.0.9" });
        s.on("error", () => setTimeout(probe, 50));
        s.on("connect", () => {
          s.destroy();
          resolve();
        });
      };
      probe();
    });
    const held: Socket[] = [];
    try {
      const first = connect(port, "127.0.0.1");
      first.on("error", () => undefined);
      held.push(first);
      await once(first, "connect");
      const second = connect(port, "127.0.0.1");
      second.on("error", () => undefined);
      held.push(second);
      await within<void>(5000, "the second connection to be closed", (resolve) =>
        second.once("close", () => resolve()),
      );
      assert.equal(first.destroyed, false, "the first one is held");
    } finally {
      for (const s of held) s.destroy();
    }
  });

  it("dps-service: a connection cap that is not a whole number from 1 stops it with a reason", async () => {
    const port = await freeTcpPort();
    const f = flow(port, { maxConnectionsPerAddress: "0" }, fx.device, false);
    await helper.load(modules, f.nodes, f.credentials);
    const log = (
      helper as unknown as { log(): { args: Array<[{ id?: string; level?: number; msg?: unknown }]> } }
    ).log();
    assert.ok(
      log.args.some(([e]) => e.id === "svc" && String(e.msg).includes("dps-service.errors.start")),
      "the node reports why it does not serve",
    );
    const refused = await new Promise<boolean>((resolve) => {
      const s = connect(port, "127.0.0.1");
      s.on("error", () => resolve(true));
      s.on("connect", () => {
        s.destroy();
        resolve(false);
      });
    });
    assert.ok(refused, "nothing listens");
  });
});
