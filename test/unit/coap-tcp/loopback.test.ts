import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { once } from "node:events";
import { createServer, type Server, type Socket } from "node:net";
import { after, before, describe, it } from "mocha";
import {
  CoapTcpClient,
  CoapTcpError,
  CoapTcpServer,
  ContentFormat,
  type CoapResponse,
  type CoapServerRequest,
} from "../../../lib/transports/coap-tcp";
import { Code, Opt } from "../../../lib/transports/coap-tcp/codes";
import { encodeMessage, FrameParser } from "../../../lib/transports/coap-tcp/frame";
import { stringOption, uintOption } from "../../../lib/transports/coap-tcp/options";
import { abort, csm, release } from "../../../lib/transports/coap-tcp/signaling";
import { rawPeer } from "../../support/coaptcp-raw";

describe("unit/coap-tcp/loopback", () => {
  type Handler = (req: CoapServerRequest) => Promise<CoapResponse>;

  let server: CoapTcpServer;
  let port: number;
  let route: Handler = async () => ({ code: "4.04", payload: Buffer.alloc(0) });
  const serverErrors: Error[] = [];

  before(async () => {
    server = new CoapTcpServer({ handler: (req) => route(req), inactivityTimeoutMs: 5000 });
    server.on("error", (err: Error) => serverErrors.push(err));
    ({ port } = await server.listen(0, "127.0.0.1"));
  });

  after(async () => {
    await server.close();
  });

  function nextServerError(pred: (e: Error) => boolean): Promise<Error> {
    const seen = serverErrors.find(pred);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve) => {
      const on = (e: Error) => {
        if (pred(e)) {
          server.off("error", on);
          resolve(e);
        }
      };
      server.on("error", on);
    });
  }

  async function withClient<T>(
    fn: (c: CoapTcpClient) => Promise<T>,
    opts: { maxMessageSize?: number } = {},
  ): Promise<T> {
    const c = await CoapTcpClient.connect({ host: "127.0.0.1", port, ...opts });
    try {
      return await fn(c);
    } finally {
      await c.close();
    }
  }

  it("CSM exchange: both sides announce Max-Message-Size and block-wise transfer", async () => {
    await withClient(async (c) => {
      assert.deepEqual(c.peer, { maxMessageSize: 262144, blockWise: true });
    });
  });

  it("many concurrent requests on one connection are matched by token", async () => {
    const N = 50;
    const held: Array<() => void> = [];
    let allIn!: () => void;
    const arrived = new Promise<void>((r) => (allIn = r));
    route = (req) =>
      new Promise((resolve) => {
        held.push(() =>
          resolve({
            code: "2.05",
            contentFormat: ContentFormat.TEXT,
            payload: Buffer.from(`${req.path}?${(req.query ?? []).join("&")}`),
          }),
        );
        if (held.length === N) allIn();
      });
    await withClient(async (c) => {
      const pending = Array.from({ length: N }, (_, i) =>
        c.request({ method: "GET", path: `/item/${i}`, query: [`n=${i}`] }),
      );
      await arrived;
      // Answer in reverse order: only token matching can pair them up.
      for (const answer of held.reverse()) answer();
      const results = await Promise.all(pending);
      results.forEach((r, i) => {
        assert.equal(r.code, "2.05");
        assert.equal(r.contentFormat, ContentFormat.TEXT);
        assert.equal(r.payload.toString(), `/item/${i}?n=${i}`);
      });
    });
  });

  it("request fields reach the handler; 4.xx answers are responses, not errors", async () => {
    let seen: CoapServerRequest | undefined;
    route = async (req) => {
      seen = req;
      return { code: "4.04", payload: Buffer.from("no such thing") };
    };
    await withClient(async (c) => {
      const r = await c.request({
        method: "POST",
        path: "/api/v1/provisioning/credentials",
        query: ["a=1", "b"],
        contentFormat: ContentFormat.OCF_CBOR,
        accept: ContentFormat.CBOR,
        payload: Buffer.from([0xa0]),
      });
      assert.equal(r.code, "4.04");
      assert.equal(r.payload.toString(), "no such thing");
    });
    assert.ok(seen);
    assert.equal(seen.method, "POST");
    assert.equal(seen.path, "/api/v1/provisioning/credentials");
    assert.deepEqual(seen.query, ["a=1", "b"]);
    assert.equal(seen.contentFormat, 10000);
    assert.equal(seen.accept, 60);
    assert.deepEqual(seen.payload, Buffer.from([0xa0]));
    assert.match(seen.remote, /^127\.0\.0\.1:\d+$/);
    assert.equal(seen.peerCertificate, undefined);
  });

  it("ping gets a pong; close sends Release and the server sees the connection go", async () => {
    const c = await CoapTcpClient.connect({ host: "127.0.0.1", port });
    await c.ping();
    const gone = once(server, "disconnect");
    const closedEvent = once(c, "close");
    await c.close();
    const [, reason] = (await gone) as [string, string];
    assert.match(reason, /released the connection/);
    assert.match(String((await closedEvent)[0]), /closed by the client/);
    await assert.rejects(
      c.request({ method: "GET", path: "/" }),
      (e: CoapTcpError) => e.code === "COAP_CLOSED",
    );
  });

  it("a timed-out request leaves the connection usable; its late answer is dropped", async () => {
    let releaseSlow!: () => void;
    route = async (req) => {
      if (req.path === "/slow") await new Promise<void>((r) => (releaseSlow = r));
      return { code: "2.05", payload: Buffer.from(req.path) };
    };
    await withClient(async (c) => {
      await assert.rejects(
        c.request({ method: "GET", path: "/slow" }, { timeoutMs: 200 }),
        (e: CoapTcpError) => {
          assert.equal(e.code, "COAP_TIMEOUT");
          assert.match(e.message, /within 200 ms/);
          return true;
        },
      );
      releaseSlow();
      const r = await c.request({ method: "GET", path: "/fast" });
      assert.equal(r.payload.toString(), "/fast");
      await c.ping();
    });
  });

  it("an AbortSignal cancels one request, not the connection", async () => {
    route = (req) =>
      req.path === "/never"
        ? new Promise<CoapResponse>(() => undefined)
        : Promise.resolve({ code: "2.05", payload: Buffer.from("ok") });
    await withClient(async (c) => {
      const ac = new AbortController();
      const p = c.request({ method: "GET", path: "/never" }, { signal: ac.signal });
      ac.abort(new Error("user gave up"));
      await assert.rejects(
        p,
        (e: CoapTcpError) => e.code === "COAP_CANCELLED" && /user gave up/.test(e.message),
      );
      assert.equal((await c.request({ method: "GET", path: "/x" })).code, "2.05");
    });
  });

  it("block-wise both ways: 50 KB up via Block1, 100 KB down via Block2", async () => {
    const up = randomBytes(50 * 1024);
    const down = randomBytes(100 * 1024);
    let received: Buffer | undefined;
    route = async (req) => {
      if (req.method === "PUT") {
        received = req.payload;
        return { code: "2.04", payload: Buffer.alloc(0) };
      }
      return { code: "2.05", contentFormat: ContentFormat.OCTET_STREAM, payload: down };
    };
    const before = server.stats;
    await withClient(async (c) => {
      const put = await c.request({ method: "PUT", path: "/blob", payload: up });
      assert.equal(put.code, "2.04");
      assert.deepEqual(received, up);
      const get = await c.request({ method: "GET", path: "/blob" });
      assert.equal(get.code, "2.05");
      assert.equal(get.contentFormat, ContentFormat.OCTET_STREAM);
      assert.ok(get.payload.equals(down), "downloaded bytes match");
      assert.equal(c.stats.blocksSent, 50);
      assert.equal(c.stats.blocksReceived, 100);
    });
    assert.equal(server.stats.blocksReceived - before.blocksReceived, 50);
    assert.equal(server.stats.blocksSent - before.blocksSent, 100);
  });

  it("a POST with a large body and a large answer uses Block1 then Block2", async () => {
    route = async (req) => ({ code: "2.04", payload: Buffer.concat([req.payload!, req.payload!]) });
    const body = randomBytes(5000);
    await withClient(async (c) => {
      const r = await c.request({ method: "POST", path: "/double", payload: body });
      assert.equal(r.code, "2.04");
      assert.ok(r.payload.equals(Buffer.concat([body, body])));
    });
  });

  it("bodies beyond maxMessageSize are refused: 4.13 upstream, COAP_TOO_LARGE downstream", async () => {
    route = async (req) => ({
      code: "2.05",
      payload: req.method === "GET" ? Buffer.alloc(300000) : Buffer.alloc(0),
    });
    await withClient(
      async (c) => {
        const r = await c.request({ method: "PUT", path: "/huge", payload: Buffer.alloc(300000) });
        assert.equal(r.code, "4.13");
        await assert.rejects(
          c.request({ method: "GET", path: "/huge" }),
          (e: CoapTcpError) => e.code === "COAP_TOO_LARGE",
        );
        assert.equal((await c.request({ method: "DELETE", path: "/huge" })).code, "2.05", "still usable");
      },
      { maxMessageSize: 100000 },
    );
  });

  it("a failing handler answers 5.00 with a diagnostic and reports the error", async () => {
    route = async () => {
      throw new Error("enrollment store unavailable");
    };
    const reported = nextServerError((e) => /enrollment store unavailable/.test(e.message));
    await withClient(async (c) => {
      const r = await c.request({ method: "GET", path: "/boom" });
      assert.equal(r.code, "5.00");
      assert.match(r.payload.toString(), /request handler failed: enrollment store unavailable/);
    });
    assert.match((await reported).message, /GET \/boom/);
  });

  it("a handler answering with a bad code yields 5.00", async () => {
    route = async () => ({ code: "9.99", payload: Buffer.alloc(0) });
    await withClient(async (c) => {
      assert.equal((await c.request({ method: "GET", path: "/" })).code, "5.00");
    });
  });

  it("unknown method -> 4.05, unknown critical option -> 4.02, Ping -> Pong with the token", async () => {
    route = async () => ({ code: "2.05", payload: Buffer.alloc(0) });
    const peer = await rawPeer(port);
    peer.send(csm(1152, false));
    await peer.waitFor((m) => m.code === Code.CSM);
    peer.send({
      code: 0x05 /* FETCH */,
      token: Buffer.from([1]),
      options: [stringOption(Opt.URI_PATH, "x")],
      payload: Buffer.alloc(0),
    });
    const r1 = await peer.waitFor((m) => m.token.equals(Buffer.from([1])));
    assert.equal(r1.code, Code.METHOD_NOT_ALLOWED);
    assert.match(r1.payload.toString(), /0\.05 is not allowed/);
    peer.send({
      code: Code.GET,
      token: Buffer.from([2]),
      options: [uintOption(9 /* OSCORE */, 1)],
      payload: Buffer.alloc(0),
    });
    const r2 = await peer.waitFor((m) => m.token.equals(Buffer.from([2])));
    assert.equal(r2.code, Code.BAD_OPTION);
    peer.send({
      code: Code.PING,
      token: Buffer.from([3, 3]),
      options: [{ number: 2, value: Buffer.alloc(0) }],
      payload: Buffer.alloc(0),
    });
    const pong = await peer.waitFor((m) => m.code === Code.PONG);
    assert.deepEqual(pong.token, Buffer.from([3, 3]));
    assert.equal(pong.options[0]?.number, 2, "custody echoed");
    peer.socket.end();
    await peer.closed;
  });

  async function expectAbort(bytes: Buffer, diagnostic: RegExp): Promise<void> {
    const peer = await rawPeer(port);
    const reported = nextServerError((e) => diagnostic.test(e.message));
    peer.send(bytes);
    const ab = await peer.waitFor((m) => m.code === Code.ABORT);
    assert.match(ab.payload.toString(), diagnostic);
    await peer.closed;
    await reported;
  }

  it("garbage bytes: the server aborts with a diagnostic, closes, and keeps serving", async () => {
    route = async () => ({ code: "2.05", payload: Buffer.from("alive") });
    await expectAbort(
      Buffer.from("GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
      /token length|CSM|reserved|past the message end/,
    );
    await withClient(async (c) =>
      assert.equal((await c.request({ method: "GET", path: "/" })).payload.toString(), "alive"),
    );
  });

  it("a first message that is not a CSM is aborted", async () => {
    await expectAbort(
      encodeMessage({ code: Code.GET, token: Buffer.from([1]), options: [], payload: Buffer.alloc(0) }),
      /expected a CSM as the first message/,
    );
  });

  it("an oversized length field is refused before the body arrives", async () => {
    const header = Buffer.from([0xf0, 0x7f, 0xff, 0xff, 0xff]); // Len 15: ~2 GB announced
    await expectAbort(
      Buffer.concat([encodeMessage(csm(1152, true)), header]),
      /exceeds Max-Message-Size 262144/,
    );
  });

  it("an unknown critical CSM option aborts with Bad-CSM-Option", async () => {
    const bad = csm(1152, true);
    bad.options.push({ number: 7, value: Buffer.alloc(0) });
    const peer = await rawPeer(port);
    peer.send(bad);
    const ab = await peer.waitFor((m) => m.code === Code.ABORT);
    assert.equal(ab.options.find((o) => o.number === 2)?.value[0], 7);
    await peer.closed;
  });

  it("a truncated message then close is reported and nothing crashes", async () => {
    const peer = await rawPeer(port);
    const reported = nextServerError((e) => /in the middle of a message/.test(e.message));
    const full = encodeMessage({
      code: Code.POST,
      token: Buffer.from([9]),
      options: [],
      payload: Buffer.alloc(500, 1),
    });
    peer.send(Buffer.concat([encodeMessage(csm(1152, true)), full.subarray(0, 100)]));
    peer.socket.end();
    await peer.closed;
    assert.match((await reported).message, /bytes of it received/);
  });

  it("a silent peer is released after the inactivity timeout", async () => {
    const quick = new CoapTcpServer({ handler: route, inactivityTimeoutMs: 300 });
    const { port: quickPort } = await quick.listen(0, "127.0.0.1");
    try {
      const peer = await rawPeer(quickPort);
      peer.send(csm(1152, true));
      const rel = await peer.waitFor((m) => m.code === Code.RELEASE);
      assert.equal(rel.code, Code.RELEASE);
      await peer.closed;
    } finally {
      await quick.close();
    }
  });

  /** A bare TCP server that speaks just enough CoAP to misbehave in one chosen way. */
  async function fakeServer(
    onRequest: (socket: Socket, token: Buffer) => void,
    sendCsm = true,
  ): Promise<{ srv: Server; port: number }> {
    const srv = createServer((socket) => {
      socket.on("error", () => undefined);
      if (sendCsm) socket.write(encodeMessage(csm(1152, false)));
      const parser = new FrameParser(1 << 20);
      socket.on("data", (chunk: Buffer) => {
        for (const m of parser.push(chunk).messages)
          if (m.code >= 1 && m.code < 32) onRequest(socket, m.token);
      });
    });
    srv.listen(0, "127.0.0.1");
    await once(srv, "listening");
    return { srv, port: (srv.address() as { port: number }).port };
  }

  it("a silent server: connect times out waiting for its CSM", async () => {
    const { srv, port: p } = await fakeServer(() => undefined, false);
    try {
      await assert.rejects(
        CoapTcpClient.connect({ host: "127.0.0.1", port: p, connectTimeoutMs: 300 }),
        (e: CoapTcpError) => {
          assert.equal(e.code, "COAP_TIMEOUT");
          assert.match(e.message, /no CSM from 127\.0\.0\.1:\d+ within/);
          return true;
        },
      );
    } finally {
      srv.close();
    }
  });

  it("Abort from the peer rejects pending requests with its diagnostic", async () => {
    const { srv, port: p } = await fakeServer((socket) => {
      socket.end(encodeMessage(abort("shutting down for maintenance")));
    });
    try {
      const c = await CoapTcpClient.connect({ host: "127.0.0.1", port: p });
      const errors: Error[] = [];
      c.on("error", (e: Error) => errors.push(e));
      await assert.rejects(c.request({ method: "GET", path: "/" }), (e: CoapTcpError) => {
        assert.equal(e.code, "COAP_ABORTED");
        assert.match(e.message, /aborted the connection: shutting down for maintenance/);
        return true;
      });
      assert.ok(errors.some((e) => /shutting down for maintenance/.test(e.message)));
    } finally {
      srv.close();
    }
  });

  it("Release from the peer rejects pending requests cleanly", async () => {
    const { srv, port: p } = await fakeServer((socket) => {
      socket.write(encodeMessage(release(30)));
    });
    try {
      const c = await CoapTcpClient.connect({ host: "127.0.0.1", port: p });
      const closed = once(c, "close");
      await assert.rejects(c.request({ method: "GET", path: "/" }), (e: CoapTcpError) => {
        assert.equal(e.code, "COAP_RELEASED");
        assert.match(e.message, /released the connection \(hold off 30 s\)/);
        return true;
      });
      await closed;
      assert.equal(c.closed, true);
    } finally {
      srv.close();
    }
  });

  it("a peer with the base Max-Message-Size (1152) still gets large requests, in blocks", async () => {
    const chunks: Buffer[] = [];
    const { srv, port: p } = await fakeServer(() => undefined);
    srv.removeAllListeners("connection");
    srv.on("connection", (socket: Socket) => {
      socket.on("error", () => undefined);
      socket.write(encodeMessage(csm(1152, false)));
      const parser = new FrameParser(1152);
      socket.on("data", (chunk: Buffer) => {
        for (const m of parser.push(chunk).messages) {
          if (m.code !== Code.PUT) continue;
          chunks.push(m.payload);
          const b1 = m.options.find((o) => o.number === Opt.BLOCK1)!;
          const more = (b1.value[b1.value.length - 1] & 8) !== 0;
          socket.write(
            encodeMessage({
              code: more ? Code.CONTINUE : 0x44,
              token: m.token,
              options: [{ number: Opt.BLOCK1, value: b1.value }],
              payload: Buffer.alloc(0),
            }),
          );
        }
      });
    });
    try {
      const c = await CoapTcpClient.connect({ host: "127.0.0.1", port: p });
      const body = randomBytes(3000);
      const r = await c.request({ method: "PUT", path: "/x", payload: body });
      assert.equal(r.code, "2.04");
      assert.ok(Buffer.concat(chunks).equals(body));
      assert.equal(chunks.length, 3);
      await c.close();
    } finally {
      srv.close();
    }
  });
});
