import assert from "node:assert/strict";
import { describe, it } from "mocha";
import {
  addressUnit,
  FAILURE_LIMIT_DEFAULTS,
  FailureLimiter,
  failureLimitOptions,
} from "../../../lib/service/failure-limit";

describe("failure limiter", () => {
  it("slows after slowAfter failures, doubling up to the cap, and locks at lockAfter for lockMs", () => {
    let now = 0;
    const f = new FailureLimiter(
      { slowAfter: 2, lockAfter: 6, baseDelayMs: 100, maxDelayMs: 250, lockMs: 1000, windowMs: 1000 },
      () => now,
    );
    const s = { remote: "10.0.0.1" };
    const delays: number[] = [];
    for (let i = 0; i < 6; i++) {
      const v = f.check(s);
      assert.equal(v.action, "go");
      delays.push(v.action === "go" ? v.delayMs : -1);
      f.failed(s);
    }
    assert.deepEqual(delays, [0, 0, 100, 200, 250, 250]);
    const locked = f.check(s);
    assert.equal(locked.action, "locked");
    assert.equal(locked.action === "locked" && locked.retryAfterMs, 1000);
    assert.equal(f.lockedCount(), 1);
    now += 1000;
    assert.deepEqual(f.check(s), { action: "go", delayMs: 0 });
    assert.equal(f.lockedCount(), 0);
  });

  it("forgets failures older than the window", () => {
    let now = 0;
    const f = new FailureLimiter({ slowAfter: 1, lockAfter: 10, windowMs: 1000 }, () => now);
    f.failed({ remote: "a" });
    f.failed({ remote: "a" });
    assert.ok((f.check({ remote: "a" }) as { delayMs: number }).delayMs > 0);
    now += 1001;
    assert.deepEqual(f.check({ remote: "a" }), { action: "go", delayMs: 0 });
    assert.equal(f.size, 0);
  });

  it("an account's lock refuses only addresses that failed themselves", () => {
    const f = new FailureLimiter({ slowAfter: 100, lockAfter: 3 });
    for (const remote of ["1.1.1.1", "1.1.1.2", "1.1.1.3"]) f.failed({ remote, account: "fleet" });
    assert.equal(f.check({ remote: "1.1.1.2", account: "fleet" }).action, "locked");
    assert.deepEqual(f.check({ remote: "9.9.9.9", account: "fleet" }), { action: "go", delayMs: 0 });
    assert.deepEqual(f.check({ remote: "1.1.1.2", account: "other" }), { action: "go", delayMs: 0 });
  });

  it("keeps memory bounded: at most maxEntries addresses and accounts, oldest forgotten", () => {
    const f = new FailureLimiter({ maxEntries: 100, lockAfter: 1000 });
    for (let i = 0; i < 5000; i++)
      f.failed({ remote: `10.${i >> 16}.${(i >> 8) & 255}.${i & 255}`, account: `a${i}` });
    assert.equal(f.size, 200);
    assert.deepEqual(f.check({ remote: "10.0.0.0" }), { action: "go", delayMs: 0 });
  });

  it("refuses requests over maxWaiting while others wait out their delay", async () => {
    const f = new FailureLimiter({ slowAfter: 0, baseDelayMs: 5, maxDelayMs: 5, maxWaiting: 2 });
    f.failed({ remote: "w" });
    const waits = await Promise.all([1, 2, 3, 4].map(() => f.wait({ remote: "w" }, 5)));
    assert.deepEqual(waits, [true, true, false, false]);
  });

  it("keeps a scope's counts apart: forged UDP failures do not lock the address elsewhere", () => {
    const f = new FailureLimiter({ lockAfter: 2, slowAfter: 100 });
    f.failed({ remote: "10.5.5.5", scope: "udp" });
    f.failed({ remote: "10.5.5.5", scope: "udp" });
    assert.equal(f.check({ remote: "10.5.5.5", scope: "udp" }).action, "locked");
    assert.deepEqual(f.check({ remote: "10.5.5.5" }), { action: "go", delayMs: 0 });
  });

  it("counts IPv6 by /64 and IPv4-mapped addresses as IPv4", () => {
    assert.equal(addressUnit("::ffff:127.0.0.1"), "127.0.0.1");
    assert.equal(addressUnit("10.1.2.3"), "10.1.2.3");
    assert.equal(addressUnit("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::/64");
    assert.equal(addressUnit("2001:0db8:0001:0002:ffff:1:2:3"), "2001:db8:1:2::/64");
    assert.equal(addressUnit("2001:db8::1"), "2001:db8:0:0::/64");
    assert.equal(addressUnit("::1"), "0:0:0:0::/64");
    assert.equal(addressUnit("fe80::1%eth0"), "fe80:0:0:0::/64");
  });

  it("turns dialog settings into options: on by default, bad numbers keep the defaults", () => {
    assert.deepEqual(failureLimitOptions({}), {
      enabled: true,
      slowAfter: 5,
      lockAfter: 100,
      lockMs: 3600000,
      windowMs: 3600000,
    });
    const o = failureLimitOptions({
      failLimit: false,
      failSlowAfter: "x",
      failLockAfter: "0",
      failLockMinutes: "120",
    });
    assert.equal(o.enabled, false);
    assert.equal(o.slowAfter, FAILURE_LIMIT_DEFAULTS.slowAfter);
    assert.equal(o.lockAfter, FAILURE_LIMIT_DEFAULTS.lockAfter);
    assert.equal(o.lockMs, 7200000);
    assert.equal(o.windowMs, 7200000);
    const off = new FailureLimiter(o);
    for (let i = 0; i < 200; i++) off.failed({ remote: "x" });
    assert.deepEqual(off.check({ remote: "x" }), { action: "go", delayMs: 0 });
  });
});
