import assert from "node:assert/strict";
import { describe, it } from "mocha";
import { MAX_TIMER_MS, setLongTimeout, type TimerClock } from "../../../lib/util/long-timer";

/** Timers fire only when the test says; time jumps to each. */
class Clock implements TimerClock {
  t = 1_000_000;
  private seq = 0;
  timers: Array<{ id: number; at: number; ms: number; fn: () => void }> = [];
  now(): number {
    return this.t;
  }
  setTimeout(fn: () => void, ms: number): unknown {
    assert.ok(ms <= MAX_TIMER_MS, `a delay of ${ms} ms would overflow Node's timer`);
    const id = ++this.seq;
    this.timers.push({ id, at: this.t + ms, ms, fn });
    return id;
  }
  clearTimeout(h: unknown): void {
    this.timers = this.timers.filter((x) => x.id !== h);
  }
  fire(): void {
    const next = this.timers.sort((a, b) => a.at - b.at)[0];
    assert.ok(next, "no timer pending");
    this.clearTimeout(next.id);
    this.t = Math.max(this.t, next.at);
    next.fn();
  }
}

describe("util: setLongTimeout", () => {
  it("waits a year in steps below 2^31-1 ms and fires once, on time", () => {
    const clock = new Clock();
    const start = clock.t;
    const year = 365 * 86400_000;
    let fired = 0;
    const timer = setLongTimeout(() => fired++, year, { clock });
    assert.equal(timer.dueAt, start + year);
    let steps = 0;
    while (fired === 0 && steps < 100) {
      clock.fire();
      steps++;
    }
    assert.equal(fired, 1);
    assert.equal(clock.t, start + year);
    assert.equal(steps, Math.ceil(year / MAX_TIMER_MS));
    assert.equal(clock.timers.length, 0);
    assert.equal(timer.pending, false);
  });

  it("cancels between steps; the callback never runs", () => {
    const clock = new Clock();
    let fired = 0;
    const timer = setLongTimeout(() => fired++, 100 * 86400_000, { clock });
    clock.fire();
    timer.cancel();
    timer.cancel();
    assert.equal(clock.timers.length, 0);
    assert.equal(fired, 0);
  });

  it("follows a clock that jumps ahead (the rest of the wait is re-measured)", () => {
    const clock = new Clock();
    let fired = 0;
    setLongTimeout(() => fired++, 60 * 86400_000, { clock });
    clock.t += 59 * 86400_000; // suspended for 59 days
    clock.fire();
    assert.equal(fired, 0);
    assert.equal(clock.timers[0].at, clock.t + 86400_000, "one day left after the jump");
    clock.fire();
    assert.equal(fired, 1);
  });

  it("never calls back synchronously; negative and NaN delays count as 0", () => {
    const clock = new Clock();
    let fired = 0;
    setLongTimeout(() => fired++, -5, { clock });
    setLongTimeout(() => fired++, Number.NaN, { clock });
    assert.equal(fired, 0);
    clock.fire();
    clock.fire();
    assert.equal(fired, 2);
  });

  it("on the real clock: a 30-day wait is unref'able and raises no TimeoutOverflowWarning", async () => {
    const warnings: string[] = [];
    const onWarning = (w: Error) => warnings.push(w.name);
    process.on("warning", onWarning);
    try {
      const timer = setLongTimeout(() => assert.fail("must not fire"), 30 * 86400_000).unref();
      await new Promise((r) => setImmediate(r));
      assert.equal(timer.pending, true);
      timer.cancel();
      assert.deepEqual(
        warnings.filter((n) => n === "TimeoutOverflowWarning"),
        [],
      );
    } finally {
      process.off("warning", onWarning);
    }
  });
});
