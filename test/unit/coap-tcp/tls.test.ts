import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { once } from "node:events";
import { connect } from "node:net";
import { after, before, describe, it } from "mocha";
import {
  CoapTcpClient,
  CoapTcpError,
  CoapTcpServer,
  type CoapServerRequest,
} from "../../../lib/transports/coap-tcp";
import { makeTestPki, type TestPki } from "../../support/pki";

describe("unit/coap-tcp/tls", () => {
  let pki: TestPki;
  let otherPki: TestPki;
  let server: CoapTcpServer;
  let port: number;
  const seen: CoapServerRequest[] = [];
  const serverErrors: Error[] = [];

  before(async () => {
    pki = makeTestPki("DPS");
    otherPki = makeTestPki("Stranger");
    server = new CoapTcpServer({
      tls: {
        cert: pki.serverCert,
        key: pki.serverKey,
        ca: pki.caCert,
        requestCert: true,
        rejectUnauthorized: true,
      },
      handler: async (req) => {
        seen.push(req);
        return {
          code: "2.05",
          payload:
            req.method === "GET" && req.path === "/big" ? Buffer.alloc(20000, 5) : Buffer.from("hello"),
        };
      },
    });
    server.on("error", (e: Error) => serverErrors.push(e));
    ({ port } = await server.listen(0, "127.0.0.1"));
  });

  after(async () => {
    await server.close();
  });

  function serverError(pred: RegExp): Promise<Error> {
    const already = serverErrors.find((e) => pred.test(e.message));
    if (already) return Promise.resolve(already);
    return new Promise((resolve) => {
      const on = (e: Error) => {
        if (pred.test(e.message)) {
          server.off("error", on);
          resolve(e);
        }
      };
      server.on("error", on);
    });
  }

  function clientFor(issuer: TestPki, cn: string): Promise<CoapTcpClient> {
    const id = issuer.issueClient(cn);
    return CoapTcpClient.connect({
      host: "127.0.0.1",
      port,
      tls: { ca: pki.caCert, cert: id.cert, key: id.key },
    });
  }

  it("mutual TLS: the handler sees the device's certificate chain, the client the server's", async () => {
    const c = await clientFor(pki, "device-0001");
    try {
      assert.equal(c.peerCertificate?.subject.CN, "localhost");
      const r = await c.request({ method: "GET", path: "/x.plgd.dev/time" });
      assert.equal(r.payload.toString(), "hello");
      const big = await c.request({ method: "GET", path: "/big" });
      assert.equal(big.payload.length, 20000, "block-wise over TLS");
      const up = randomBytes(9000);
      await c.request({ method: "POST", path: "/up", payload: up });
      assert.ok(seen.at(-1)?.payload?.equals(up));
    } finally {
      await c.close();
    }
    const req = seen.find((r) => r.path === "/x.plgd.dev/time");
    assert.ok(req);
    assert.equal(req.authorized, true);
    assert.equal(req.peerCertificate?.subject.CN, "device-0001");
    const chain = req.peerCertificateChain ?? [];
    assert.equal(chain.length, 2);
    assert.match(chain[0].subject, /CN=device-0001/);
    assert.match(chain[0].issuer, /CN=DPS CA/);
    assert.match(chain[1].subject, /CN=DPS CA/);
    assert.ok(chain[0].checkIssued(chain[1]));
  });

  it("a client certificate from another CA is refused with a clear error; other clients keep working", async () => {
    const good = await clientFor(pki, "device-good");
    try {
      const refused = serverError(/client certificate "device-stranger" from 127\.0\.0\.1:\d+ refused/);
      // The server finishes the handshake, then says why in an Abort rather than just hanging up.
      await assert.rejects(clientFor(otherPki, "device-stranger"), (e: CoapTcpError) => {
        assert.equal(e.code, "COAP_ABORTED");
        assert.match(
          e.message,
          /connecting to 127\.0\.0\.1:\d+: .*client certificate refused: UNABLE_TO_VERIFY_LEAF_SIGNATURE/,
        );
        return true;
      });
      assert.match((await refused).message, /UNABLE_TO_VERIFY_LEAF_SIGNATURE/);
      assert.ok(
        !seen.some((r) => r.peerCertificate?.subject.CN === "device-stranger"),
        "no request reached the handler",
      );
      assert.equal((await good.request({ method: "GET", path: "/still" })).code, "2.05");
      const again = await clientFor(pki, "device-late");
      assert.equal((await again.request({ method: "GET", path: "/" })).code, "2.05");
      await again.close();
    } finally {
      await good.close();
    }
  });

  it("a client without any certificate is refused the same way", async () => {
    const refused = serverError(/client certificate from 127\.0\.0\.1:\d+ refused/);
    await assert.rejects(
      CoapTcpClient.connect({ host: "127.0.0.1", port, tls: { ca: pki.caCert } }),
      (e: CoapTcpError) => e.code === "COAP_ABORTED" && /client certificate refused/.test(e.message),
    );
    await refused;
  });

  it("a server certificate the client does not trust is refused", async () => {
    const id = pki.issueClient("device-x");
    await assert.rejects(
      CoapTcpClient.connect({
        host: "127.0.0.1",
        port,
        tls: { ca: otherPki.caCert, cert: id.cert, key: id.key },
      }),
      (e: CoapTcpError) => {
        assert.equal(e.code, "COAP_TLS");
        assert.match(e.message, /TLS handshake failed: .*certificate/i);
        return true;
      },
    );
  });

  it("a truncated TLS handshake is reported and the server keeps serving", async () => {
    const reported = serverError(/TLS handshake with .* failed: .*closed during the handshake/);
    const sock = connect({ host: "127.0.0.1", port });
    sock.on("error", () => undefined);
    await once(sock, "connect");
    // The first bytes of a ClientHello record, then nothing more.
    sock.end(Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03]));
    await once(sock, "close");
    assert.ok(await reported);
    const c = await clientFor(pki, "device-after");
    assert.equal((await c.request({ method: "GET", path: "/" })).code, "2.05");
    await c.close();
  });

  it("a peer that never starts the TLS handshake is dropped after the inactivity timeout", async () => {
    const quick = new CoapTcpServer({
      tls: { cert: pki.serverCert, key: pki.serverKey },
      handler: async () => ({ code: "2.05", payload: Buffer.alloc(0) }),
      inactivityTimeoutMs: 300,
    });
    const errors: Error[] = [];
    quick.on("error", (e: Error) => errors.push(e));
    const { port: quickPort } = await quick.listen(0, "127.0.0.1");
    try {
      const sock = connect({ host: "127.0.0.1", port: quickPort });
      sock.on("error", () => undefined);
      await once(sock, "close");
      assert.ok(
        errors.some((e) =>
          /TLS handshake with 127\.0\.0\.1:\d+ failed: TLS handshake timeout/.test(e.message),
        ),
      );
    } finally {
      await quick.close();
    }
  });
});
