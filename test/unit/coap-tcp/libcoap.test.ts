import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "mocha";
import {
  CoapTcpClient,
  CoapTcpError,
  CoapTcpServer,
  ContentFormat,
  type CoapServerRequest,
} from "../../../lib/transports/coap-tcp";
import { libcoapClient, startLibcoapServer, type LibcoapServer } from "../../support/coaptcp-peers";
import { makeTestPki, type TestPki } from "../../support/pki";

describe("unit/coap-tcp/libcoap", () => {
  let pki: TestPki;
  const dir = mkdtempSync(join(tmpdir(), "coaptcp-"));

  before(() => {
    pki = makeTestPki("Interop");
  });

  /** libcoap -v 7 logs each PDU as "v:1 t:CON c:PUT ... [ ..., Block1:3/M/1024, ... ]". */
  function blockLines(log: string, option: "Block1" | "Block2"): string[] {
    return log.split("\n").filter((l) => l.includes(`${option}:`));
  }

  describe("our client against libcoap's coap-server-openssl", () => {
    let plain: LibcoapServer;
    let secure: LibcoapServer;

    before(async () => {
      plain = await startLibcoapServer();
      secure = await startLibcoapServer({
        certPath: pki.serverCertPath,
        keyPath: pki.serverKeyPath,
        caPath: pki.caCertPath,
      });
    });

    after(async () => {
      await plain?.stop();
      await secure?.stop();
    });

    it("coap+tcp: CSM, GET /time, ping, Release", async () => {
      const c = await CoapTcpClient.connect({ host: "127.0.0.1", port: plain.port });
      try {
        assert.equal(c.peer.blockWise, true);
        assert.ok(c.peer.maxMessageSize > 1152);
        const r = await c.request({ method: "GET", path: "/time" });
        assert.equal(r.code, "2.05");
        assert.match(r.payload.toString(), /\d\d:\d\d:\d\d/);
        await c.ping();
        const nf = await c.request({ method: "GET", path: "/no/such/resource" });
        assert.equal(nf.code, "4.04");
      } finally {
        await c.close();
      }
      assert.match(plain.output(), /c:Release/);
    });

    it("coap+tcp: 100 KB up in Block1 and back down in Block2, bytes intact", async () => {
      const body = randomBytes(100 * 1024);
      const c = await CoapTcpClient.connect({ host: "127.0.0.1", port: plain.port });
      const logStart = plain.output().length;
      try {
        const put = await c.request({
          method: "PUT",
          path: "/big-plain",
          payload: body,
          contentFormat: ContentFormat.OCTET_STREAM,
        });
        assert.match(put.code, /^2\.0[14]$/);
        const get = await c.request({ method: "GET", path: "/big-plain" });
        assert.equal(get.code, "2.05");
        assert.ok(get.payload.equals(body), "the bytes libcoap hands back are the bytes we sent");
        assert.equal(c.stats.blocksSent, 100);
        assert.equal(c.stats.blocksReceived, 100);
      } finally {
        await c.close();
      }
      const log = plain.output().slice(logStart);
      assert.ok(
        blockLines(log, "Block1").some((l) => l.includes("Block1:99/_/1024")),
        "libcoap saw the last Block1",
      );
      assert.ok(
        blockLines(log, "Block2").some((l) => l.includes("Block2:99/_/1024")),
        "libcoap served the last Block2",
      );
    });

    it("coaps+tcp with mutual TLS: GET and a 50 KB round trip", async () => {
      const id = pki.issueClient("interop-device");
      const c = await CoapTcpClient.connect({
        host: "127.0.0.1",
        port: secure.tlsPort,
        tls: { ca: pki.caCert, cert: id.cert, key: id.key },
      });
      try {
        assert.equal(c.peerCertificate?.subject.CN, "localhost");
        assert.equal((await c.request({ method: "GET", path: "/time" })).code, "2.05");
        const body = randomBytes(50 * 1024);
        await c.request({ method: "PUT", path: "/big-tls", payload: body });
        const get = await c.request({ method: "GET", path: "/big-tls" });
        assert.ok(get.payload.equals(body));
      } finally {
        await c.close();
      }
    });

    it("coaps+tcp: libcoap refuses a client certificate from another CA; we report TLS", async () => {
      const stranger = makeTestPki("Elsewhere").issueClient("stranger");
      await assert.rejects(
        CoapTcpClient.connect({
          host: "127.0.0.1",
          port: secure.tlsPort,
          tls: { ca: pki.caCert, cert: stranger.cert, key: stranger.key },
          connectTimeoutMs: 5000,
        }),
        (e: CoapTcpError) => {
          assert.equal(e.code, "COAP_TLS");
          assert.match(
            e.message,
            /connecting to 127\.0\.0\.1:\d+: TLS error .*: tlsv1 alert unknown ca \(ERR_SSL_TLSV1_ALERT_UNKNOWN_CA\)$/,
          );
          return true;
        },
      );
    });
  });

  describe("libcoap's coap-client-openssl against our server", () => {
    const big = randomBytes(100 * 1024);
    const uploads = new Map<string, Buffer>();
    const seen: CoapServerRequest[] = [];
    let plain: CoapTcpServer;
    let secure: CoapTcpServer;
    let plainPort: number;
    let securePort: number;

    const handler = async (req: CoapServerRequest) => {
      seen.push(req);
      if (req.method === "PUT") {
        uploads.set(req.path, req.payload ?? Buffer.alloc(0));
        return { code: "2.04", payload: Buffer.alloc(0) };
      }
      if (req.path === "/big")
        return { code: "2.05", contentFormat: ContentFormat.OCTET_STREAM, payload: big };
      if (req.path === "/hello")
        return { code: "2.05", contentFormat: ContentFormat.TEXT, payload: Buffer.from("hello from node") };
      return { code: "4.04", payload: Buffer.alloc(0) };
    };

    before(async () => {
      plain = new CoapTcpServer({ handler });
      ({ port: plainPort } = await plain.listen(0, "127.0.0.1"));
      secure = new CoapTcpServer({
        handler,
        tls: { cert: pki.serverCert, key: pki.serverKey, ca: pki.caCert, requestCert: true },
      });
      ({ port: securePort } = await secure.listen(0, "127.0.0.1"));
    });

    after(async () => {
      await plain.close();
      await secure.close();
    });

    it("coap+tcp: GET a small resource", async () => {
      const r = await libcoapClient(["-m", "get", `coap+tcp://127.0.0.1:${plainPort}/hello`]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout.toString().trimEnd(), "hello from node"); // libcoap ends text output with a newline
    });

    it("coap+tcp: GET 100 KB (Block2) and PUT 50 KB (Block1) with -b 1024", async () => {
      const before = plain.stats;
      const out = join(dir, "plain.bin");
      const get = await libcoapClient([
        "-m",
        "get",
        "-b",
        "1024",
        "-o",
        out,
        `coap+tcp://127.0.0.1:${plainPort}/big`,
      ]);
      assert.equal(get.code, 0, get.stderr);
      assert.ok(readFileSync(out).equals(big), "libcoap reassembled our blocks into the same bytes");
      assert.equal(plain.stats.blocksSent - before.blocksSent, 100);

      const body = randomBytes(50 * 1024);
      const file = join(dir, "up.bin");
      writeFileSync(file, body);
      const put = await libcoapClient([
        "-m",
        "put",
        "-b",
        "1024",
        "-f",
        file,
        `coap+tcp://127.0.0.1:${plainPort}/upload`,
      ]);
      assert.equal(put.code, 0, put.stderr);
      assert.ok(uploads.get("/upload")?.equals(body), "we reassembled libcoap's blocks into the same bytes");
      assert.equal(plain.stats.blocksReceived - before.blocksReceived, 50);
    });

    it("coaps+tcp: libcoap with a client certificate; the handler sees its chain", async () => {
      const id = pki.issueClient("libcoap-device");
      const tls = ["-c", id.certPath, "-j", id.keyPath, "-C", pki.caCertPath];
      const r = await libcoapClient(["-m", "get", ...tls, `coaps+tcp://127.0.0.1:${securePort}/hello`]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout.toString().trimEnd(), "hello from node"); // libcoap ends text output with a newline
      const req = [...seen].reverse().find((s) => s.path === "/hello");
      assert.equal(req?.peerCertificate?.subject.CN, "libcoap-device");
      assert.match(req?.peerCertificateChain?.[1]?.subject ?? "", /CN=Interop CA/);

      const out = join(dir, "tls.bin");
      const get = await libcoapClient([
        "-m",
        "get",
        "-b",
        "1024",
        ...tls,
        "-o",
        out,
        `coaps+tcp://127.0.0.1:${securePort}/big`,
      ]);
      assert.equal(get.code, 0, get.stderr);
      assert.ok(readFileSync(out).equals(big));
      const body = randomBytes(50 * 1024);
      const file = join(dir, "tls-up.bin");
      writeFileSync(file, body);
      const put = await libcoapClient([
        "-m",
        "put",
        "-b",
        "1024",
        ...tls,
        "-f",
        file,
        `coaps+tcp://127.0.0.1:${securePort}/tls-upload`,
      ]);
      assert.equal(put.code, 0, put.stderr);
      assert.ok(uploads.get("/tls-upload")?.equals(body));
    });
  });
});
