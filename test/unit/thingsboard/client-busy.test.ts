/**
 * Issue 8, defect 14, device side: a throttling server's refusal (HTTP 429 or 503 with
 * Retry-After, MQTT CONNACK 3) is transient, coded BUSY, and the next attempt follows what
 * the server asked for.
 */
import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { describe, it } from "mocha";
import { provision } from "../../../lib/dialects/thingsboard/device-dialect";
import type { ProvisioningError as TbError } from "../../../lib/model/errors";
import { parseRetryAfter } from "../../../lib/dialects/thingsboard/client-http";
import { MAX_RETRY_AFTER_MS, nextDelayMs } from "../../../lib/retry/run";
import { RateLimiter } from "../../../lib/service/rate-limit";
import { startTbMqttServer } from "../../../lib/dialects/thingsboard/server-mqtt";
import { KEY, makeService, SECRET } from "../../support/tbserve-fixtures";

describe("unit/thingsboard/client-busy", () => {
  const SUCCESS = JSON.stringify({
    status: "SUCCESS",
    credentialsType: "ACCESS_TOKEN",
    credentialsValue: "tok-1",
  });

  /** An HTTP server that refuses the first `refusals` requests with `status` and the given headers. */
  async function busyServer(refusals: number, status: number, headers: Record<string, string>) {
    let seen = 0;
    const server: Server = createServer((req, res) => {
      req.resume();
      req.on("end", () => {
        seen++;
        if (seen <= refusals) {
          res.writeHead(status, { ...headers, "content-type": "application/json" });
          res.end('{"status":"FAILURE","errorMsg":"busy"}');
        } else {
          res.writeHead(200, { "content-type": "application/json" });
          res.end(SUCCESS);
        }
      });
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    return {
      url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
      requests: () => seen,
      close: () => new Promise<void>((resolve) => server.close(() => resolve())),
    };
  }

  function input(endpoint: string, deviceName = "busy-dev") {
    return { endpoint, provisionDeviceKey: KEY, provisionDeviceSecret: SECRET, deviceName };
  }

  it("HTTP 429 with Retry-After: BUSY, and the retry waits what the server asked, not the policy's 60 s", async () => {
    const peer = await busyServer(1, 429, { "retry-after": "1" });
    const waits: Array<{ code: string; delayMs: number }> = [];
    try {
      const r = await provision(input(peer.url), {
        policy: { intervals: [60], jitter: 0.5, maxAttempts: 3 },
        random: () => 0.5,
        onRetry: ({ delayMs, error }) => {
          waits.push({ code: (error as TbError).code, delayMs });
          // The policy alone would wait 45 s here; a test must not sit through that.
          if (delayMs > 5000) throw new Error(`Retry-After ignored: waiting ${delayMs} ms`);
        },
      });
      assert.equal(r.credentials.token, "tok-1");
      // 1 s asked, lengthened by jitter 0.5 x random 0.5.
      assert.deepEqual(waits, [{ code: "BUSY", delayMs: 1250 }]);
      assert.equal(peer.requests(), 2);
    } finally {
      await peer.close();
    }
  });

  it("HTTP 503 without Retry-After is BUSY too, retried on the policy's schedule", async () => {
    const peer = await busyServer(2, 503, {});
    const codes: string[] = [];
    try {
      await provision(input(peer.url), {
        policy: { intervals: [0.05], jitter: 0, maxAttempts: 5 },
        onRetry: ({ error, delayMs }) => {
          codes.push((error as TbError).code);
          assert.equal(delayMs, 50);
        },
      });
      assert.deepEqual(codes, ["BUSY", "BUSY"]);
    } finally {
      await peer.close();
    }
  });

  it("Retry-After: delay-seconds and HTTP-date (RFC 9110 10.2.3); a server's wait is capped", () => {
    const now = Date.parse("Wed, 21 Oct 2015 07:27:58 GMT");
    assert.equal(parseRetryAfter("120", now), 120000);
    assert.equal(parseRetryAfter("Wed, 21 Oct 2015 07:28:00 GMT", now), 2000);
    assert.equal(parseRetryAfter("Wed, 21 Oct 2015 07:27:00 GMT", now), 0);
    assert.equal(parseRetryAfter("soon", now), undefined);
    assert.equal(parseRetryAfter(undefined, now), undefined);
    const policy = { intervals: [10], jitter: 0.5, maxAttempts: -1 };
    assert.equal(
      nextDelayMs(policy, 1, { retryAfterMs: 10 * 24 * 3600 * 1000 }, () => 0),
      MAX_RETRY_AFTER_MS,
    );
    assert.equal(
      nextDelayMs(policy, 1, new Error("no hint"), () => 0),
      5000,
    );
    // Out of attempts stays out of attempts, whatever the server said.
    assert.equal(nextDelayMs({ ...policy, maxAttempts: 1 }, 1, { retryAfterMs: 1000 }), undefined);
  });

  it("MQTT CONNACK 3 from a throttling broker: BUSY, retried, then provisioned", async () => {
    // Over the rate for the first two CONNECTs, then within it.
    let connects = 0;
    const limiter = new (class extends RateLimiter {
      override take(): boolean {
        return ++connects > 2;
      }
    })({ perSecond: 1, burst: 1 });
    const { service } = makeService();
    const server = await startTbMqttServer(service, { port: 0, connectLimiter: limiter });
    const codes: string[] = [];
    try {
      const r = await provision(input(`mqtt://127.0.0.1:${server.port}`, "mqtt-busy"), {
        timeoutMs: 15000,
        policy: { intervals: [0.05], jitter: 0, maxAttempts: 5 },
        onRetry: ({ error }) => codes.push((error as TbError).code),
      });
      assert.equal(r.device.name, "mqtt-busy");
      assert.deepEqual(codes, ["BUSY", "BUSY"]);
    } finally {
      await server.close();
    }
  });
});
