/**
 * An idle gateway should not wake: the embedded broker (the provisioning broker and the
 * Kura demo account broker) arms no periodic timer of its own while nobody is connected.
 * aedes' clustering heartbeat (every minute) and its will check (four times that) are
 * pushed out to days, and stay within setInterval's range (past 2^31-1 ms Node would fire
 * them every millisecond).
 */
import assert from "node:assert/strict";
import { describe, it } from "mocha";
import { startEmbeddedBroker } from "../../../lib/transports/embedded-broker";

describe("unit/transports/embedded-idle", () => {
  it("a started broker with nobody connected arms no interval shorter than a day, none out of range", async () => {
    const armed: number[] = [];
    const original = globalThis.setInterval;
    globalThis.setInterval = ((fn: () => void, ms?: number, ...rest: unknown[]) => {
      armed.push(ms ?? 0);
      return original(fn, ms, ...rest);
    }) as typeof setInterval;
    let broker: Awaited<ReturnType<typeof startEmbeddedBroker>> | undefined;
    try {
      broker = await startEmbeddedBroker({ host: "127.0.0.1", port: 0, hooks: {} });
    } finally {
      globalThis.setInterval = original;
    }
    try {
      assert.ok(armed.length > 0, "aedes arms its heartbeat and will check");
      for (const ms of armed) {
        assert.ok(ms >= 24 * 3600 * 1000, `an interval of ${ms} ms wakes an idle gateway`);
        assert.ok(ms <= 2 ** 31 - 1, `an interval of ${ms} ms is beyond setInterval's range`);
      }
    } finally {
      await broker?.close();
    }
  });
});
