import assert from "node:assert/strict";
import * as http from "node:http";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { describe, it } from "mocha";
import { TbProvisioningService } from "../../../lib/dialects/thingsboard/server";
import type { ServiceAuditEvent } from "../../../lib/service/audit";
import { FailureLimiter } from "../../../lib/service/failure-limit";
import { tbHttpHandler } from "../../../lib/dialects/thingsboard/server-http";
import { manage } from "../../../lib/dialects/thingsboard/server-manage";
import { PendingDecisions } from "../../../lib/service/pending";
import { RateLimiter } from "../../../lib/service/rate-limit";
import { StoreError, type StoreBackend } from "../../../lib/stores/backend";
import { FileBackend } from "../../../lib/stores/file";
import { MemoryBackend } from "../../../lib/stores/memory";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { makeTestPki } from "../../support/pki";
import { KEY, makeService, profile, request, SECRET } from "../../support/tbserve-fixtures";

const FAILURE = '{"status":"FAILURE","errorMsg":"Failed to provision device!"}';
const NOT_FOUND = '{"status":"NOT_FOUND","errorMsg":"Provision data was not found!"}';

async function answer(service: TbProvisioningService, body: string | Buffer): Promise<string> {
  return JSON.stringify((await service.handle(body, { transport: "test", remote: "10.0.0.1" })).response);
}

describe("ThingsBoard provisioning service core", () => {
  it("creates a device and issues a 20-character access token, exactly as ThingsBoard answers", async () => {
    const { service, audits } = makeService();
    const text = await answer(service, request({ deviceName: "dev-1" }));
    assert.match(
      text,
      /^\{"status":"SUCCESS","credentialsType":"ACCESS_TOKEN","credentialsValue":"[A-Za-z0-9]{20}"\}$/,
    );
    const stored = await service.registry.get("fleet", "dev-1");
    assert.equal(stored?.state, "provisioned");
    assert.equal(stored?.credentials?.token, JSON.parse(text).credentialsValue);
    assert.equal(audits.at(-1)?.outcome, "provisioned");
    assert.equal(audits.at(-1)?.deviceName, "dev-1");
    assert.deepEqual(service.counts, { provisioned: 1, refused: 1 - 1 });
  });

  it("trims the name, keeps a token the device supplied, refuses the same name twice", async () => {
    const { service, audits } = makeService();
    const ok = await answer(
      service,
      request({ deviceName: "  dev-2 ", credentialsType: "ACCESS_TOKEN", token: "mytoken123" }),
    );
    assert.equal(ok, '{"status":"SUCCESS","credentialsType":"ACCESS_TOKEN","credentialsValue":"mytoken123"}');
    assert.ok(await service.registry.get("fleet", "dev-2"));
    assert.equal(await answer(service, request({ deviceName: "dev-2" })), FAILURE);
    assert.equal(audits.at(-1)?.reason, "already-provisioned");
    assert.equal((await service.registry.get("fleet", "dev-2"))?.credentials?.token, "mytoken123");
  });

  it("answers NOT_FOUND for an unknown, empty or missing key and a wrong or missing secret", async () => {
    const { service, audits } = makeService();
    for (const body of [
      request({ provisionDeviceKey: "other" }),
      request({ provisionDeviceKey: "" }),
      JSON.stringify({ provisionDeviceSecret: SECRET, deviceName: "x" }),
      request({ provisionDeviceSecret: "wrong" }),
      request({ provisionDeviceSecret: "" }),
      JSON.stringify({ provisionDeviceKey: KEY }),
    ]) {
      assert.equal(await answer(service, body), NOT_FOUND, body);
    }
    assert.ok(audits.every((a) => a.reason === "not-found" && a.profile === undefined));
    assert.equal((await service.registry.list()).length, 0);
  });

  it("picks a random 20-character name when none is given; a blank name is a FAILURE", async () => {
    const { service, audits } = makeService();
    const text = await answer(service, request());
    assert.equal(JSON.parse(text).status, "SUCCESS");
    assert.match(audits.at(-1)?.deviceName ?? "", /^[A-Za-z0-9]{20}$/);
    const [entry] = await service.registry.list();
    assert.equal(entry.name, audits.at(-1)?.deviceName);
    assert.equal(await answer(service, request({ deviceName: "   " })), FAILURE);
    assert.equal(audits.at(-1)?.reason, "invalid");
  });

  it("answers FAILURE to bodies that are not a request, without storing anything", async () => {
    const { service, audits } = makeService();
    for (const body of [
      "not json",
      "[1,2]",
      "null",
      '"text"',
      JSON.stringify({ provisionDeviceKey: 5, provisionDeviceSecret: SECRET }),
      request({ deviceName: 7 }),
      request({ deviceName: "x", credentialsType: "PSK" }),
      request({ deviceName: "x", gateway: "yes" }),
      request({ deviceName: "x".repeat(70 * 1024) }),
      request({ deviceName: "a\u0001b" }),
      request({ deviceName: "n".repeat(300) }),
      Buffer.from([0xff, 0xfe, 0x00]),
    ]) {
      assert.equal(await answer(service, body), FAILURE);
    }
    assert.ok(audits.every((a) => a.outcome === "refused" && a.reason === "invalid"));
    assert.equal((await service.registry.list()).length, 0);
  });

  it("issues MQTT_BASIC as an object, generating what the device left out", async () => {
    const { service } = makeService();
    const gen = JSON.parse(
      await answer(service, request({ deviceName: "m1", credentialsType: "MQTT_BASIC" })),
    );
    assert.deepEqual(Object.keys(gen), ["status", "credentialsType", "credentialsValue"]);
    assert.deepEqual(Object.keys(gen.credentialsValue), ["clientId", "userName", "password"]);
    for (const v of Object.values(gen.credentialsValue)) assert.match(String(v), /^[A-Za-z0-9]{20}$/);
    const given = JSON.parse(
      await answer(
        service,
        request({ deviceName: "m2", credentialsType: "MQTT_BASIC", username: "u2", password: "p2" }),
      ),
    );
    assert.equal(given.credentialsValue.userName, "u2");
    assert.equal(given.credentialsValue.password, "p2");
    assert.match(given.credentialsValue.clientId, /^[A-Za-z0-9]{20}$/);
  });

  it("uses the profile's credentials type when the device asks for none", async () => {
    const { service } = makeService({ profiles: [profile({ credentialsType: "MQTT_BASIC" })] });
    const res = JSON.parse(await answer(service, request({ deviceName: "d" })));
    assert.equal(res.credentialsType, "MQTT_BASIC");
    const asked = JSON.parse(
      await answer(service, request({ deviceName: "e", credentialsType: "ACCESS_TOKEN" })),
    );
    assert.equal(asked.credentialsType, "ACCESS_TOKEN");
  });

  it("answers X509_CERTIFICATE with the device's certificate, FAILURE when it does not parse", async () => {
    const pki = makeTestPki("TbServe");
    const dev = pki.issueClient("x509-dev");
    const { service } = makeService();
    const res = JSON.parse(
      await answer(
        service,
        request({ deviceName: "x1", credentialsType: "X509_CERTIFICATE", hash: dev.cert }),
      ),
    );
    assert.deepEqual(res, {
      status: "SUCCESS",
      credentialsType: "X509_CERTIFICATE",
      credentialsValue: dev.cert,
    });
    const broken = dev.cert.replace(/[A-Za-z]{20}/, "AAAAAAAAAAAAAAAAAAAA");
    assert.equal(
      await answer(service, request({ deviceName: "x2", credentialsType: "X509_CERTIFICATE", hash: broken })),
      FAILURE,
    );
    assert.equal(
      await answer(service, request({ deviceName: "x3", credentialsType: "X509_CERTIFICATE" })),
      FAILURE,
    );
    assert.equal(
      await answer(
        service,
        request({ deviceName: "x4", credentialsType: "X509_CERTIFICATE", hash: "hello" }),
      ),
      FAILURE,
    );
  });

  it("check-pre-provisioned: only added names, once, with their own credentials", async () => {
    const { service, audits } = makeService({ profiles: [profile({ strategy: "check-pre-provisioned" })] });
    assert.equal(await answer(service, request({ deviceName: "pre-1" })), FAILURE);
    assert.equal(audits.at(-1)?.reason, "not-found");
    assert.equal(
      await service.registry.add("fleet", {
        name: "pre-1",
        credentials: { type: "ACCESS_TOKEN", token: "admin-token" },
      }),
      true,
    );
    assert.equal(await service.registry.add("fleet", { name: "pre-1" }), false);
    assert.equal(await service.registry.add("fleet", { name: "pre-2" }), true);
    assert.equal(
      await answer(service, request({ deviceName: "pre-1" })),
      '{"status":"SUCCESS","credentialsType":"ACCESS_TOKEN","credentialsValue":"admin-token"}',
    );
    assert.equal(await answer(service, request({ deviceName: "pre-1" })), FAILURE);
    assert.equal(audits.at(-1)?.reason, "already-provisioned");
    const second = JSON.parse(await answer(service, request({ deviceName: "pre-2" })));
    assert.match(second.credentialsValue, /^[A-Za-z0-9]{20}$/);
    const list = await service.registry.list("fleet");
    assert.deepEqual(
      list.map((d) => [d.name, d.state]),
      [
        ["pre-1", "provisioned"],
        ["pre-2", "provisioned"],
      ],
    );
    assert.ok(!JSON.stringify(list).includes("admin-token"));
  });

  it("re-provisions an existing device only when the profile allows it, with new credentials", async () => {
    const { service, audits } = makeService({ profiles: [profile({ allowReprovision: true })] });
    const first = JSON.parse(await answer(service, request({ deviceName: "r" }))).credentialsValue;
    const second = JSON.parse(await answer(service, request({ deviceName: "r" }))).credentialsValue;
    assert.notEqual(first, second);
    assert.equal((await service.registry.get("fleet", "r"))?.credentials?.token, second);
    assert.equal((await service.registry.get("fleet", "r"))?.provisionings, 2);
    assert.equal(audits.at(-1)?.reprovisioned, true);
  });

  it("lets only one of many simultaneous requests for one name succeed", async () => {
    const { service } = makeService();
    const answers = await Promise.all(
      Array.from({ length: 12 }, () => answer(service, request({ deviceName: "race" }))),
    );
    assert.equal(answers.filter((a) => a.includes("SUCCESS")).length, 1);
    assert.equal(answers.filter((a) => a === FAILURE).length, 11);
  });

  it("keeps several profiles apart by key and secret", async () => {
    const { service, audits } = makeService({
      profiles: [
        profile(),
        profile({ name: "other", provisionDeviceKey: "k2", provisionDeviceSecret: "s2" }),
      ],
    });
    assert.equal(
      JSON.parse(
        await answer(
          service,
          request({ provisionDeviceKey: "k2", provisionDeviceSecret: "s2", deviceName: "a" }),
        ),
      ).status,
      "SUCCESS",
    );
    assert.equal(audits.at(-1)?.profile, "other");
    assert.equal(await answer(service, request({ provisionDeviceKey: "k2", deviceName: "b" })), NOT_FOUND);
    assert.throws(() => makeService({ profiles: [profile(), profile()] }), /two profiles/);
  });

  it("asks the flow: approve with its credentials and attributes, deny, and no answer means deny", async () => {
    const pending = new PendingDecisions(50);
    const asked: unknown[] = [];
    const { service, audits } = makeService({
      decide: (req) => {
        asked.push(req);
        const { correlationId, answer: a } = pending.ask();
        const name = req.deviceName;
        if (name === "yes")
          pending.answer(correlationId, {
            approve: true,
            credentials: { token: "flow-token" },
            attributes: { room: 4 },
          });
        if (name === "no") pending.answer(correlationId, { approve: false, reason: "not today" });
        return a;
      },
    });
    assert.equal(
      await answer(service, request({ deviceName: "yes", password: "device-secret-pw" })),
      '{"status":"SUCCESS","credentialsType":"ACCESS_TOKEN","credentialsValue":"flow-token"}',
    );
    assert.deepEqual((await service.registry.get("fleet", "yes"))?.attributes, { room: 4 });
    assert.equal(await answer(service, request({ deviceName: "no" })), FAILURE);
    assert.equal(audits.at(-1)?.reason, "denied");
    assert.equal(audits.at(-1)?.detail, "not today");
    assert.equal(await answer(service, request({ deviceName: "silent" })), FAILURE);
    assert.equal(audits.at(-1)?.detail, "no decision in time");
    assert.equal(await service.registry.get("fleet", "silent"), undefined);
    const seen = JSON.stringify(asked);
    assert.ok(!seen.includes(SECRET) && !seen.includes(KEY) && !seen.includes("device-secret-pw"), seen);
    assert.equal(pending.size, 0);
  });

  it("never lets the flow approve invalid credentials", async () => {
    const { service, audits } = makeService({
      decide: async () => ({ approve: true, credentials: { type: "X509_CERTIFICATE", certificate: "nope" } }),
    });
    assert.equal(await answer(service, request({ deviceName: "bad" })), FAILURE);
    assert.equal(audits.at(-1)?.outcome, "error");
  });

  it("throttles a remote over its rate and serves others", async () => {
    let now = 0;
    const { service, audits } = makeService({
      limiter: new RateLimiter({ perSecond: 1, burst: 2 }, () => now),
    });
    const from = (remote: string) => service.handle(request(), { transport: "t", remote });
    assert.equal((await from("a")).response.status, "SUCCESS");
    assert.equal((await from("a")).response.status, "SUCCESS");
    assert.equal(JSON.stringify((await from("a")).response), FAILURE);
    assert.equal(audits.at(-1)?.reason, "throttled");
    assert.equal((await from("b")).response.status, "SUCCESS");
    now += 1000;
    assert.equal((await from("a")).response.status, "SUCCESS");
  });

  it("answers FAILURE with outcome error when the store fails, and keeps serving", async () => {
    const good = new MemoryBackend();
    let broken = true;
    const flaky: StoreBackend = Object.assign(Object.create(good) as StoreBackend, {
      update: (...args: Parameters<StoreBackend["update"]>) => {
        if (broken) return Promise.reject(new StoreError("IO", "disk full"));
        return good.update(...args);
      },
      // A device and its credential claims are written by one updateMany().
      updateMany: (...args: Parameters<StoreBackend["updateMany"]>) => {
        if (broken) return Promise.reject(new StoreError("IO", "disk full"));
        return good.updateMany(...args);
      },
    });
    const { service, audits } = makeService({ backend: flaky });
    assert.equal(await answer(service, request({ deviceName: "s" })), FAILURE);
    assert.equal(audits.at(-1)?.outcome, "error");
    broken = false;
    assert.equal(JSON.parse(await answer(service, request({ deviceName: "s" }))).status, "SUCCESS");
  });

  it("keeps the registry across service instances over the same store, and revokes", async () => {
    const backend = new MemoryBackend();
    const a = makeService({ backend }).service;
    await answer(a, request({ deviceName: "keep" }));
    const b = makeService({ backend, profiles: [profile()] }).service;
    assert.equal(await answer(b, request({ deviceName: "keep" })), FAILURE);
    assert.equal(await b.registry.revoke("fleet", "keep"), true);
    assert.equal(JSON.parse(await answer(b, request({ deviceName: "keep" }))).status, "SUCCESS");
  });

  it("keeps the registry in an encrypted file store across a restart", async () => {
    const directory = join(mkdtempSync(join(tmpdir(), "tbserve-")), "registry");
    const open = () => new FileBackend({ directory, passphrase: "store-pass", scryptN: 1024 });
    const first = open();
    const a = makeService({ backend: first }).service;
    const token = JSON.parse(await answer(a, request({ deviceName: "on-disk/1" })))
      .credentialsValue as string;
    const racing = await Promise.all(
      Array.from({ length: 5 }, () => answer(a, request({ deviceName: "on-disk/2" }))),
    );
    assert.equal(racing.filter((r) => r.includes("SUCCESS")).length, 1);
    await first.close();
    const second = open();
    const b = makeService({ backend: second, profiles: [profile()] }).service;
    assert.equal(await answer(b, request({ deviceName: "on-disk/1" })), FAILURE);
    assert.equal((await b.registry.get("fleet", "on-disk/1"))?.credentials?.token, token);
    assert.deepEqual(
      (await b.registry.list("fleet")).map((d) => d.name),
      ["on-disk/1", "on-disk/2"],
    );
    await second.close();
  });

  it("puts no secret in any audit event", async () => {
    const { service, audits } = makeService();
    await answer(service, request({ deviceName: "z", token: "dev-token-xyz" }));
    await answer(service, request({ deviceName: "z" }));
    await answer(service, request({ provisionDeviceSecret: "wrong-secret-abc" }));
    const text = JSON.stringify(audits);
    for (const s of [SECRET, KEY, "dev-token-xyz", "wrong-secret-abc"]) assert.ok(!text.includes(s), s);
  });
});

describe("ThingsBoard provisioning service: brute force (issue 8, defect 8)", () => {
  // Delays of 1-2 ms keep the run short; the counts, not the timing, are asserted.
  const fast = { slowAfter: 5, lockAfter: 100, baseDelayMs: 1, maxDelayMs: 2, lockMs: 3600000 };

  function guarded(over: Partial<typeof fast> = {}) {
    const audits: ServiceAuditEvent[] = [];
    const failures = new FailureLimiter({ ...fast, ...over }, Date.now, (lock) =>
      audits.push(TbProvisioningService.lockEvent(lock)),
    );
    const made = makeService({ failures, onAudit: (e) => audits.push(e) });
    return { ...made, audits, failures };
  }

  it("refuses 2,000 wrong secrets from one address after 100, with audit events; others are served at once", async () => {
    const { service, audits } = guarded();
    const statuses: Record<string, number> = {};
    for (let i = 0; i < 2000; i++) {
      const out = await service.handle(request({ provisionDeviceSecret: `guess-${i}`, deviceName: "x" }), {
        transport: "test",
        remote: "10.9.9.9",
      });
      const key = `${out.response.status}/${out.audit.outcome}`;
      statuses[key] = (statuses[key] ?? 0) + 1;
      // Meanwhile an honest device on another address is answered, never delayed.
      if (i % 400 === 399) {
        const ok = await service.handle(request({ deviceName: `honest-${i}` }), {
          transport: "test",
          remote: "10.1.1.1",
        });
        assert.equal(ok.response.status, "SUCCESS");
        assert.equal(ok.audit.delayedMs, undefined);
      }
    }
    assert.deepEqual(statuses, { "NOT_FOUND/refused": 100, "FAILURE/locked": 1900 });
    // Failures past the fifth were answered late; each lock (the address, and the profile
    // whose key was right) was announced once.
    assert.equal(audits.filter((e) => (e.delayedMs ?? 0) > 0).length, 95);
    const lock = audits.filter((e) => e.outcome === "locked" && e.transport === "any");
    assert.deepEqual(
      lock.map((e) => [e.remote, e.profile]),
      [
        ["10.9.9.9", undefined],
        [undefined, "fleet"],
      ],
    );
    const refused = audits.find((e) => e.outcome === "locked" && e.transport === "test");
    assert.equal(refused?.reason, "locked");
    assert.ok((refused?.retryAfterS ?? 0) > 3000);
    // Even the right secret from the locked address is refused until the lock ends.
    const locked = await service.handle(request({ deviceName: "late" }), {
      transport: "test",
      remote: "10.9.9.9",
    });
    assert.equal(locked.audit.outcome, "locked");
    assert.equal(service.lockedNow(), 2);
    const text = JSON.stringify(audits);
    for (const s of [SECRET, KEY, "guess-1"]) assert.ok(!text.includes(s), s);
  });

  it("parallel wrong guesses cannot overshoot the lock", async () => {
    const { service } = guarded({ slowAfter: 1000 });
    const outs = await Promise.all(
      Array.from({ length: 300 }, (_, i) =>
        service.handle(request({ provisionDeviceSecret: `p-${i}` }), { transport: "t", remote: "10.2.2.2" }),
      ),
    );
    const evaluated = outs.filter((o) => o.response.status === "NOT_FOUND").length;
    assert.equal(evaluated, 100);
    assert.equal(
      outs.filter((o) => o.audit.outcome === "throttled" || o.audit.outcome === "locked").length,
      300 - evaluated,
    );
  });

  it("a profile locked by guesses from many addresses still serves addresses with a clean record", async () => {
    const { service } = guarded({ slowAfter: 1000 });
    for (let a = 0; a < 50; a++)
      for (let i = 0; i < 3; i++)
        await service.handle(request({ provisionDeviceSecret: `w-${a}-${i}` }), {
          transport: "t",
          remote: `10.3.0.${a}`,
        });
    // One of the guessing addresses, with the right secret now: refused (profile locked for it).
    const suspect = await service.handle(request({ deviceName: "s" }), {
      transport: "t",
      remote: "10.3.0.49",
    });
    assert.equal(suspect.audit.outcome, "locked");
    assert.match(suspect.audit.detail ?? "", /provision key/);
    // A device elsewhere is provisioned without delay.
    const honest = await service.handle(request({ deviceName: "h" }), {
      transport: "t",
      remote: "192.168.7.7",
    });
    assert.equal(honest.response.status, "SUCCESS");
    assert.equal(honest.audit.delayedMs, undefined);
    // Unknown keys count against the address only.
    const unknown = await service.handle(request({ provisionDeviceKey: "nope" }), {
      transport: "t",
      remote: "192.168.7.8",
    });
    assert.equal(unknown.response.status, "NOT_FOUND");
  });

  it("over real HTTP: 2,000 wrong secrets from 127.0.0.1 are refused after 100; 127.0.0.2 is served meanwhile", async () => {
    const { service, audits } = guarded();
    const server = createServer(tbHttpHandler(service));
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
    const port = (server.address() as AddressInfo).port;
    const attacker = new http.Agent({ keepAlive: true, maxSockets: 1, localAddress: "127.0.0.1" });
    const honest = new http.Agent({ keepAlive: true, maxSockets: 1, localAddress: "127.0.0.2" });
    const post = (body: string, agent: http.Agent) =>
      new Promise<string>((resolve, reject) => {
        const req = http.request(
          {
            host: "127.0.0.1",
            port,
            path: "/api/v1/provision",
            method: "POST",
            agent,
            headers: { "content-type": "application/json" },
          },
          (res) => {
            const chunks: Buffer[] = [];
            res.on("data", (c: Buffer) => chunks.push(c));
            res.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
          },
        );
        req.setTimeout(15000, () => req.destroy(new Error("no answer within 15 s")));
        req.on("error", reject);
        req.end(body);
      });
    try {
      const answers: Record<string, number> = {};
      for (let i = 0; i < 2000; i++) {
        const a = JSON.parse(await post(request({ provisionDeviceSecret: `h-${i}` }), attacker))
          .status as string;
        answers[a] = (answers[a] ?? 0) + 1;
        if (i % 500 === 499) assert.match(await post(request({ deviceName: `web-${i}` }), honest), /SUCCESS/);
      }
      assert.deepEqual(answers, { NOT_FOUND: 100, FAILURE: 1900 });
      assert.equal(audits.filter((e) => e.outcome === "locked" && e.transport === "http").length, 1900);
      const served = audits.filter((e) => e.outcome === "provisioned");
      assert.equal(served.length, 4);
      assert.ok(served.every((e) => e.remote?.endsWith("127.0.0.2") && e.delayedMs === undefined));
    } finally {
      attacker.destroy();
      honest.destroy();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });

  it("can be turned off", async () => {
    const { service } = guarded({ enabled: false } as never);
    for (let i = 0; i < 150; i++)
      assert.equal(
        (
          await service.handle(request({ provisionDeviceSecret: "w" }), {
            transport: "t",
            remote: "10.4.4.4",
          })
        ).response.status,
        "NOT_FOUND",
      );
  });
});

describe("ThingsBoard provisioning service: credentials held by another device (issue 8, defect 10)", () => {
  it("of two devices racing for one client-chosen token exactly one gets SUCCESS", async () => {
    const { service } = makeService();
    for (let round = 0; round < 5; round++) {
      const token = `shared-token-${round}`;
      const outs = await Promise.all(
        Array.from({ length: 20 }, (_, i) =>
          answer(
            service,
            request({ deviceName: `racer-${round}-${i}`, credentialsType: "ACCESS_TOKEN", token }),
          ),
        ),
      );
      assert.equal(outs.filter((o) => o.includes("SUCCESS")).length, 1, outs.join("\n"));
      assert.equal(outs.filter((o) => o === FAILURE).length, 19);
    }
    // Later requests for it are refused too; another token is fine.
    assert.equal(
      await answer(
        service,
        request({ deviceName: "late", credentialsType: "ACCESS_TOKEN", token: "shared-token-0" }),
      ),
      FAILURE,
    );
    assert.match(await answer(service, request({ deviceName: "late", token: "own-token" })), /SUCCESS/);
  });

  it("refuses an MQTT_BASIC client id and user name pair and an X.509 certificate held by another device", async () => {
    const pki = makeTestPki();
    const { service, audits } = makeService();
    const basic = { credentialsType: "MQTT_BASIC", clientId: "cid-1", username: "user-1", password: "p1" };
    const outs = await Promise.all([
      answer(service, request({ deviceName: "m1", ...basic })),
      answer(service, request({ deviceName: "m2", ...basic, password: "other" })),
    ]);
    assert.equal(outs.filter((o) => o.includes("SUCCESS")).length, 1);
    assert.equal(audits.find((e) => e.detail?.includes("another device"))?.reason, "invalid");
    // Same client id with another user name is another credential (as in ThingsBoard).
    assert.match(
      await answer(service, request({ deviceName: "m3", ...basic, username: "user-3" })),
      /SUCCESS/,
    );
    const cert = pki.serverCert;
    const x = await Promise.all(
      ["x1", "x2", "x3"].map((n) =>
        answer(service, request({ deviceName: n, credentialsType: "X509_CERTIFICATE", hash: cert })),
      ),
    );
    assert.equal(x.filter((o) => o.includes("SUCCESS")).length, 1);
  });

  it("pre-provisioned credentials count, and a revoked device's token is free again", async () => {
    const { service } = makeService();
    await manage(service, "add", { name: "pre", credentials: { type: "ACCESS_TOKEN", token: "pre-token" } });
    await assert.rejects(
      manage(service, "add", { name: "pre-2", credentials: { type: "ACCESS_TOKEN", token: "pre-token" } }),
      (err: Error & { code?: string; status?: string }) =>
        err.code === "CONFLICT" && err.status === "CREDENTIALS_TAKEN",
    );
    assert.equal(await answer(service, request({ deviceName: "d", token: "pre-token" })), FAILURE);
    await manage(service, "revoke", { name: "pre" });
    assert.match(await answer(service, request({ deviceName: "d", token: "pre-token" })), /SUCCESS/);
    // The index keeps no credential in its keys.
    const keys = (await service.registry.backend.list()).map((e) => e.key).join(" ");
    assert.ok(!keys.includes("pre-token"), keys);
  });
});

describe("ThingsBoard provisioning service: the repeat window (issue 8, defect 9)", () => {
  function withWindow(ms: number) {
    let now = Date.parse("2026-01-01T00:00:00Z");
    const made = makeService({ repeatWindowMs: ms, now: () => now });
    return { ...made, advance: (d: number) => (now += d) };
  }

  it("the identical request within the window gets the same credentials; outside it or changed, FAILURE", async () => {
    const { service, audits, advance } = withWindow(60000);
    const first = await answer(service, request({ deviceName: "crash-1" }));
    assert.match(first, /SUCCESS/);
    advance(30000);
    assert.equal(await answer(service, request({ deviceName: "crash-1" })), first);
    assert.equal(audits.at(-1)?.repeated, true);
    assert.equal((await service.registry.get("fleet", "crash-1"))?.provisionings, 1);
    // A different body (another requested token), a wrong secret: not the same request.
    assert.equal(await answer(service, request({ deviceName: "crash-1", token: "mine" })), FAILURE);
    assert.equal(
      await answer(service, request({ deviceName: "crash-1", provisionDeviceSecret: "x" })),
      NOT_FOUND,
    );
    // Device-chosen credentials repeat too.
    const chosen = await answer(
      service,
      request({ deviceName: "crash-2", credentialsType: "MQTT_BASIC", clientId: "c" }),
    );
    assert.equal(
      await answer(service, request({ deviceName: "crash-2", credentialsType: "MQTT_BASIC", clientId: "c" })),
      chosen,
    );
    advance(30001);
    assert.equal(await answer(service, request({ deviceName: "crash-1" })), FAILURE);
    assert.equal(audits.at(-1)?.reason, "already-provisioned");
  });

  it("a rotated provision secret ends the repeat; off (the default) keeps ThingsBoard's FAILURE", async () => {
    const backend = new MemoryBackend();
    const a = makeService({ backend, repeatWindowMs: 60000 }).service;
    assert.match(await answer(a, request({ deviceName: "rot" })), /SUCCESS/);
    const rotated = makeService({
      profiles: [profile({ provisionDeviceSecret: "new-secret" })],
      backend,
      repeatWindowMs: 60000,
    }).service;
    assert.equal(
      await answer(rotated, request({ deviceName: "rot", provisionDeviceSecret: "new-secret" })),
      FAILURE,
    );
    const { service } = makeService();
    assert.match(await answer(service, request({ deviceName: "off" })), /SUCCESS/);
    assert.equal(await answer(service, request({ deviceName: "off" })), FAILURE);
  });

  it("identical requests racing within the window all get the one device's credentials", async () => {
    const { service } = withWindow(60000);
    const outs = await Promise.all(
      Array.from({ length: 10 }, () => answer(service, request({ deviceName: "r" }))),
    );
    assert.equal(new Set(outs).size, 1);
    assert.match(outs[0], /SUCCESS/);
  });
});
