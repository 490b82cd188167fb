/**
 * The contract every serving dialect keeps, written once and run against each one through
 * a descriptor (as MQTT.js runs one abstract client suite against every transport:
 * mqttjs/MQTT.js, test/abstract_client.js). Each case starts the dialect's service on
 * ephemeral loopback ports over a ServiceContext built by lib/service/context.ts, talks
 * to it with a real device-side peer of the protocol, and stops it again.
 *
 * What a protocol answers is its own (ThingsBoard's FAILURE JSON, HTTP 429, CONNACK 3):
 * the descriptor says which answer is which; the suite checks that the situations every
 * serving node promises end in them, and what the audit output says about them.
 */

import assert from "node:assert/strict";
import { mkdtempSync } from "node:fs";
import {
  createServer as createHttpServer,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from "node:http";
import type { AddressInfo } from "node:net";
import { createServer as createTcpServer } from "node:net";
import { createSocket } from "node:dgram";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, it } from "mocha";
import type { ProvisioningRequest } from "../../lib/model/service";
import type { ServiceAuditEvent } from "../../lib/service/audit";
import {
  buildServiceContext,
  type BuiltServiceContext,
  type ServiceSettings,
} from "../../lib/service/context";
import type {
  HttpClaim,
  HttpHandler,
  HttpMount,
  RunningService,
  ServingDialect,
} from "../../lib/service/dialect";
import type { StoreBackend } from "../../lib/stores/backend";
import { FileBackend } from "../../lib/stores/file";
import { MemoryBackend } from "../../lib/stores/memory";

/** What a device got back, written as text: a JSON body, "429 {...}", "CONNACK 3". */
export interface PeerAnswer {
  raw: string;
}

/** Where the suite serves a dialect's HTTP routes (ServiceContext.mountHttp), when it has some. */
export interface ContractHost {
  /** http://127.0.0.1:<port>: the web server the routes are mounted on. */
  httpBase: string;
}

export interface ContractPeer {
  /** The protocol's valid request for this device name, with the right proof. */
  valid(deviceName: string): Promise<PeerAnswer>;
  /** The same request with a wrong secret, key or proof. */
  wrongProof(deviceName: string): Promise<PeerAnswer>;
  /** A body that is not the protocol's (not JSON, not CBOR). */
  malformed(): Promise<PeerAnswer>;
  /** A body larger than the protocol's limit; absent where the transport cannot carry one. */
  oversized?(): Promise<PeerAnswer>;
  /** `n` valid requests for distinct names from one address, as fast as the peer can. */
  flood(n: number): Promise<PeerAnswer[]>;
}

export interface ServingDialectContract<Settings, Service extends RunningService> {
  /** "thingsboard over MQTT (paho-mqtt)". */
  name: string;
  dialect: ServingDialect<Settings, Service>;
  /** Settings that listen on fresh ephemeral loopback ports (called once per start). */
  settings(): Promise<Settings>;
  peer(service: Service, settings: Settings, host: ContractHost): ContractPeer;
  /** The protocol's answers, by situation. */
  is: {
    provisioned(a: PeerAnswer): boolean;
    /** A wrong proof. */
    refused(a: PeerAnswer): boolean;
    /** A malformed or oversized request. */
    failed(a: PeerAnswer): boolean;
    /** Over the rate limit. */
    throttled(a: PeerAnswer): boolean;
    /** Refused by the flow, or with no decision in time. */
    denied(a: PeerAnswer): boolean;
    /** Refused without looking at the proof, while locked after failed attempts. */
    locked(a: PeerAnswer): boolean;
    /** A device provisioned before asks again (only for `restartRule` "already-provisioned"). */
    alreadyProvisioned(a: PeerAnswer): boolean;
  };
  /**
   * What a provisioned device asking again gets after a restart: the protocol's "already
   * provisioned" answer (ThingsBoard), or its stored result again (a reuse rule).
   */
  restartRule: "already-provisioned" | "reuse";
  /** The secrets the peer sends (provision secrets, keys): none may reach an audit event. */
  secrets: string[];
  /** The credentials inside a provisioned answer (they must not reach the audit either). */
  credentialsOf(a: PeerAnswer): string[];
  /** Sockets the running service listens on, to check that stop() frees them. */
  endpoints(
    service: Service,
    settings: Settings,
  ): Array<{ protocol: "tcp" | "udp"; host: string; port: number }>;
  /** Routes served on the host's web server: after stop() a request to one is not served. */
  httpRoutes?: (settings: Settings) => Array<{ method: string; path: string }>;
}

interface Started<Settings, Service> {
  service: Service;
  settings: Settings;
  built: BuiltServiceContext;
  audits: ServiceAuditEvent[];
  asked: Array<{ correlationId: string; request: ProvisioningRequest }>;
  /** Resolves when the flow has been asked `n` times in all. */
  askedTimes(n: number): Promise<void>;
  peer: ContractPeer;
  web: { base: string };
  /** Stops the service (once); the stand-in web server stays up. */
  stopService(): Promise<void>;
  stop(): Promise<void>;
}

type ContextOverrides = Partial<Pick<ServiceSettings, "rateLimit" | "failureLimit">> & {
  store?: StoreBackend;
  decideMs?: number;
};

/** A plain node:http server standing in for Node-RED's httpNode. */
async function webHost(): Promise<{
  base: string;
  mount: (m: HttpMount, h: HttpHandler, claim?: HttpClaim) => () => void;
  close(): Promise<void>;
}> {
  const routes: Array<{ match: (req: IncomingMessage) => boolean; handler: HttpHandler }> = [];
  const server: Server = createHttpServer((req: IncomingMessage, res: ServerResponse) => {
    const route = routes.find((r) => r.match(req));
    if (!route) return void res.writeHead(404).end();
    route.handler(req, res, () => res.writeHead(404).end());
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
  return {
    base: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    mount(m, handler, claim) {
      const match =
        m === "use"
          ? (req: IncomingMessage) => (claim ? claim(req.method ?? "", req.url ?? "") : true)
          : (req: IncomingMessage) => req.method === "POST" && (req.url ?? "").split("?")[0] === m.post;
      const route = { match, handler };
      routes.push(route);
      return () => {
        const i = routes.indexOf(route);
        if (i >= 0) routes.splice(i, 1);
      };
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

function portFree(e: { protocol: "tcp" | "udp"; host: string; port: number }): Promise<boolean> {
  return new Promise((resolve) => {
    if (e.protocol === "tcp") {
      const srv = createTcpServer();
      srv.once("error", () => resolve(false));
      srv.listen(e.port, e.host, () => srv.close(() => resolve(true)));
    } else {
      const sock = createSocket(e.host.includes(":") ? "udp6" : "udp4");
      sock.once("error", () => resolve(false));
      sock.bind(e.port, e.host, () => sock.close(() => resolve(true)));
    }
  });
}

export function servingDialectContract<Settings, Service extends RunningService>(
  d: ServingDialectContract<Settings, Service>,
): void {
  describe(`serving dialect contract: ${d.name}`, () => {
    const running: Array<Started<Settings, Service>> = [];

    async function start(over: ContextOverrides = {}): Promise<Started<Settings, Service>> {
      const audits: ServiceAuditEvent[] = [];
      const asked: Started<Settings, Service>["asked"] = [];
      const waiters: Array<{ n: number; resolve: () => void }> = [];
      const onAsk = (correlationId: string, request: ProvisioningRequest) => {
        asked.push({ correlationId, request });
        for (const w of waiters.splice(0)) {
          if (asked.length >= w.n) w.resolve();
          else waiters.push(w);
        }
      };
      const web = await webHost();
      const built = buildServiceContext({
        dialect: d.dialect.id,
        store: over.store ?? new MemoryBackend(),
        rateLimit: over.rateLimit ?? false,
        failureLimit: over.failureLimit ?? { enabled: false },
        lockAccount: d.dialect.lockAccount,
        decide: over.decideMs !== undefined ? { timeoutMs: over.decideMs, ask: onAsk } : undefined,
        audit: (e) => audits.push(e),
        mountHttp: web.mount,
        refused: () => undefined,
      });
      const settings = await d.settings();
      assert.equal(d.dialect.check(settings), undefined);
      const service = await d.dialect.start(settings, built.ctx);
      let stopping: Promise<void> | undefined;
      const stopService = () => {
        built.cancelDecisions("test over");
        stopping ??= service.stop();
        return stopping;
      };
      const s: Started<Settings, Service> = {
        service,
        settings,
        built,
        audits,
        asked,
        askedTimes: (n) =>
          new Promise<void>((resolve) => {
            if (asked.length >= n) resolve();
            else waiters.push({ n, resolve });
          }),
        peer: d.peer(service, settings, { httpBase: web.base }),
        web,
        stopService,
        async stop() {
          await stopService();
          await web.close();
        },
      };
      running.push(s);
      return s;
    }

    afterEach(async () => {
      await Promise.allSettled(running.splice(0).map((s) => s.stop()));
    });

    const outcomes = (s: Started<Settings, Service>) => s.audits.map((e) => e.outcome);

    it("a valid request is provisioned, with one audit event that names the dialect and no secret", async () => {
      const s = await start();
      const a = await s.peer.valid("contract-ok-1");
      assert.ok(d.is.provisioned(a), a.raw);
      const provisioned = s.audits.filter((e) => e.outcome === "provisioned");
      assert.equal(provisioned.length, 1, JSON.stringify(s.audits));
      assert.equal(provisioned[0].dialect, d.dialect.id);
      const text = JSON.stringify(s.audits);
      for (const secret of [...d.secrets, ...d.credentialsOf(a)]) assert.ok(!text.includes(secret), secret);
      assert.equal(s.service.counts().provisioned, 1);
    });

    it("a wrong proof gets the protocol's refusal and an audit event 'refused'", async () => {
      const s = await start();
      const a = await s.peer.wrongProof("contract-wrong-1");
      assert.ok(d.is.refused(a), a.raw);
      assert.deepEqual(outcomes(s), ["refused"]);
      assert.ok(!JSON.stringify(s.audits).includes(d.secrets[0]));
      assert.equal(s.service.counts().refused, 1);
    });

    it("a malformed or oversized body gets the protocol's failure answer, and the service keeps serving", async () => {
      const s = await start();
      const bad = await s.peer.malformed();
      assert.ok(d.is.failed(bad), bad.raw);
      if (s.peer.oversized) {
        const big = await s.peer.oversized();
        assert.ok(d.is.failed(big), big.raw);
      }
      const ok = await s.peer.valid("contract-after-bad");
      assert.ok(d.is.provisioned(ok), ok.raw);
      assert.deepEqual(outcomes(s), [...(s.peer.oversized ? ["refused"] : []), "refused", "provisioned"]);
    });

    it("a flood past the rate limit gets the protocol's throttling answer", async () => {
      const s = await start({ rateLimit: { perSecond: 0.01, burst: 3 } });
      const answers = await s.peer.flood(6);
      assert.equal(
        answers.filter((a) => d.is.provisioned(a)).length,
        3,
        answers.map((a) => a.raw).join("\n"),
      );
      assert.equal(answers.filter((a) => d.is.throttled(a)).length, 3, answers.map((a) => a.raw).join("\n"));
    });

    it("with decisions on, a request waits for the flow: approved is provisioned, refused is refused", async () => {
      const s = await start({ decideMs: 60000 });
      const approved = s.peer.valid("contract-approve");
      await s.askedTimes(1);
      assert.equal(s.asked[0].request.dialect, d.dialect.id);
      assert.ok(!JSON.stringify(s.asked[0].request).includes(d.secrets[0]));
      assert.equal(s.built.answer(s.asked[0].correlationId, { approve: true }), "answered");
      assert.ok(d.is.provisioned(await approved));

      const refused = s.peer.valid("contract-refuse");
      await s.askedTimes(2);
      assert.equal(
        s.built.answer(s.asked[1].correlationId, { approve: false, reason: "not today" }),
        "answered",
      );
      const a = await refused;
      assert.ok(d.is.denied(a), a.raw);
      assert.equal(s.audits.at(-1)?.reason, "denied");
      assert.equal(s.built.answer(s.asked[1].correlationId, { approve: true }), "unknown");
    });

    it("with decisions on, no answer in time is a refusal", async () => {
      const s = await start({ decideMs: 300 });
      const a = await s.peer.valid("contract-silent");
      assert.equal(s.asked.length, 1);
      assert.ok(d.is.denied(a), a.raw);
      assert.equal(s.audits.at(-1)?.outcome, "refused");
      assert.equal(s.built.waiting, 0);
    });

    it("failures past the lock threshold lock out, with an audit event 'locked'", async () => {
      const s = await start({ failureLimit: { enabled: true, slowAfter: 100, lockAfter: 3, lockMs: 60000 } });
      for (let i = 0; i < 3; i++) assert.ok(d.is.refused(await s.peer.wrongProof(`contract-lock-${i}`)));
      // The address, and the account where the protocol names one, each lock once.
      const locks = s.audits.filter((e) => e.outcome === "locked");
      assert.ok(locks.length >= 1 && locks.length <= 2, JSON.stringify(s.audits));
      for (const lock of locks) assert.equal(lock.dialect, d.dialect.id);
      assert.ok(s.service.counts().locked >= 1);
      // Locked: the right proof is not even looked at.
      const a = await s.peer.valid("contract-lock-ok");
      assert.ok(d.is.locked(a), a.raw);
      assert.equal(s.service.counts().provisioned, 0);
    });

    it("after a restart on the same store, a provisioned device stays provisioned", async () => {
      const directory = join(mkdtempSync(join(tmpdir(), "serving-contract-")), "store");
      const open = () => new FileBackend({ directory, passphrase: "contract-pass", scryptN: 1024 });
      const firstStore = open();
      const first = await start({ store: firstStore });
      const a = await first.peer.valid("contract-restart");
      assert.ok(d.is.provisioned(a), a.raw);
      await first.stop();
      await firstStore.close();

      const secondStore = open();
      try {
        const second = await start({ store: secondStore });
        const b = await second.peer.valid("contract-restart");
        if (d.restartRule === "already-provisioned") {
          assert.ok(d.is.alreadyProvisioned(b), b.raw);
          assert.equal(second.audits.at(-1)?.reason, "already-provisioned");
        } else {
          assert.ok(d.is.provisioned(b), b.raw);
          assert.deepEqual(d.credentialsOf(b), d.credentialsOf(a));
        }
        await second.stop();
      } finally {
        await secondStore.close();
      }
    });

    it("stop() while a request waits for the flow refuses it and sends nothing on a closed socket", async () => {
      const s = await start({ decideMs: 60000 });
      const waiting = s.peer.valid("contract-stopped");
      await s.askedTimes(1);
      await s.stopService();
      // The peer hears a refusal, or nothing when its connection went with the listener.
      const a = await waiting;
      assert.ok(!d.is.provisioned(a), a.raw);
      assert.equal(s.built.waiting, 0);
      assert.equal(s.service.counts().provisioned, 0);
    });

    it("stop() leaves no listener: every port can be bound again, no route is served", async () => {
      const s = await start();
      assert.ok(d.is.provisioned(await s.peer.valid("contract-stop")));
      const endpoints = d.endpoints(s.service, s.settings);
      const routes = d.httpRoutes?.(s.settings) ?? [];
      assert.ok(endpoints.length + routes.length > 0, "the service listens somewhere");
      // The web server outlives the service, as Node-RED's does, so its routes can be tried.
      await s.stopService();
      for (const e of endpoints)
        assert.ok(await portFree(e), `${e.protocol} ${e.host}:${e.port} still bound`);
      for (const r of routes) {
        const res = await fetch(s.web.base + r.path, { method: r.method, body: "{}" });
        assert.equal(res.status, 404, `${r.method} ${r.path} still served`);
      }
    });
  });
}
