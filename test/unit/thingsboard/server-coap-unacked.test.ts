import assert from "node:assert/strict";
import { createSocket } from "node:dgram";
import { once } from "node:events";
import { after, describe, it } from "mocha";
import { setTimeout as delay } from "node:timers/promises";
import { defaultTiming, parameters, updateTiming } from "coap";
import { startTbCoapServer } from "../../../lib/dialects/thingsboard/server-coap";
import { freeUdpPort } from "../../support/ports";
import { makeService, request } from "../../support/tbserve-fixtures";

describe("unit/thingsboard/server-coap-unacked", () => {
  after(() => defaultTiming());

  /** A confirmable CoAP POST to api/v1/provision (RFC 7252 section 3), message id `mid`. */
  function confirmablePost(body: string, mid: number): Buffer {
    const header = Buffer.from([0x40, 0x02, mid >> 8, mid & 0xff]);
    // Uri-Path (11) "api", "v1", "provision"; Content-Format (12) 50 (application/json).
    const opts = Buffer.concat([
      Buffer.from([0xb3]),
      Buffer.from("api"),
      Buffer.from([0x02]),
      Buffer.from("v1"),
      Buffer.from([0x09]),
      Buffer.from("provision"),
      Buffer.from([0x11, 50]),
    ]);
    return Buffer.concat([header, opts, Buffer.from([0xff]), Buffer.from(body)]);
  }

  it("a device that never acknowledges a slow (separate) answer does not bring the process down", async () => {
    // Shrink node-coap's retransmission so EXCHANGE_LIFETIME passes in about a second.
    updateTiming({ ackTimeout: 0.05, ackRandomFactor: 1, maxRetransmit: 1, maxLatency: 0.2 });
    const lifetimeMs = parameters.exchangeLifetime * 1000;
    assert.ok(lifetimeMs < 2000, `exchange lifetime ${lifetimeMs} ms`);
    const uncaught: unknown[] = [];
    const onUncaught = (err: unknown) => uncaught.push(err);
    process.prependListener("uncaughtException", onUncaught);

    const { service } = makeService();
    // Slower than node-coap's piggyback window (50 ms): the answer becomes a separate CON.
    const handle = service.handle.bind(service);
    service.handle = async (...args) => {
      await delay(150);
      return handle(...args);
    };
    const port = await freeUdpPort();
    const server = await startTbCoapServer(service, { port });
    const peer = createSocket("udp4");
    try {
      const got: Buffer[] = [];
      peer.on("message", (m) => got.push(m));
      peer.send(confirmablePost(request({ deviceName: "never-acks" }), 0x1234), port, "127.0.0.1");
      // The empty ACK, then the separate answer (and its retransmission), none acknowledged.
      while (got.length < 2) await once(peer, "message");
      assert.equal(got[0][1], 0x00, "an empty ACK first");
      // Long enough for node-coap to give up on the answer (and, unfixed, throw).
      await delay(lifetimeMs + 500);
      assert.deepEqual(uncaught, []);
      // The server still answers; this time the device acknowledges, as RFC 7252 asks.
      peer.on("message", (m) => {
        if (((m[0] >> 4) & 0x03) === 0) peer.send(Buffer.from([0x60, 0x00, m[2], m[3]]), port, "127.0.0.1");
      });
      peer.send(confirmablePost(request({ deviceName: "after" }), 0x1235), port, "127.0.0.1");
      const before = got.length;
      while (!got.slice(before).some((m) => m[1] === 0x41)) await once(peer, "message");
    } finally {
      process.off("uncaughtException", onUncaught);
      peer.close();
      await server.close();
    }
  });
});
