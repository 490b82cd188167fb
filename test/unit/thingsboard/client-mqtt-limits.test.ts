/**
 * The ThingsBoard MQTT client reads at most one answer's worth from a server: a packet
 * announced past that is refused at its fixed header (mqtt.js would buffer up to 256 MB
 * and wait for the rest until the attempt timed out).
 */
import assert from "node:assert/strict";
import { once } from "node:events";
import { createServer, type AddressInfo, type Server, type Socket } from "node:net";
import { after, describe, it } from "mocha";
import { MAX_PACKET_BYTES, mqttExchange } from "../../../lib/dialects/thingsboard/client-mqtt";
import { ProvisioningError } from "../../../lib/model/errors";

/** A broker that accepts, grants the subscription, then announces a PUBLISH of `announced` bytes. */
function hostileBroker(announced: Buffer) {
  const sockets = new Set<Socket>();
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    socket.on("error", () => undefined);
    socket.on("data", (chunk) => {
      // CONNECT (0x10) then SUBSCRIBE (0x82): answer each; the packet id of SUBSCRIBE
      // follows its one-byte remaining length (small packets only, as this client sends).
      for (let i = 0; i < chunk.length;) {
        const type = chunk[i] >> 4;
        const len = chunk[i + 1];
        if (type === 1) socket.write(Buffer.from([0x20, 0x02, 0x00, 0x00]));
        if (type === 8) {
          socket.write(Buffer.from([0x90, 0x03, chunk[i + 2], chunk[i + 3], 0x01]));
          // The answer: a header announcing far more than an answer may be, and a little of it.
          socket.write(Buffer.concat([announced, Buffer.alloc(1024)]));
        }
        i += 2 + len;
      }
    });
  });
  return {
    server,
    sockets,
    listen: async () => {
      server.listen(0, "127.0.0.1");
      await once(server, "listening");
      return (server.address() as AddressInfo).port;
    },
  };
}

/** A PUBLISH fixed header announcing `n` bytes (MQTT 3.1.1 2.2.3). */
function publishHeader(n: number): Buffer {
  const out = [0x30];
  do {
    let b = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) b |= 0x80;
    out.push(b);
  } while (n > 0);
  return Buffer.from(out);
}

describe("unit/thingsboard/client-mqtt-limits", () => {
  const brokers: Array<ReturnType<typeof hostileBroker>> = [];
  const start = async (announced: Buffer) => {
    const b = hostileBroker(announced);
    brokers.push(b);
    return new URL(`mqtt://127.0.0.1:${await b.listen()}`);
  };
  after(async () => {
    for (const b of brokers) {
      for (const s of b.sockets) s.destroy();
      await new Promise<void>((resolve) => b.server.close(() => resolve()));
    }
  });

  it("an answer announced past the limit is TOO_LARGE at once, and the connection is dropped", async () => {
    const uri = await start(publishHeader(200 * 1024 * 1024));
    const err = await mqttExchange(uri, "{}", { timeoutMs: 60_000 }).then(
      () => assert.fail("a 200 MB answer was accepted"),
      (e: unknown) => e,
    );
    assert.ok(err instanceof ProvisioningError, String(err));
    assert.equal(err.code, "TOO_LARGE");
    assert.equal(err.final, true);
    assert.match(err.message, new RegExp(`of ${200 * 1024 * 1024} bytes, more than ${MAX_PACKET_BYTES}`));
    const b = brokers[brokers.length - 1];
    while (b.sockets.size > 0) await once([...b.sockets][0], "close");
  });
});
