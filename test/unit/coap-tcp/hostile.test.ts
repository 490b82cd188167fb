import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { connect as netConnect, createServer as createNetServer, type Socket } from "node:net";
import { connect as tlsConnect, type TLSSocket } from "node:tls";
import { after, before, describe, it } from "mocha";
import { CoapTcpClient, CoapTcpServer } from "../../../lib/transports/coap-tcp";
import { Code, codeToString, Opt } from "../../../lib/transports/coap-tcp/codes";
import { CoapTcpConnection } from "../../../lib/transports/coap-tcp/connection";
import { encodeMessage, type CoapMessage } from "../../../lib/transports/coap-tcp/frame";
import { csm } from "../../../lib/transports/coap-tcp/signaling";
import { within } from "../../support/events";
import { makeTestPki, type TestPki } from "../../support/pki";
import { rawPeer } from "../../support/coaptcp-raw";

const pki: TestPki = makeTestPki("Hostile");
const device = pki.issueClient("device");

const ok = async () => ({ code: "2.05", payload: Buffer.from("hello") });

function tlsServer(extra: Partial<ConstructorParameters<typeof CoapTcpServer>[0]> = {}): CoapTcpServer {
  return new CoapTcpServer({
    tls: {
      cert: pki.serverCert,
      key: pki.serverKey,
      ca: pki.caCert,
      requestCert: true,
      rejectUnauthorized: true,
    },
    handler: ok,
    ...extra,
  });
}

function getHello(): CoapMessage {
  return {
    code: Code.GET,
    token: Buffer.from([1]),
    options: [{ number: Opt.URI_PATH, value: Buffer.from("hello") }],
    payload: Buffer.alloc(0),
  };
}

const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("coaps+tcp listener: TLS renegotiation is refused (issue 8, defect 7)", () => {
  let server: CoapTcpServer;
  let port: number;
  before(async () => {
    server = tlsServer();
    server.on("error", () => undefined);
    ({ port } = await server.listen(0, "127.0.0.1"));
  });
  after(() => server.close());

  it("node's socket.renegotiate() over TLS 1.2 fails, and no second handshake happens", async () => {
    const socket = tlsConnect({
      host: "127.0.0.1",
      port,
      ca: pki.caCert,
      cert: device.cert,
      key: device.key,
      maxVersion: "TLSv1.2",
      ALPNProtocols: ["coap"],
    });
    socket.on("error", () => undefined);
    await once(socket, "secureConnect");
    assert.equal(socket.getProtocol(), "TLSv1.2");
    const closed = new Promise((r) => socket.once("close", r));
    const result = await within<Error | null>(10000, "the renegotiation outcome", (resolve) => {
      const started = socket.renegotiate({ rejectUnauthorized: true }, (err) => resolve(err ?? null));
      if (!started) resolve(new Error("renegotiate() refused to start"));
      // OpenSSL reports the server's no_renegotiation alert as a socket error.
      socket.once("error", (e) => resolve(e));
      socket.once("close", () => resolve(new Error("closed")));
    });
    assert.ok(result instanceof Error, "the renegotiation must not succeed");
    assert.equal((result as NodeJS.ErrnoException).code, "ERR_SSL_NO_RENEGOTIATION");
    socket.destroy();
    await closed;
  });

  it("openssl s_client -tls1_2 sending R: the server answers no_renegotiation", async () => {
    const child = spawn(
      "openssl",
      [
        "s_client",
        "-connect",
        `127.0.0.1:${port}`,
        "-tls1_2",
        "-cert",
        device.certPath,
        "-key",
        device.keyPath,
        "-CAfile",
        pki.caCertPath,
        "-alpn",
        "coap",
      ],
      { stdio: ["pipe", "pipe", "pipe"] },
    );
    let out = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    child.stderr.on("data", (d: Buffer) => (out += d.toString()));
    const exited = once(child, "exit");
    try {
      await within<void>(10000, "the TLS handshake of s_client", (resolve) => {
        const check = () => {
          if (/Verify return code: 0/.test(out)) resolve();
        };
        child.stdout.on("data", check);
        check();
      });
      child.stdin.write("R\n");
      await within<void>(10000, "s_client's renegotiation outcome", (resolve) => {
        const check = () => {
          if (/no renegotiation|NO_RENEGOTIATION|alert/i.test(out)) resolve();
        };
        child.stdout.on("data", check);
        child.stderr.on("data", check);
        void exited.then(() => resolve());
        check();
      });
      assert.match(out, /RENEGOTIATING/);
      assert.match(out, /no renegotiation/i, "the server refused with a no_renegotiation alert");
    } finally {
      child.kill();
      await exited;
    }
  });

  it("Node's ERR_TLS_SESSION_ATTACK on a connection closes it", async () => {
    const plain = createNetServer();
    plain.listen(0, "127.0.0.1");
    await once(plain, "listening");
    const client = netConnect((plain.address() as { port: number }).port, "127.0.0.1");
    client.on("error", () => undefined);
    const [serverSide] = (await once(plain, "connection")) as [Socket];
    const conn = new CoapTcpConnection(serverSide, {
      maxMessageSize: 1152,
      blockWise: false,
      remote: "peer",
    });
    conn.on("problem", () => undefined);
    const closed = new Promise<string>((r) => conn.once("close", r));
    const attack = Object.assign(new Error("TLS session renegotiation attack detected"), {
      code: "ERR_TLS_SESSION_ATTACK",
    });
    serverSide.emit("error", attack);
    const reason = await within<string>(5000, "the connection to close", (resolve) => {
      void closed.then(resolve);
    });
    assert.match(reason, /renegotiated TLS too often/);
    client.destroy();
    plain.close();
  });
});

describe("coap+tcp listener: slow frames are cut (issue 8, defect 7)", () => {
  /** Writes `frame` one byte every `everyMs`; resolves with how many bytes went out before the server closed. */
  async function trickle(peer: Awaited<ReturnType<typeof rawPeer>>, frame: Buffer, everyMs: number) {
    let closed = false;
    void peer.closed.then(() => (closed = true));
    let sent = 0;
    for (; sent < frame.length && !closed; sent++) {
      peer.socket.write(frame.subarray(sent, sent + 1));
      await pause(everyMs);
    }
    return { sent, closed };
  }

  it("a message that trickles in is aborted at its deadline, whatever the idle timeout", async () => {
    const server = new CoapTcpServer({ handler: ok, inactivityTimeoutMs: 60000, frameTimeoutMs: 300 });
    server.on("error", () => undefined);
    const { port } = await server.listen(0, "127.0.0.1");
    try {
      const peer = await rawPeer(port);
      peer.send(csm(1152, false));
      const frame = encodeMessage({ ...getHello(), payload: Buffer.alloc(100, 7) });
      const { sent, closed } = await trickle(peer, frame, 50);
      assert.ok(closed && sent < frame.length, `cut after ${sent} of ${frame.length} bytes`);
      const abort = peer.messages.find((m) => m.code === Code.ABORT);
      assert.ok(abort, "an Abort (7.05) says why");
      assert.match(abort.payload.toString(), /not complete within 300 ms/);
    } finally {
      await server.close();
    }
  });

  it("bytes of an unfinished message do not count as traffic for the idle timeout", async () => {
    const server = new CoapTcpServer({ handler: ok, inactivityTimeoutMs: 400 });
    server.on("error", () => undefined);
    const { port } = await server.listen(0, "127.0.0.1");
    try {
      const peer = await rawPeer(port);
      peer.send(csm(1152, false));
      const frame = encodeMessage({ ...getHello(), payload: Buffer.alloc(100, 7) });
      const { sent, closed } = await trickle(peer, frame, 50);
      assert.ok(closed && sent < frame.length, `cut after ${sent} of ${frame.length} bytes`);
    } finally {
      await server.close();
    }
  });

  it("an honest peer whose message arrives in pieces within the deadline is served", async () => {
    const server = new CoapTcpServer({ handler: ok, inactivityTimeoutMs: 60000, frameTimeoutMs: 5000 });
    server.on("error", () => undefined);
    const { port } = await server.listen(0, "127.0.0.1");
    try {
      const peer = await rawPeer(port);
      peer.send(csm(1152, false));
      const frame = encodeMessage(getHello());
      for (let i = 0; i < frame.length; i += 3) {
        peer.socket.write(frame.subarray(i, i + 3));
        await pause(5);
      }
      const res = await peer.waitFor((m) => codeToString(m.code) === "2.05");
      assert.equal(res.payload.toString(), "hello");
      peer.socket.destroy();
    } finally {
      await server.close();
    }
  });
});

describe("coaps+tcp listener: connection caps (issue 8, defect 7)", () => {
  it("connections over the per-address and total caps are closed at once; an honest client elsewhere gets through", async () => {
    const server = tlsServer({ maxConnections: 4, maxConnectionsPerAddress: 2, inactivityTimeoutMs: 60000 });
    const errors: Error[] = [];
    server.on("error", (e: Error) => errors.push(e));
    const { port } = await server.listen(0, "127.0.0.1");
    const held: Socket[] = [];
    const raw = async (localAddress: string) => {
      const s = netConnect({ host: "127.0.0.1", port, localAddress });
      s.on("error", () => undefined);
      await once(s, "connect");
      held.push(s);
      return s;
    };
    const refusedIn = (s: Socket) =>
      within<void>(5000, "the server to close the connection", (resolve) => {
        if (s.destroyed) resolve();
        s.once("close", () => resolve());
      });
    const honest = (localAddress: string) =>
      CoapTcpClient.connect({
        host: "127.0.0.1",
        port,
        tls: { ca: pki.caCert, cert: device.cert, key: device.key, localAddress } as never,
      });
    try {
      // Two silent connections (no TLS handshake at all) from one address fill its share.
      await raw("127.0.0.1");
      await raw("127.0.0.1");
      const third = await raw("127.0.0.1");
      await refusedIn(third);
      // Another address is not affected.
      const client = await honest("127.0.0.2");
      assert.equal((await client.request({ method: "GET", path: "/hello" })).code, "2.05");
      // Fill the total: 2 + honest + 1 = 4; the fifth, from a fresh address, is refused.
      await raw("127.0.0.3");
      const fifth = await raw("127.0.0.4");
      await refusedIn(fifth);
      assert.equal(server.stats.refused, 2);
      // The honest client keeps working, and once a slot is free a new one gets in.
      assert.equal((await client.request({ method: "GET", path: "/hello" })).code, "2.05");
      await client.close();
      const again = await honest("127.0.0.4");
      assert.equal((await again.request({ method: "GET", path: "/hello" })).code, "2.05");
      await again.close();
      const refusals = errors.filter((e) => /refused/.test(e.message));
      assert.ok(refusals.length >= 1 && refusals.length <= 2, "refusals are reported, summarised");
      assert.equal(
        errors.filter((e) => /handshake/.test(e.message) && /127\.0\.0\.(1|4)/.test(e.message)).length,
        0,
      );
    } finally {
      for (const s of held) s.destroy();
      await server.close();
    }
  });

  it("refuses a cap that is not a whole number from 1", () => {
    assert.throws(() => new CoapTcpServer({ handler: ok, maxConnections: 0 }), /maxConnections/);
    assert.throws(
      () => new CoapTcpServer({ handler: ok, maxConnectionsPerAddress: 1.5 }),
      /maxConnectionsPerAddress/,
    );
  });
});

describe("coaps+tcp listener: the TLS policy", () => {
  it("offers TLS 1.2 with AEAD suites only, and refuses TLS 1.1 and CBC suites", async () => {
    const server = tlsServer();
    server.on("error", () => undefined);
    const { port } = await server.listen(0, "127.0.0.1");
    const attempt = (opts: Record<string, unknown>) =>
      new Promise<TLSSocket | Error>((resolve) => {
        const s = tlsConnect({
          host: "127.0.0.1",
          port,
          ca: pki.caCert,
          cert: device.cert,
          key: device.key,
          ...opts,
        });
        s.once("secureConnect", () => resolve(s));
        s.once("error", (e) => resolve(e));
      });
    try {
      const cbc = await attempt({
        maxVersion: "TLSv1.2",
        ciphers: "ECDHE-ECDSA-AES128-SHA256:ECDHE-ECDSA-AES128-SHA",
      });
      assert.ok(cbc instanceof Error, "CBC suites are not offered");
      const old = await attempt({
        minVersion: "TLSv1",
        maxVersion: "TLSv1.1",
        ciphers: "DEFAULT@SECLEVEL=0",
      });
      assert.ok(old instanceof Error, "TLS 1.1 is not offered");
      const gcm = await attempt({ maxVersion: "TLSv1.2" });
      assert.ok(!(gcm instanceof Error), `TLS 1.2 works: ${String(gcm)}`);
      assert.match(gcm.getCipher().name, /GCM|CHACHA20/);
      gcm.destroy();
      const tls13 = await attempt({});
      assert.ok(!(tls13 instanceof Error));
      assert.equal(tls13.getProtocol(), "TLSv1.3");
      tls13.destroy();
    } finally {
      await server.close();
    }
  });
});

describe("coaps+tcp listener: close()", () => {
  it("also ends connections still in (or never starting) their TLS handshake", async () => {
    const server = tlsServer({ inactivityTimeoutMs: 60000 });
    server.on("error", () => undefined);
    const { port } = await server.listen(0, "127.0.0.1");
    const silent = netConnect({ host: "127.0.0.1", port });
    silent.on("error", () => undefined);
    await once(silent, "connect");
    const gone = new Promise<void>((r) => silent.once("close", () => r()));
    await within<void>(10000, "close() to finish", (resolve) => void server.close().then(resolve));
    await within<void>(5000, "the silent socket to be closed", (resolve) => void gone.then(resolve));
  });
});
