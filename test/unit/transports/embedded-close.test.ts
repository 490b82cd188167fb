/**
 * How the embedded broker ends a connection it hands to aedes (the socket itself, metered
 * in place): a session it closes, or refuses, is ended in order, so a peer that still had
 * bytes on the way reads its answer and then a clean end, never a reset; a connection past
 * its byte budget is cut and its slot freed. Plain TCP and TLS alike (over TLS the peer
 * saw a clean end even when the broker closed at once, so only the TCP case tells the
 * orderly close from a plain one).
 */
import assert from "node:assert/strict";
import { rmSync } from "node:fs";
import { join } from "node:path";
import { connect as tcpConnect, type Socket } from "node:net";
import { connect as tlsConnect, type ConnectionOptions } from "node:tls";
import { after, before, describe, it } from "mocha";
import type { Client } from "aedes";
import {
  startEmbeddedBroker,
  type BrokerHooks,
  type EmbeddedBroker,
} from "../../../lib/transports/embedded-broker";
import { PROJECT_ROOT } from "../../support/node-red";
import { makeTestPki, type TestPki } from "../../support/pki";
import { run } from "../../support/process";

// MQTT 3.1.1 CONNECT (section 3.1): protocol "MQTT" level 4, clean session, keepalive 60, client id "c1".
const CONNECT = Buffer.from([
  0x10, 0x0e, 0x00, 0x04, 0x4d, 0x51, 0x54, 0x54, 0x04, 0x02, 0x00, 0x3c, 0x00, 0x02, 0x63, 0x31,
]);
// PINGREQ (section 3.12) and DISCONNECT (section 3.14).
const PINGREQ = Buffer.from([0xc0, 0x00]);
const DISCONNECT = Buffer.from([0xe0, 0x00]);

const PUSHY_PEER = join(PROJECT_ROOT, "test", "support", "pushy-peer.py");

/** Node's TLS connect takes allowHalfOpen (lib/_tls_wrap.js hands it to the TLSSocket); its types do not say so. */
function halfOpenTls(o: ConnectionOptions): ConnectionOptions {
  return { ...o, allowHalfOpen: true } as ConnectionOptions;
}

/** What the peer read before the connection closed. */
function readUntilClosed(s: Socket): Promise<Buffer> {
  const chunks: Buffer[] = [];
  s.on("data", (c: Buffer) => chunks.push(c));
  s.on("error", () => undefined);
  return new Promise((resolve) => s.once("close", () => resolve(Buffer.concat(chunks))));
}

describe("unit/transports/embedded-close", () => {
  let pki: TestPki;
  before(() => {
    pki = makeTestPki("Embedded close");
  });
  after(() => rmSync(pki.dir, { recursive: true, force: true }));

  for (const tls of [false, true]) {
    const open = (b: EmbeddedBroker): Socket =>
      tls
        ? tlsConnect({ host: "127.0.0.1", port: b.port, ca: pki.caCert, servername: "localhost" })
        : tcpConnect({ host: "127.0.0.1", port: b.port });
    const ready = tls ? "secureConnect" : "connect";
    const start = (o: { admit?: () => boolean; maxConnectionBytes?: number; hooks?: BrokerHooks }) =>
      startEmbeddedBroker({
        host: "127.0.0.1",
        port: 0,
        hooks: {},
        tls: tls ? { key: pki.serverKey, cert: pki.serverCert } : undefined,
        ...o,
      });

    describe(tls ? "over TLS" : "over TCP", () => {
      // Over TCP a plain close of a socket with unread bytes is a reset (RFC 9293 section
      // 3.6); this case fails when the broker closes a refused session that way.
      it("a refused CONNECT with 300 KB behind it that nobody reads: CONNACK 3, then an orderly end, not a reset", async () => {
        const b = await start({ admit: () => false });
        try {
          // A Python peer sends everything before it reads: most of it is still unread in
          // the kernel when the broker closes, which is what makes a plain close a reset.
          const args = [PUSHY_PEER, "127.0.0.1", String(b.port), "150000", ...(tls ? [pki.caCertPath] : [])];
          const out = await run("/usr/bin/python3", args);
          assert.equal(out.code, 0, out.stderr);
          const seen = JSON.parse(out.stdout.toString()) as { head: string; ended: string };
          assert.equal(seen.head, "20020003", "CONNACK server unavailable");
          assert.equal(seen.ended, "eof", "the peer sees the broker's orderly end");
          assert.equal(b.connections(), 0, "the refused connection holds no slot");
        } finally {
          await b.close();
        }
      });

      // After its DISCONNECT a peer sends nothing more (MQTT 3.1.1 section 3.14.4), so the
      // broker closes at once instead of lingering; this case fails when it ends in order
      // (its socket would still be open, reading, when the peer sees the end).
      it("after the peer's DISCONNECT the broker's socket is closed at once, even with the peer's end still open", async () => {
        let session: Client | undefined;
        const b = await start({
          hooks: {
            preConnect: (client, _packet, cb) => {
              session = client;
              cb(null, true);
            },
          },
        });
        try {
          const s = tls
            ? tlsConnect(
                halfOpenTls({ host: "127.0.0.1", port: b.port, ca: pki.caCert, servername: "localhost" }),
              )
            : tcpConnect({ host: "127.0.0.1", port: b.port, allowHalfOpen: true });
          s.on("error", () => undefined);
          const acked = new Promise<Buffer>((resolve) => s.once("data", resolve));
          s.once(ready, () => s.write(CONNECT));
          assert.deepEqual([...(await acked).subarray(0, 4)], [0x20, 0x02, 0x00, 0x00], "CONNACK accepted");
          const server = session?.conn as unknown as Socket;
          const ended = new Promise<void>((resolve) => s.once("end", resolve));
          s.write(DISCONNECT);
          await ended;
          assert.equal(server.destroyed, true, "the broker's socket is closed, not waiting for the peer");
          assert.equal(b.connections(), 0, "the session holds no slot");
          s.destroy();
        } finally {
          await b.close();
        }
      });

      it("past its byte budget a connection is cut and its slot freed; the next one is served", async () => {
        const b = await start({ maxConnectionBytes: 1000 });
        try {
          const s = open(b);
          const closed = readUntilClosed(s);
          s.once(ready, () => {
            s.write(CONNECT);
            for (let i = 0; i < 2000; i++) s.write(PINGREQ);
          });
          const read = await closed;
          assert.ok(read.length < 2000 * 2, "cut before every PINGREQ was answered");
          assert.equal(b.connections(), 0);
          const next = open(b);
          const served = new Promise<Buffer>((resolve) => next.once("data", resolve));
          next.once(ready, () => next.write(CONNECT));
          assert.deepEqual([...(await served).subarray(0, 4)], [0x20, 0x02, 0x00, 0x00], "CONNACK accepted");
          next.destroy();
        } finally {
          await b.close();
        }
      });
    });
  }
});
