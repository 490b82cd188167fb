import assert from "node:assert/strict";
import { createPrivateKey, X509Certificate } from "node:crypto";
import { describe, it } from "mocha";
import { DpsClient, type DpsStatusEvent } from "../../../lib/dialects/plgd-dps/client";
import { ownerToUuid, parseEnrollmentGroup } from "../../../lib/dialects/plgd-dps/enrollment";
import { PATHS } from "../../../lib/dialects/plgd-dps/ocf";
import { Opt } from "../../../lib/transports/coap-tcp/codes";
import { uintOption } from "../../../lib/transports/coap-tcp/options";
import { DpsService } from "../../../lib/dialects/plgd-dps/server";
import { renewalDelayMs } from "../../../lib/pki/validity";
import type { ProvisioningResult } from "../../../lib/model/result";
import { MemoryBackend } from "../../../lib/stores/memory";
import {
  FakeClock,
  HUB_ID,
  StatusLog,
  inProcessConnector,
  makeDpsFixture,
  type Interceptor,
} from "../../support/dps-fixtures";

const fx = makeDpsFixture();
const EPS = ["coaps+tcp://dps-a.example:15684", "coaps+tcp://dps-b.example:15684"];

function setup(
  opts: {
    intercept?: Interceptor;
    validityMs?: number;
    store?: MemoryBackend;
    clock?: FakeClock;
    random?: () => number;
    deviceId?: string;
  } = {},
) {
  const clock = opts.clock ?? new FakeClock();
  const service = new DpsService({
    groups: [parseEnrollmentGroup(fx.groupConfig(opts.validityMs ? { validityMs: opts.validityMs } : {}))],
    now: () => new Date(clock.now()),
  });
  const log = new StatusLog();
  const results: ProvisioningResult[] = [];
  const endpoints: string[] = [];
  const store = opts.store ?? new MemoryBackend();
  const client = new DpsClient({
    endpoints: EPS,
    connect: inProcessConnector(service, fx.deviceChain, { intercept: opts.intercept, endpoints }),
    store,
    storeKey: "plgd-dps/test",
    clock,
    random: opts.random ?? (() => 0),
    onStatus: log.push,
    onResult: (r) => results.push(r),
    deviceId: opts.deviceId,
  });
  return { clock, client, log, results, endpoints, store, service };
}

/** Runs scheduled-now work until `stop` holds; timers with a delay are left for the test to fire. */
async function pump(clock: FakeClock, stop: () => boolean, max = 500): Promise<void> {
  for (let i = 0; i < max && !stop(); i++) {
    await new Promise((r) => setImmediate(r));
    const zero = clock.timers.filter((t) => t.ms === 0).sort((a, b) => a.id - b.id)[0];
    if (zero) {
      clock.timers.splice(clock.timers.indexOf(zero), 1);
      zero.fn();
    }
  }
  assert.ok(stop(), "the client did not get there");
}

const failedEvents = (log: StatusLog) => log.events.filter((e) => e.retryInMs !== undefined);

function steps(events: DpsStatusEvent[]): string[] {
  return events.map((e) => `${e.step}:${e.status.filter((s) => s !== "INITIALIZED").join("|")}`);
}

describe("plgd client: provisioning", () => {
  it("runs time, owner, cloud, credentials, ACLs with a status on every change, and outputs the full result", async () => {
    const { clock, client, log, results, store } = setup();
    await client.start();
    await pump(clock, () => results.length === 1);
    assert.deepEqual(steps(log.events), [
      "start:",
      "time:GET_TIME",
      "time:HAS_TIME",
      "owner:GET_OWNER|HAS_TIME",
      "owner:HAS_OWNER|HAS_TIME",
      "cloud:GET_CLOUD|HAS_OWNER|HAS_TIME",
      "cloud:HAS_CLOUD|HAS_OWNER|HAS_TIME",
      "credentials:GET_CREDENTIALS|HAS_CLOUD|HAS_OWNER|HAS_TIME",
      "credentials:HAS_CREDENTIALS|HAS_CLOUD|HAS_OWNER|HAS_TIME",
      "acls:HAS_CREDENTIALS|GET_ACLS|HAS_CLOUD|HAS_OWNER|HAS_TIME",
      "acls:HAS_CREDENTIALS|HAS_ACLS|HAS_CLOUD|HAS_OWNER|HAS_TIME",
      "provisioned:HAS_CREDENTIALS|HAS_ACLS|HAS_CLOUD|CLOUD_STARTED|HAS_OWNER|HAS_TIME",
    ]);
    const last = log.events[log.events.length - 1];
    assert.equal(last.legacyMask, 1 | 2 | 4 | 8);
    const r = results[0];
    assert.equal(r.dialect, "plgd-dps");
    assert.equal(r.proof, "manufacturer-certificate");
    assert.equal(r.reused, false);
    assert.equal(r.endpoint, EPS[0]);
    assert.equal(r.device.id, client.deviceId);
    assert.equal(r.credentials.type, "IDENTITY_CERTIFICATE");
    assert.equal(r.credentials.token, "static-access-token-123");
    const leaf = new X509Certificate(r.credentials.certificate ?? "");
    assert.equal(leaf.subject, `CN=uuid:${r.device.id}`);
    assert.ok(leaf.checkPrivateKey(createPrivateKey(r.credentials.privateKey ?? "")));
    assert.equal(r.credentials.caCertificates?.length, 1);
    assert.equal(r.expiresAt, new Date(leaf.validTo).toISOString());
    assert.equal(r.configuration.owner, ownerToUuid("user-1"));
    assert.equal(r.configuration.hubId, HUB_ID);
    assert.equal(r.configuration.authorizationProvider, "plgd");
    assert.deepEqual(r.configuration.servers, [
      { uri: "coaps+tcp://hub.example:5684", id: HUB_ID },
      { uri: "coaps+tcp://hub2.example:5684", id: HUB_ID },
    ]);
    assert.equal((r.configuration.acls as unknown[]).length, 3);
    const saved = await store.get("plgd-dps/test");
    assert.equal(
      (saved?.value as { credentials: { certificate: string } }).credentials.certificate,
      r.credentials.certificate,
    );
    assert.equal(saved?.meta.expiresAt, r.expiresAt);
    await client.stop();
  });
});

describe("plgd client: retries", () => {
  it("waits t/2 + random[0, t/2) on the schedule, then moves to the next endpoint", async () => {
    const intercept: Interceptor = (req) =>
      req.path === `/${PATHS.time}` ? { code: "5.03", payload: Buffer.alloc(0) } : undefined;
    const { clock, client, log, endpoints } = setup({ intercept });
    await client.start();
    const delays: number[] = [];
    for (let i = 0; i < 6; i++) {
      await pump(clock, () => failedEvents(log).length === i + 1);
      const e = failedEvents(log)[i];
      assert.ok(e.status.includes("TRANSIENT_FAILURE"));
      assert.equal(e.error?.code, "UNAVAILABLE");
      assert.equal(e.error?.name, "CONNECT");
      assert.equal(e.error?.coapCode, "5.03");
      delays.push(e.retryInMs as number);
      assert.equal(clock.nextDelay(), e.retryInMs);
      clock.fire();
    }
    assert.deepEqual(delays, [5000, 10000, 20000, 40000, 60000, 5000]);
    assert.deepEqual(endpoints, [EPS[0], EPS[0], EPS[0], EPS[0], EPS[0], EPS[1], EPS[1]]);
    await client.stop();
  });

  it("uses the random half of the wait", async () => {
    const intercept: Interceptor = () => ({ code: "5.03", payload: Buffer.alloc(0) });
    const { clock, client, log } = setup({ intercept, random: () => 0.5 });
    await client.start();
    await pump(clock, () => failedEvents(log).length === 1);
    assert.equal(failedEvents(log)[0].retryInMs, 7500);
    await client.stop();
  });

  it("retries at once after a step timeout (the timeout already waited)", async () => {
    const intercept: Interceptor = (req) => (req.path === `/${PATHS.owner}` ? "hang" : undefined);
    const { clock, client, log } = setup({ intercept });
    await client.start();
    await pump(clock, () => log.events.some((e) => e.status.includes("GET_OWNER")));
    await new Promise((r) => setImmediate(r));
    assert.equal(clock.nextDelay(), 10_000, "the step's timeout is the first schedule value");
    clock.fire();
    await pump(clock, () => failedEvents(log).length === 1);
    assert.equal(failedEvents(log)[0].retryInMs, 0);
    assert.equal(failedEvents(log)[0].error?.code, "TIMEOUT");
    assert.match(failedEvents(log)[0].error?.message ?? "", /no answer within 10 s/);
    await client.stop();
  });

  it("forces a full re-provision after three transient failures in a row", async () => {
    const intercept: Interceptor = (req) =>
      req.path === `/${PATHS.credentials}` ? { code: "5.04", payload: Buffer.alloc(0) } : undefined;
    const { clock, client, log } = setup({ intercept });
    await client.start();
    for (let i = 1; i <= 3; i++) {
      await pump(clock, () => failedEvents(log).length === i);
      const e = failedEvents(log)[i - 1];
      assert.equal(e.status.includes("HAS_CLOUD"), i < 3, `after failure ${i}`);
      clock.fire();
    }
    await pump(clock, () => log.events.filter((e) => e.step === "time").length === 3);
    await client.stop();
  });

  it("treats a 4.xx answer as a failure: FAILURE, error code, full re-provision", async () => {
    const intercept: Interceptor = (req, n) =>
      req.path === `/${PATHS.acls}` && n < 7 ? { code: "4.03", payload: Buffer.from("nope") } : undefined;
    const { clock, client, log, results } = setup({ intercept });
    await client.start();
    await pump(clock, () => failedEvents(log).length === 1);
    const e = failedEvents(log)[0];
    assert.ok(e.status.includes("FAILURE"));
    assert.ok(!e.status.includes("HAS_CREDENTIALS"));
    assert.deepEqual(e.error, {
      code: "DENIED",
      name: "ERROR_RESPONSE",
      plgdCode: 1,
      message: "GET /api/v1/provisioning/acls answered 4.03: nope",
      coapCode: "4.03",
      transient: false,
    });
    clock.fire();
    await pump(clock, () => results.length === 1);
    await client.stop();
  });

  it("waits at least the Max-Age of a throttling service's 5.03 (BUSY)", async () => {
    const intercept: Interceptor = (req) =>
      req.path === `/${PATHS.time}`
        ? { code: "5.03", payload: Buffer.alloc(0), options: [uintOption(Opt.MAX_AGE, 90)] }
        : undefined;
    const { clock, client, log } = setup({ intercept });
    await client.start();
    await pump(clock, () => failedEvents(log).length === 1);
    const e = failedEvents(log)[0];
    assert.equal(e.error?.code, "BUSY");
    assert.ok(e.status.includes("TRANSIENT_FAILURE"));
    assert.equal(e.retryInMs, 90_000);
    await client.stop();
  });

  it("a connection that cannot be opened is transient", async () => {
    const { clock, log, client } = setup();
    const c2 = new DpsClient({
      endpoints: EPS,
      connect: async () => {
        throw Object.assign(new Error("connect ECONNREFUSED"), { code: "COAP_CONNECT" });
      },
      clock,
      random: () => 0,
      onStatus: log.push,
    });
    await c2.start();
    await pump(clock, () => failedEvents(log).length === 1);
    assert.ok(failedEvents(log)[0].status.includes("TRANSIENT_FAILURE"));
    assert.equal(failedEvents(log)[0].error?.code, "CONNECT");
    await c2.stop();
    await client.stop();
  });
});

describe("plgd client: one run per start", () => {
  it("a stop while a step waits for its answer ends the run: no event, result, timer or connection after it", async () => {
    let closed = 0;
    const { clock, service } = setup();
    const log = new StatusLog();
    const results: ProvisioningResult[] = [];
    let answer: (() => void) | undefined;
    const client = new DpsClient({
      endpoints: EPS,
      clock,
      random: () => 0,
      onStatus: log.push,
      onResult: (r) => results.push(r),
      // The owner step's answer arrives only after the stop.
      connect: async () => ({
        request: (req) => {
          const served = service.handle({
            ...req,
            remote: "127.0.0.1:1",
            payload: req.payload ?? Buffer.alloc(0),
            peerCertificateChain: fx.deviceChain,
          });
          if (req.path !== `/${PATHS.owner}`) return served;
          return new Promise((resolve) => {
            answer = () => resolve(served);
          });
        },
        close: async () => {
          closed++;
        },
      }),
    });
    await client.start();
    await pump(clock, () => log.events.some((e) => e.status.includes("GET_OWNER")));
    const seen = log.events.length;
    await client.stop();
    answer?.();
    for (let i = 0; i < 10; i++) await new Promise((r) => setImmediate(r));
    assert.equal(log.events.length, seen, "nothing reported after the stop");
    assert.equal(results.length, 0);
    assert.equal(clock.timers.length, 0, "no timer left");
    assert.equal(closed, 1, "the run's connection is closed by the time stop resolves");
  });

  it("a factory reset during a hanging step starts a new run the old one cannot disturb", async () => {
    let hang = true;
    const intercept: Interceptor = (req) => (hang && req.path === `/${PATHS.cloud}` ? "hang" : undefined);
    const { clock, client, log, results } = setup({ intercept });
    await client.start();
    await pump(clock, () => log.events.some((e) => e.status.includes("GET_CLOUD")));
    const before = client.deviceId;
    hang = false;
    await client.factoryReset();
    await pump(clock, () => results.length === 1);
    assert.notEqual(results[0].device.id, before);
    const afterReset = log.events.slice(log.events.findIndex((e) => e.step === "reset"));
    assert.ok(
      afterReset.every((e) => e.deviceId === undefined || e.deviceId === results[0].device.id),
      "no event of the old run after the reset",
    );
    assert.equal(afterReset.filter((e) => e.step === "provisioned").length, 1);
    await client.stop();
  });
});

describe("plgd client: renewal, restart, factory reset", () => {
  it("renews the identity certificate at 2/3 of its validity", async () => {
    const { clock, client, log, results } = setup({ validityMs: 3 * 86400_000 });
    await client.start();
    await pump(clock, () => results.length === 1);
    const notAfter = new Date(results[0].expiresAt ?? 0);
    assert.equal(clock.timers.length, 1);
    const expected = renewalDelayMs(notAfter, clock.now());
    assert.equal(clock.nextDelay(), expected);
    assert.ok(expected > 1.9 * 86400_000 && expected < 2.1 * 86400_000);
    clock.fire();
    await pump(clock, () => results.length === 2);
    assert.ok(log.events.some((e) => e.step === "renew" && e.status.includes("RENEW_CREDENTIALS")));
    assert.notEqual(results[1].credentials.certificate, results[0].credentials.certificate);
    assert.notEqual(results[1].credentials.privateKey, results[0].credentials.privateKey);
    assert.equal(results[1].credentials.token, results[0].credentials.token);
    assert.ok(!log.events[log.events.length - 1].status.includes("RENEW_CREDENTIALS"));
    await client.stop();
  });

  it("resumes from the store after a restart without asking again", async () => {
    const first = setup();
    await first.client.start();
    await pump(first.clock, () => first.results.length === 1);
    await first.client.stop();
    const second = setup({ store: first.store, clock: first.clock });
    await second.client.start();
    assert.equal(second.results.length, 1);
    assert.equal(second.results[0].reused, true);
    assert.equal(second.results[0].device.id, first.results[0].device.id);
    assert.deepEqual(second.endpoints, []);
    assert.ok(second.log.events[0].status.includes("CLOUD_STARTED"));
    await second.client.stop();
  });

  it("renews at start when the stored certificate expires within an hour", async () => {
    const first = setup({ validityMs: 2 * 3600_000 });
    await first.client.start();
    await pump(first.clock, () => first.results.length === 1);
    await first.client.stop();
    first.clock.t = Date.parse(first.results[0].expiresAt ?? "") - 1800_000;
    const second = setup({ store: first.store, clock: first.clock, validityMs: 2 * 3600_000 });
    await second.client.start();
    await pump(second.clock, () => second.results.length === 1);
    assert.equal(second.results[0].reused, false);
    assert.ok(second.log.events.some((e) => e.step === "renew"));
    assert.ok(!second.log.events.some((e) => e.step === "time"), "a renewal asks for credentials only");
    await second.client.stop();
  });

  it("factory reset clears the store and provisions again as a new device", async () => {
    const { clock, client, results, store, log } = setup();
    await client.start();
    await pump(clock, () => results.length === 1);
    const before = results[0].device.id;
    await client.factoryReset();
    assert.ok(log.events.some((e) => e.step === "reset" && e.mask === 0));
    await pump(clock, () => results.length === 2);
    assert.notEqual(results[1].device.id, before);
    const entry = await store.get("plgd-dps/test");
    assert.equal((entry?.value as { device: { id: string } }).device.id, results[1].device.id);
    await client.stop();
    assert.equal(clock.timers.length, 0, "stop leaves no timer behind");
  });

  it("keeps a configured device id", async () => {
    const di = "1e0d2c3b-4a59-4687-9a8b-7c6d5e4f3a2b";
    const { clock, client, results } = setup({ deviceId: di });
    await client.start();
    await pump(clock, () => results.length === 1);
    assert.equal(results[0].device.id, di);
    await client.stop();
  });
});
