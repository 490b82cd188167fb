import assert from "node:assert/strict";
import { describe, it } from "mocha";
import { DpsClient } from "../../../lib/dialects/plgd-dps/client";
import { parseEnrollmentGroup } from "../../../lib/dialects/plgd-dps/enrollment";
import { PATHS } from "../../../lib/dialects/plgd-dps/ocf";
import { DpsService } from "../../../lib/dialects/plgd-dps/server";
import type { ProvisioningResult } from "../../../lib/model/result";
import { MemoryBackend } from "../../../lib/stores/memory";
import { MAX_TIMER_MS } from "../../../lib/util/long-timer";
import {
  FakeClock,
  StatusLog,
  inProcessConnector,
  makeDpsFixture,
  type Interceptor,
} from "../../support/dps-fixtures";

const fx = makeDpsFixture();
const DAY = 86400_000;

/** A fake clock that treats an oversized delay as Node does: 1 ms and a warning. */
class NodeLikeClock extends FakeClock {
  overflows = 0;
  readonly asked: number[] = [];
  override setTimeout(fn: () => void, ms: number): unknown {
    this.asked.push(ms);
    if (ms > MAX_TIMER_MS) {
      this.overflows++;
      ms = 1;
    }
    return super.setTimeout(fn, ms);
  }
}

function setup(opts: {
  validityMs: number;
  intercept?: Interceptor;
  clock?: NodeLikeClock;
  store?: MemoryBackend;
}) {
  const clock = opts.clock ?? new NodeLikeClock();
  const service = new DpsService({
    groups: [parseEnrollmentGroup(fx.groupConfig({ validityMs: opts.validityMs }))],
    now: () => new Date(clock.now()),
  });
  const log = new StatusLog();
  const results: ProvisioningResult[] = [];
  const client = new DpsClient({
    endpoints: ["coaps+tcp://dps.example:15684"],
    connect: inProcessConnector(service, fx.deviceChain, { intercept: opts.intercept }),
    store: opts.store ?? new MemoryBackend(),
    storeKey: "plgd-dps/renewal",
    clock,
    random: () => 0,
    onStatus: log.push,
    onResult: (r) => results.push(r),
  });
  return { clock, client, log, results };
}

/** Runs zero-delay timers and pending I/O until `stop` holds (bounded). */
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

const renewals = (log: StatusLog) => log.events.filter((e) => e.step === "renew").length;

describe("plgd client: renewal of a long-lived identity certificate (issue 8, defect 1)", () => {
  it("a 365-day certificate schedules exactly one renewal, about 243 days ahead, in timer steps Node accepts", async () => {
    const { clock, client, log, results } = setup({ validityMs: 365 * DAY });
    await client.start();
    await pump(clock, () => results.length === 1);
    const provisionedAt = clock.now();
    const notAfter = Date.parse(results[0].expiresAt ?? "");
    assert.equal(clock.timers.length, 1, "one wait pending: the renewal");
    // Walk simulated time through the chained steps of the wait (bounded).
    let steps = 0;
    while (renewals(log) === 0 && steps < 50) {
      clock.fire();
      steps++;
      await new Promise((r) => setImmediate(r));
    }
    assert.equal(clock.overflows, 0, "no delay above 2^31-1 ms reached the timer (TimeoutOverflowWarning)");
    assert.ok(clock.asked.every((ms) => ms <= MAX_TIMER_MS));
    assert.equal(renewals(log), 1, "the renewal came, once");
    const waitedDays = (clock.now() - provisionedAt) / DAY;
    const expectedDays = ((2 / 3) * (notAfter - provisionedAt)) / DAY;
    assert.ok(
      Math.abs(waitedDays - expectedDays) < 1,
      `renewed after ${waitedDays} days, not ${expectedDays}`,
    );
    assert.ok(waitedDays > 240 && waitedDays < 246, `about 243 days, got ${waitedDays}`);
    assert.ok(steps >= 9 && steps <= 12, `243 days in steps of at most 24.8 days, got ${steps}`);
    await pump(clock, () => results.length === 2);
    assert.equal(renewals(log), 1);
    assert.equal(clock.timers.length, 1, "after the renewal, again one wait");
    assert.equal(
      clock.timers[0].ms,
      MAX_TIMER_MS,
      "and it is far in the future again (longer than one step)",
    );
    await client.stop();
    assert.equal(clock.timers.length, 0, "stop cancels the chained wait");
  });

  it("on the real clock: no TimeoutOverflowWarning and no renewal right after provisioning", async () => {
    const warnings: Error[] = [];
    const onWarning = (w: Error) => warnings.push(w);
    process.on("warning", onWarning);
    try {
      const service = new DpsService({
        groups: [parseEnrollmentGroup(fx.groupConfig({ validityMs: 365 * DAY }))],
      });
      const log = new StatusLog();
      const client = new DpsClient({
        endpoints: ["coaps+tcp://dps.example:15684"],
        connect: inProcessConnector(service, fx.deviceChain),
        store: new MemoryBackend(),
        storeKey: "plgd-dps/real-clock",
        onStatus: log.push,
      });
      const provisioned = log.next((e) => e.step === "provisioned", 15000);
      await client.start();
      await provisioned;
      // Node emits TimeoutOverflowWarning when the timer is made, delivered on the next tick.
      await new Promise((r) => setImmediate(r));
      await client.stop();
      assert.deepEqual(
        warnings.filter((w) => w.name === "TimeoutOverflowWarning").map((w) => w.message),
        [],
      );
      assert.equal(renewals(log), 0, "no renewal right after provisioning");
    } finally {
      process.off("warning", onWarning);
    }
  });

  it("a renewal that keeps failing retries on the retry schedule, never at once", async () => {
    let failCredentials = false;
    let credentialRequests = 0;
    const intercept: Interceptor = (req) => {
      if (req.path.replace(/^\//, "") !== PATHS.credentials) return undefined;
      credentialRequests++;
      return failCredentials ? { code: "5.03", payload: Buffer.from("busy") } : undefined;
    };
    const { clock, client, log, results } = setup({ validityMs: 2 * 3600_000, intercept });
    await client.start();
    await pump(clock, () => results.length === 1);
    failCredentials = true;
    const before = credentialRequests;
    const fired = await failAndRetry(clock, log, 12);
    assert.ok(fired[0] > 3600_000, `first the renewal wait (2/3 of 2 h), got ${fired[0]} ms`);
    assert.ok(
      fired.slice(1).every((ms) => ms >= 5000),
      `every retry waits at least half the first interval: ${fired.join(", ")}`,
    );
    assert.equal(credentialRequests - before, 12, "one request per wait, no loop in between");
    assert.equal(results.length, 1);
    await client.stop();
  });

  it("a certificate already near its end, renewed with one as short: refused, retried on the schedule", async () => {
    const clock = new NodeLikeClock();
    const first = setup({ validityMs: 2 * 3600_000, clock });
    await first.client.start();
    await pump(clock, () => first.results.length === 1);
    await first.client.stop();
    const store = new MemoryBackend();
    await store.set("plgd-dps/renewal", first.results[0] as never, { protocol: "plgd-dps" });
    clock.t = Date.parse(first.results[0].expiresAt ?? "") - 1800_000; // 30 min left: "expiring"
    // The DPS now issues 30-minute certificates: each is itself "expiring" and refused.
    const second = setup({ validityMs: 1800_000, clock, store });
    await second.client.start();
    const fired = await failAndRetry(clock, second.log, 8, false);
    assert.ok(
      fired.every((ms) => ms >= 5000),
      `retries wait: ${fired.join(", ")}`,
    );
    assert.equal(clock.overflows, 0);
    assert.equal(second.results.length, 0, "a certificate that is itself expiring is not taken");
    await second.client.stop();
  });
});

/**
 * Fires the pending wait `n` times; after each, waits for the failure it leads to and
 * checks that exactly one wait (the retry) is pending. Returns the delays fired.
 */
async function failAndRetry(
  clock: FakeClock,
  log: StatusLog,
  n: number,
  fireFirst = true,
): Promise<number[]> {
  const failures = () => log.events.filter((e) => e.retryInMs !== undefined).length;
  const fired: number[] = [];
  if (!fireFirst) await pump(clock, () => failures() === 1);
  for (let i = 0; i < n; i++) {
    const seen = failures();
    assert.equal(clock.timers.length, 1, "one wait pending");
    fired.push(clock.fire());
    await pump(clock, () => failures() === seen + 1);
  }
  return fired;
}
