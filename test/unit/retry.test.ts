import { describe, it } from "mocha";
import assert from "node:assert/strict";
import {
  DEFAULT_RETRY_POLICY,
  retryDelayMs,
  validateRetryPolicy,
  parseIntervals,
} from "../../lib/retry/policy";
import { runWithRetry, AbortedError, abortableDelay } from "../../lib/retry/run";
import { finalError } from "../../lib/model/errors";

describe("unit/retry", () => {
  it("default schedule loops 10,20,40,80,120 s with plgd jitter t/2 + [0,t/2)", () => {
    const p = validateRetryPolicy(undefined);
    assert.deepEqual(p.intervals, [10, 20, 40, 80, 120]);
    assert.equal(
      retryDelayMs(p, 1, () => 0),
      5000,
    );
    assert.equal(
      retryDelayMs(p, 1, () => 0.999999),
      10000,
    );
    assert.equal(
      retryDelayMs(p, 5, () => 0),
      60000,
    );
    assert.equal(
      retryDelayMs(p, 6, () => 0),
      5000,
      "loops back to the first interval",
    );
    assert.equal(DEFAULT_RETRY_POLICY.maxAttempts, -1);
  });

  it("max attempts ends the schedule", () => {
    const p = validateRetryPolicy({ intervals: [1], jitter: 0, maxAttempts: 3 });
    assert.equal(retryDelayMs(p, 1), 1000);
    assert.equal(retryDelayMs(p, 2), 1000);
    assert.equal(retryDelayMs(p, 3), undefined);
  });

  it("bad policies are refused with the field named", () => {
    assert.throws(() => validateRetryPolicy({ intervals: [] }), /1 to 8/);
    assert.throws(() => validateRetryPolicy({ intervals: [1, 2, 3, 4, 5, 6, 7, 8, 9] }), /1 to 8/);
    assert.throws(() => validateRetryPolicy({ intervals: [0] }), /above 0/);
    assert.throws(() => validateRetryPolicy({ intervals: parseIntervals("10, x") }), /above 0/);
    assert.throws(() => validateRetryPolicy({ jitter: 2 }), /jitter/);
    assert.throws(() => validateRetryPolicy({ maxAttempts: 0 }), /max attempts/);
    assert.deepEqual(parseIntervals(" 10, 20;40 "), [10, 20, 40]);
  });

  it("runWithRetry retries transient errors and reports each wait", async () => {
    const p = validateRetryPolicy({ intervals: [0.001], jitter: 0, maxAttempts: 5 });
    const waits: number[] = [];
    const result = await runWithRetry(
      p,
      async (n) => {
        if (n < 3) throw new Error("transient");
        return n;
      },
      { onRetry: ({ delayMs }) => waits.push(delayMs) },
    );
    assert.equal(result, 3);
    assert.deepEqual(waits, [1, 1]);
  });

  it("runWithRetry stops on a final error unless the caller asks to retry it", async () => {
    const p = validateRetryPolicy({ intervals: [0.001], jitter: 0, maxAttempts: 4 });
    let calls = 0;
    await assert.rejects(
      runWithRetry(p, async () => {
        calls++;
        throw finalError("REFUSED", "FAILURE");
      }),
      /FAILURE/,
    );
    assert.equal(calls, 1);
    calls = 0;
    await assert.rejects(
      runWithRetry(
        p,
        async () => {
          calls++;
          throw finalError("REFUSED", "FAILURE");
        },
        { shouldRetry: () => true },
      ),
      /FAILURE/,
    );
    assert.equal(calls, 4);
  });

  it("runWithRetry aborts promptly during a wait", async () => {
    const p = validateRetryPolicy({ intervals: [3600], jitter: 0, maxAttempts: -1 });
    const ac = new AbortController();
    const pending = runWithRetry(
      p,
      async () => {
        throw new Error("down");
      },
      { signal: ac.signal, onRetry: () => ac.abort() },
    );
    await assert.rejects(pending, AbortedError);
  });

  it("a retry interval past 24.8 days waits instead of firing at once (no TimeoutOverflowWarning)", async () => {
    const warnings: Error[] = [];
    const onWarning = (w: Error) => warnings.push(w);
    process.on("warning", onWarning);
    const ac = new AbortController();
    let settled = "pending";
    const wait = abortableDelay(40 * 86_400_000, ac.signal).then(
      () => (settled = "resolved"),
      () => (settled = "aborted"),
    );
    try {
      // setTimeout's overflow would fire after 1 ms: give it far more than that.
      await new Promise((r) => setTimeout(r, 20));
      assert.equal(settled, "pending");
      assert.deepEqual(
        warnings.filter((w) => w.name === "TimeoutOverflowWarning"),
        [],
      );
    } finally {
      ac.abort();
      await wait;
      process.off("warning", onWarning);
    }
    assert.equal(settled, "aborted");
  });
});
