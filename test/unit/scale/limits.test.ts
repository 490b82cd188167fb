/**
 * Brute-force limits and single-use request ids across instances over one PostgreSQL
 * table: the failure budget is one per address and account, not one per instance, and a
 * Mainflux GCM request played to another instance is refused. The same limiter over a
 * store that is not shared keeps per-instance counts: the control that shows the tests
 * can fail.
 */
import { describe, it } from "mocha";
import assert from "node:assert/strict";
import { FailureLimiter, type LockEvent } from "../../../lib/service/failure-limit";
import { ReplayGuard } from "../../../lib/dialects/mainflux/crypto";
import type { StoreBackend } from "../../../lib/stores/backend";
import { MemoryBackend } from "../../../lib/stores/memory";
import { pgInstances } from "../../support/pg-instances";

const LOCK_AFTER = 7;

function limiters(backends: readonly StoreBackend[], locks: LockEvent[]): FailureLimiter[] {
  return backends.map(
    (backend) =>
      new FailureLimiter(
        { lockAfter: LOCK_AFTER, slowAfter: 1000, lockMs: 60_000, windowMs: 60_000 },
        Date.now,
        (e) => locks.push(e),
        { backend, service: "thingsboard" },
      ),
  );
}

/** One attempt as a serving dialect makes it: refresh, check, and on a wrong secret count. */
async function attempt(f: FailureLimiter, subject: { remote: string; account?: string }): Promise<string> {
  await f.refresh(subject);
  const v = f.check(subject);
  if (v.action !== "go") return v.action;
  await f.failed(subject);
  return "failed";
}

describe("unit/scale/limits", () => {
  const pg = pgInstances();
  const twoInstances = () => pg.over("limits");

  it("wrong secrets split across two instances lock the address at the configured count, once", async () => {
    const locks: LockEvent[] = [];
    const [fa, fb] = limiters(await twoInstances(), locks);
    const subject = { remote: "192.0.2.7" };
    const answers: string[] = [];
    for (let i = 0; i < 3 * LOCK_AFTER; i++) answers.push(await attempt(i % 2 ? fb! : fa!, subject));
    assert.deepEqual(answers.slice(0, LOCK_AFTER), Array(LOCK_AFTER).fill("failed"));
    assert.deepEqual(
      answers.slice(LOCK_AFTER),
      Array(2 * LOCK_AFTER).fill("locked"),
      "both instances refuse",
    );
    assert.equal(locks.length, 1, "one lock event across the instances");
    assert.equal(locks[0]!.failures, LOCK_AFTER);
    // Another address is not touched.
    assert.equal(await attempt(fb!, { remote: "192.0.2.8" }), "failed");
  });

  it("parallel wrong secrets at two instances: the lock begins at the configured count", async () => {
    const locks: LockEvent[] = [];
    const [fa, fb] = limiters(await twoInstances(), locks);
    const subject = { remote: "2001:db8::1" };
    await Promise.all(Array.from({ length: 40 }, (_, i) => (i % 2 ? fb! : fa!).failed(subject)));
    assert.equal(locks.length, 1);
    for (const f of [fa!, fb!]) assert.equal(await attempt(f, subject), "locked");
  });

  it("an account's budget is shared too (for addresses that failed themselves)", async () => {
    const locks: LockEvent[] = [];
    const [fa, fb] = limiters(await twoInstances(), locks);
    // Many addresses, one profile: the account locks at the configured count.
    for (let i = 0; i < LOCK_AFTER; i++)
      assert.equal(
        await attempt(i % 2 ? fb! : fa!, { remote: `198.51.100.${i}`, account: "fleet" }),
        "failed",
      );
    assert.deepEqual(
      locks.map((l) => l.subject),
      ["account"],
    );
    // An address that failed before is refused for the account; a clean one is evaluated.
    assert.equal(await attempt(fa!, { remote: "198.51.100.1", account: "fleet" }), "locked");
    assert.equal(await attempt(fb!, { remote: "198.51.100.200", account: "fleet" }), "failed");
  });

  it("control: over stores that are not shared, each instance keeps its own budget", async () => {
    const locks: LockEvent[] = [];
    const [fa, fb] = limiters([new MemoryBackend(), new MemoryBackend()], locks);
    assert.equal(fa!.isShared, false);
    const subject = { remote: "192.0.2.9" };
    const answers: string[] = [];
    for (let i = 0; i < 2 * LOCK_AFTER - 2; i++) answers.push(await attempt(i % 2 ? fb! : fa!, subject));
    assert.ok(
      answers.every((a) => a === "failed"),
      "N instances: N times the budget",
    );
  });

  it("a Mainflux GCM request id is single use across instances", async () => {
    const [a, b] = await twoInstances();
    const guards = [new ReplayGuard(100, a), new ReplayGuard(100, b)];
    const until = Date.now() + 60_000;
    for (let i = 0; i < 50; i++) {
      const id = `key-1|${i.toString(16).padStart(32, "0")}`;
      // The captured request played to the other instance at the same moment, and later.
      const both = await Promise.all([guards[0]!.claim(id, until), guards[1]!.claim(id, until)]);
      assert.deepEqual([...both].sort(), [false, true], `id ${i}`);
      assert.equal(await guards[i % 2]!.claim(id, until), false);
    }
    // Control: guards without a shared store accept the replay at the other instance.
    const local = [new ReplayGuard(100), new ReplayGuard(100)];
    assert.deepEqual(await Promise.all(local.map((g) => g.claim("key-1|" + "a".repeat(32), until))), [
      true,
      true,
    ]);
  });
});
