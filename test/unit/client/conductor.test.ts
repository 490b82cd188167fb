/**
 * What the conductor makes of failures that are not a dialect's ProvisioningError: a
 * defect is reported once (INTERNAL, final) instead of being retried forever, a socket
 * error a dialect let through is read as every protocol reads it, and a store that cannot
 * be read is STORE with the store's own code. The behaviours shared with real peers are
 * in test/contract/device-dialect.contract.ts.
 */
import { describe, it } from "mocha";
import assert from "node:assert/strict";
import { conduct, type ConductOptions } from "../../../lib/client/conductor";
import type { DeviceDialect } from "../../../lib/client/dialect";
import { ProvisioningError } from "../../../lib/model/errors";
import type { ProvisioningResult } from "../../../lib/model/result";
import { MemoryBackend } from "../../../lib/stores/memory";

function dialectThrowing(make: () => unknown): DeviceDialect<object, object> & { attempts: number } {
  const d = {
    attempts: 0,
    id: "thingsboard" as const,
    identity: { messageProperty: "deviceName" },
    endpointOf: () => "test://peer",
    prepare: () => Promise.resolve({}),
    attempt: (): Promise<ProvisioningResult> => {
      d.attempts++;
      return Promise.reject(make());
    },
  };
  return d;
}

const opts = (over: Partial<ConductOptions> = {}): ConductOptions => ({
  identity: { setting: "dev-1" },
  env: () => undefined,
  policy: { intervals: [0.01], jitter: 0, maxAttempts: 3 },
  timeoutMs: 1000,
  signal: new AbortController().signal,
  ...over,
});

describe("conductor: failures that are not a dialect's own", () => {
  it("a defect (a TypeError) is INTERNAL and final: one attempt, not retried", async () => {
    const d = dialectThrowing(() => new TypeError("x is not a function"));
    await assert.rejects(
      conduct(d, {}, opts()),
      (e: unknown) => e instanceof ProvisioningError && e.code === "INTERNAL" && e.final,
    );
    assert.equal(d.attempts, 1);
  });

  it("a socket error a dialect let through is CONNECT and retried until attempts run out", async () => {
    const d = dialectThrowing(() =>
      Object.assign(new Error("connect ECONNREFUSED"), { code: "ECONNREFUSED" }),
    );
    await assert.rejects(
      conduct(d, {}, opts()),
      (e: unknown) => e instanceof ProvisioningError && e.code === "CONNECT" && !e.final,
    );
    assert.equal(d.attempts, 3);
  });

  it("a store that cannot be read is STORE with the store's code as status, before any attempt", async () => {
    const d = dialectThrowing(() => new Error("not reached"));
    const store = new MemoryBackend();
    store.get = () => Promise.reject(Object.assign(new Error("disk gone"), { code: "IO" }));
    await assert.rejects(
      conduct(d, {}, opts({ store })),
      (e: unknown) => e instanceof ProvisioningError && e.code === "STORE" && e.status === "IO",
    );
    assert.equal(d.attempts, 0);
  });
});
