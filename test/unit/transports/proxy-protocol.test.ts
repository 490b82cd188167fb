/**
 * The PROXY protocol reader (lib/transports/proxy-protocol.ts) against headers built as
 * haproxy's doc/proxy-protocol.txt describes them, and the gate (proxy-listener.ts) in
 * front of real loopback listeners, plain and TLS: what reaches the server, with which
 * address, and what is cut.
 */
import assert from "node:assert/strict";
import { once } from "node:events";
import { connect, createServer, type AddressInfo, type Server, type Socket } from "node:net";
import { connect as tlsConnect, createServer as createTlsServer, type TLSSocket } from "node:tls";
import { before, describe, it } from "mocha";
import { attachMqtt } from "../../../lib/transports/mqtt-listener";
import { acceptProxyProtocol } from "../../../lib/transports/proxy-listener";
import { freeTcpPort } from "../../support/ports";
import { ProxyHeaderReader, ipv6 } from "../../../lib/transports/proxy-protocol";
import { proxyV1, proxyV2, tlv } from "../../support/proxy-header";
import { makeTestPki, type TestPki } from "../../support/pki";

const payload = Buffer.from([0x10, 0x0c, 0x00, 0x04, 0x4d, 0x51, 0x54, 0x54]);

/** Resolves when the socket closes, whether the peer reset it or not (once() would reject on "error"). */
function closed(s: Socket): Promise<void> {
  s.on("error", () => undefined);
  return new Promise((resolve) => s.once("close", () => resolve()));
}

function readAll(bytes: Buffer, step = bytes.length) {
  const r = new ProxyHeaderReader();
  for (let i = 0; i < bytes.length; i += step) {
    const res = r.push(bytes.subarray(i, i + step));
    // What the reader was not given yet follows the rest of the chunk that ended the header.
    if (res.state === "done") return { ...res, rest: Buffer.concat([res.rest, bytes.subarray(i + step)]) };
    if (res.state !== "more") return res;
  }
  return { state: "more" as const };
}

describe("unit/transports/proxy-protocol: the reader", () => {
  it("v2 TCP4: the client's address and port, the bytes after it handed on", () => {
    const r = readAll(Buffer.concat([proxyV2({ src: "203.0.113.9", sport: 51234, dport: 8883 }), payload]));
    assert.equal(r.state, "done");
    if (r.state !== "done") return;
    assert.deepEqual(r.header.source, { address: "203.0.113.9", port: 51234, family: "IPv4" });
    assert.equal(r.header.destination?.port, 8883);
    assert.deepEqual(r.rest, payload);
  });

  it("v2 TCP6, one byte at a time: the address in Node's text form", () => {
    const bytes = Buffer.concat([
      proxyV2({ src: "2001:db8:0:0:0:0:0:42", dst: "2001:db8::1", sport: 1 }),
      payload,
    ]);
    const r = readAll(bytes, 1);
    assert.equal(r.state, "done");
    if (r.state !== "done") return;
    assert.deepEqual(r.header.source, { address: "2001:db8::42", port: 1, family: "IPv6" });
    assert.deepEqual(r.rest, payload);
  });

  it("v1 TCP4 and TCP6, one byte at a time and with the payload in the same chunk", () => {
    const one = readAll(proxyV1("198.51.100.3", "192.0.2.1", 4000, 1883), 1);
    assert.equal(one.state, "done");
    if (one.state === "done")
      assert.deepEqual(one.header.source, { address: "198.51.100.3", port: 4000, family: "IPv4" });
    const six = readAll(Buffer.concat([proxyV1("2001:DB8::5", "2001:db8::1", 5, 6), payload]));
    assert.equal(six.state, "done");
    if (six.state !== "done") return;
    assert.deepEqual(six.header.source, { address: "2001:db8::5", port: 5, family: "IPv6" });
    assert.deepEqual(six.rest, payload);
  });

  it("v2 LOCAL, v2 UNSPEC and v1 UNKNOWN keep the connection's own address", () => {
    for (const bytes of [
      proxyV2({ command: 0 }),
      // LOCAL with an address block: "discard the protocol block including the family".
      proxyV2({ command: 0, family: 1 }),
      proxyV2({ family: 0 }),
      Buffer.from("PROXY UNKNOWN\r\n"),
      Buffer.from("PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n"),
    ]) {
      const r = readAll(Buffer.concat([bytes, payload]));
      assert.equal(r.state, "done", bytes.toString("hex"));
      if (r.state !== "done") continue;
      assert.equal(r.header.source, undefined);
      assert.deepEqual(r.rest, payload);
    }
  });

  it("v2 TLVs are skipped, up to the cap; a longer header is refused before it is buffered", () => {
    const tlvs = Buffer.concat([tlv(0x01, Buffer.from("mqtt")), tlv(0x05, Buffer.alloc(128, 7))]);
    const r = readAll(Buffer.concat([proxyV2({ src: "192.0.2.50", tlv: tlvs }), payload]), 7);
    assert.equal(r.state, "done");
    if (r.state === "done") {
      assert.equal(r.header.source?.address, "192.0.2.50");
      assert.deepEqual(r.rest, payload);
    }
    // Only the fixed 16 bytes of a header announcing 12 + 1025 bytes: refused at once.
    const big = proxyV2({ length: 12 + 1025 }).subarray(0, 16);
    const refused = new ProxyHeaderReader().push(big);
    assert.equal(refused.state, "refused");
    if (refused.state === "refused") assert.match(refused.reason, /1037 bytes, more than the 1036 accepted/);
    const max = proxyV2({ tlv: Buffer.alloc(1024) });
    assert.equal(readAll(max).state, "done");
  });

  it("refuses what is not a header, at the first byte that cannot begin one", () => {
    const cases: Array<[Buffer, RegExp]> = [
      [payload, /no PROXY protocol header/],
      [Buffer.from([0x16, 0x03, 0x01]), /no PROXY protocol header/],
      [Buffer.from("GET / HTTP/1.1\r\n"), /no PROXY protocol header/],
      [Buffer.concat([proxyV2().subarray(0, 11), Buffer.from([0x00])]), /no PROXY protocol header/],
      [proxyV2({ version: 1 }), /version 1/],
      [proxyV2({ command: 2 }), /unknown command 2/],
      [proxyV2({ family: 4 }), /unknown address family 4/],
      [proxyV2({ length: 8 }).subarray(0, 24), /8 address bytes, fewer than its family's 12/],
      [Buffer.from("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n"), /CRLF/],
      [Buffer.from("PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n"), /not TCP4/],
      [Buffer.from("PROXY TCP4 ::1 5.6.7.8 1 2\r\n"), /not TCP4/],
      [Buffer.from("PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n"), /port/],
      [Buffer.from("PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n"), /port/],
      [Buffer.from("PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n"), /malformed/],
      [Buffer.from("PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n"), /malformed/],
      [Buffer.from("PROXY TCP4 " + "1".repeat(120)), /longer than 107/],
    ];
    for (const [bytes, why] of cases) {
      const r = readAll(bytes, 1);
      assert.equal(r.state, "refused", `${bytes.toString("hex")} was taken`);
      if (r.state === "refused") assert.match(r.reason, why);
    }
    // Refused at its first byte: nothing is waited for.
    assert.equal(new ProxyHeaderReader().push(Buffer.from([0x10])).state, "refused");
    assert.equal(new ProxyHeaderReader().push(Buffer.from("PROX")).state, "more");
  });

  it("formats IPv6 as Node does (RFC 5952), IPv4-mapped as ::ffff:a.b.c.d", () => {
    const hex = (s: string) => Buffer.from(s.replace(/ /g, ""), "hex");
    assert.equal(ipv6(hex("0000 0000 0000 0000 0000 0000 0000 0001")), "::1");
    assert.equal(ipv6(hex("2001 0db8 0000 0001 0000 0000 0000 0001")), "2001:db8:0:1::1");
    assert.equal(ipv6(hex("2001 0db8 0000 0000 0001 0000 0000 0001")), "2001:db8::1:0:0:1");
    assert.equal(ipv6(hex("2001 0db8 0001 0001 0001 0001 0001 0001")), "2001:db8:1:1:1:1:1:1");
    assert.equal(ipv6(hex("0000 0000 0000 0000 0000 ffff c000 0207")), "::ffff:192.0.2.7");
    assert.equal(ipv6(hex("0000 0000 0000 0000 0000 0000 0000 0000")), "::");
  });
});

interface Seen {
  remote: string | undefined;
  port: number | undefined;
  data: Buffer;
}

describe("unit/transports/proxy-protocol: the gate on a listener", () => {
  let pki: TestPki;
  before(() => {
    pki = makeTestPki("Proxy");
  });

  const listen = async (server: Server) => {
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    return (server.address() as AddressInfo).port;
  };

  /** A plain server behind the gate; resolves each connection the server saw with its first bytes. */
  const plain = (headerTimeoutMs = 2000) => {
    const refusals: Array<{ why: string; remote: string | undefined }> = [];
    const seen: Seen[] = [];
    const waiters: Array<(s: Seen) => void> = [];
    const server = createServer((s: Socket) => {
      s.once("data", (data: Buffer) => {
        const got = { remote: s.remoteAddress, port: s.remotePort, data };
        seen.push(got);
        waiters.shift()?.(got);
        s.end();
      });
    });
    const gate = acceptProxyProtocol(server, { headerTimeoutMs }, (why, remote) =>
      refusals.push({ why, remote }),
    );
    return { server, gate, seen, refusals, next: () => new Promise<Seen>((r) => waiters.push(r)) };
  };

  it("header and payload in one segment: the server sees the client's address and the payload", async () => {
    const p = plain();
    const port = await listen(p.server);
    try {
      const next = p.next();
      const c = connect(port, "127.0.0.1", () =>
        c.write(Buffer.concat([proxyV2({ src: "192.0.2.77", sport: 7777 }), payload])),
      );
      const got = await next;
      assert.equal(got.remote, "192.0.2.77");
      assert.equal(got.port, 7777);
      assert.deepEqual(got.data, payload);
      await once(c, "close");
    } finally {
      p.server.close();
    }
  });

  it("a header in pieces (v1): the payload after it reaches the server intact", async () => {
    const p = plain();
    const port = await listen(p.server);
    try {
      const next = p.next();
      const c = connect(port, "127.0.0.1");
      await once(c, "connect");
      const bytes = proxyV1("198.51.100.20", "192.0.2.1", 1234, 1883);
      // Each piece flushed before the next: separate segments on loopback (setNoDelay).
      c.setNoDelay(true);
      for (const piece of [bytes.subarray(0, 3), bytes.subarray(3, 20), bytes.subarray(20)])
        await new Promise<void>((r) => c.write(piece, () => r()));
      c.write(payload);
      const got = await next;
      assert.equal(got.remote, "198.51.100.20");
      assert.deepEqual(got.data, payload);
      await once(c, "close");
    } finally {
      p.server.close();
    }
  });

  it("a peer without a header (an MQTT CONNECT) is closed unserved, with the reason reported", async () => {
    const p = plain();
    const port = await listen(p.server);
    try {
      const c = connect(port, "127.0.0.1", () => c.write(payload));
      await closed(c);
      assert.equal(p.seen.length, 0, "the server saw the connection");
      assert.equal(p.refusals.length, 1);
      assert.match(p.refusals[0].why, /no PROXY protocol header/);
      assert.equal(p.refusals[0].remote, "127.0.0.1");
      assert.ok(!p.refusals[0].why.includes("MQTT"), "the reason holds none of the peer's bytes");
    } finally {
      p.server.close();
    }
  });

  it("a silent peer is cut at the header deadline", async () => {
    const p = plain(150);
    const port = await listen(p.server);
    try {
      const c = connect(port, "127.0.0.1");
      const gone = closed(c);
      await gone;
      assert.equal(p.seen.length, 0);
      assert.equal(p.gate.pending(), 0);
      assert.match(p.refusals[0]?.why ?? "", /no complete PROXY header within 150 ms/);
    } finally {
      p.server.close();
    }
  });

  it("LOCAL (a proxy's health check): the server sees the proxy's own address", async () => {
    const p = plain();
    const port = await listen(p.server);
    try {
      const next = p.next();
      const c = connect(port, "127.0.0.1", () => c.write(Buffer.concat([proxyV2({ command: 0 }), payload])));
      const got = await next;
      assert.equal(got.remote, "127.0.0.1");
      assert.deepEqual(got.data, payload);
      await once(c, "close");
    } finally {
      p.server.close();
    }
  });

  it("TLS: the header before the handshake, the TLS socket carries the client's address", async () => {
    const refusals: string[] = [];
    const secure: Array<{ remote: string | undefined; port: number | undefined }> = [];
    const server = createTlsServer({ key: pki.serverKey, cert: pki.serverCert }, (s: TLSSocket) => {
      secure.push({ remote: s.remoteAddress, port: s.remotePort });
      s.end("hello");
    });
    acceptProxyProtocol(server, {}, (why) => refusals.push(why));
    const port = await listen(server);
    try {
      const raw = connect(port, "127.0.0.1");
      await once(raw, "connect");
      raw.write(proxyV2({ src: "2001:db8::99", dst: "2001:db8::1", sport: 4242 }));
      const t = tlsConnect({ socket: raw, ca: pki.caCert, servername: "localhost" });
      let text = "";
      t.on("data", (d: Buffer) => (text += d.toString()));
      await once(t, "end");
      t.destroy();
      assert.equal(text, "hello");
      assert.deepEqual(secure, [{ remote: "2001:db8::99", port: 4242 }]);
      // Without the header, the ClientHello is refused as no header at all.
      const bare = tlsConnect({ port, host: "127.0.0.1", ca: pki.caCert, servername: "localhost" });
      await closed(bare);
      assert.equal(secure.length, 1);
      assert.match(refusals[0] ?? "", /no PROXY protocol header/);
    } finally {
      server.close();
    }
  });
});

describe("unit/transports/proxy-protocol: a shared MQTT port", () => {
  it("two dialects on one port must agree on the PROXY protocol: a CONFIG error names it", async () => {
    const port = await freeTcpPort();
    const first = await attachMqtt(
      { host: "127.0.0.1", port, proxyProtocol: true },
      { name: "first", claims: () => false, hooks: {} },
    );
    try {
      await assert.rejects(
        attachMqtt({ host: "127.0.0.1", port }, { name: "second", claims: () => false, hooks: {} }),
        /expects a PROXY protocol header there/,
      );
    } finally {
      await first.detach();
    }
  });
});
