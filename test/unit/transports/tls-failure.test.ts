import { after, before, describe, it } from "mocha";
import assert from "node:assert/strict";
import { generateKeyPairSync, createPublicKey, X509Certificate } from "node:crypto";
import { createServer as createNetServer, type AddressInfo, type Server } from "node:net";
import { connect, createServer, type ConnectionOptions, type TlsOptions } from "node:tls";
import { issueCertificate, keyIdentifier, selfSignedCa } from "../../../lib/pki/signer";
import { tlsFailureOf, describeTlsFailure, type TlsFailureKind } from "../../../lib/transports/tls-failure";
import { makeTestPki, type TestPki } from "../../support/pki";
import { freeTcpPort } from "../../support/ports";
import { startProcess } from "../../support/process";

const DAY = 86_400_000;

/** A CA and a server certificate for 127.0.0.1 valid from `from` to `to`, made by lib/pki. */
function serverCertificate(from: Date, to: Date): { ca: string; cert: string; key: string } {
  const caKey = generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey;
  const ca = selfSignedCa(
    "Validity Test CA",
    caKey,
    new Date(Date.now() - 10 * DAY),
    new Date(Date.now() + 10 * DAY),
  );
  const key = generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey;
  const raw = new X509Certificate(ca).raw;
  // The issuer name is the CA's subject: take it from the DER the signer made.
  const name = subjectOf(raw);
  const cert = issueCertificate(
    {
      commonName: "localhost",
      publicKey: createPublicKey(key),
      notBefore: from,
      notAfter: to,
      keyUsage: ["digitalSignature"],
      extendedKeyUsage: ["1.3.6.1.5.5.7.3.1"],
      altNames: ["localhost", "127.0.0.1"],
    },
    { name, key: caKey, keyId: keyIdentifier(createPublicKey(caKey)) },
  );
  return { ca, cert, key: key.export({ type: "pkcs8", format: "pem" }).toString() };
}

/** The subject Name of a DER certificate (sequence -> tbs -> 6th element, after an explicit version). */
function subjectOf(der: Buffer): Buffer {
  const read = (buf: Buffer, at: number) => {
    let len = buf[at + 1];
    let head = 2;
    if (len & 0x80) {
      const n = len & 0x7f;
      len = buf.readUIntBE(at + 2, n);
      head = 2 + n;
    }
    return { start: at, content: at + head, end: at + head + len };
  };
  const cert = read(der, 0);
  const tbs = read(der, cert.content);
  let at = tbs.content;
  const items: Array<{ start: number; end: number }> = [];
  while (at < tbs.end && items.length < 6) {
    const item = read(der, at);
    items.push(item);
    at = item.end;
  }
  const subject = items[5];
  return der.subarray(subject.start, subject.end);
}

async function listen(server: Server): Promise<number> {
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  return (server.address() as AddressInfo).port;
}

/** Connects, and resolves with the error the handshake (or the first read) ended in. */
function failureOf(port: number, opts: ConnectionOptions): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: "127.0.0.1", port, ...opts }, () => {
      s.write("ping");
    });
    s.once("error", (err) => {
      s.destroy();
      resolve(err);
    });
    s.once("close", () => resolve(new Error("closed without an error")));
    s.setTimeout(10000, () => {
      s.destroy();
      reject(new Error("no outcome within 10 s"));
    });
  });
}

describe("TLS failures say what failed", () => {
  let pki: TestPki;
  const servers: Server[] = [];
  const tlsServer = async (opts: TlsOptions) => {
    const s = createServer(opts, (sock) => sock.on("error", () => undefined));
    s.on("tlsClientError", () => undefined);
    servers.push(s);
    return listen(s);
  };

  before(() => {
    pki = makeTestPki("TlsFailure");
  });
  after(() => {
    for (const s of servers) s.close();
  });

  const expectKind = (err: unknown, kind: TlsFailureKind) => {
    const f = tlsFailureOf(err);
    assert.equal(f?.kind, kind, `got ${String((err as { code?: string }).code)}`);
    assert.match(
      describeTlsFailure(f!, "mqtts://127.0.0.1"),
      /^TLS with mqtts:\/\/127\.0\.0\.1 failed: .+ \(\w+\)$/,
    );
  };

  it("a server whose CA the client does not trust: unknown-ca", async () => {
    const port = await tlsServer({ key: pki.serverKey, cert: pki.serverCert });
    expectKind(await failureOf(port, {}), "unknown-ca");
  });

  it("a certificate for another host name: wrong-host", async () => {
    const port = await tlsServer({ key: pki.serverKey, cert: pki.serverCert });
    expectKind(await failureOf(port, { ca: pki.caCert, servername: "other.test" }), "wrong-host");
  });

  it("an expired certificate: expired; one not valid yet: not-yet-valid", async () => {
    const old = serverCertificate(new Date(Date.now() - 5 * DAY), new Date(Date.now() - DAY));
    let port = await tlsServer({ key: old.key, cert: old.cert });
    expectKind(await failureOf(port, { ca: old.ca, servername: "localhost" }), "expired");
    const future = serverCertificate(new Date(Date.now() + DAY), new Date(Date.now() + 5 * DAY));
    port = await tlsServer({ key: future.key, cert: future.cert });
    expectKind(await failureOf(port, { ca: future.ca, servername: "localhost" }), "not-yet-valid");
  });

  it("a server that refuses the client's certificate (openssl s_server): refused-by-server", async () => {
    const other = makeTestPki("Other");
    const client = other.issueClient("device-1");
    const port = await freeTcpPort();
    // OpenSSL answers an untrusted client certificate with an alert, as mosquitto and
    // libcoap do (Node's own TLS server just closes the socket).
    const server = await startProcess(
      "openssl",
      [
        "s_server",
        "-accept",
        `127.0.0.1:${port}`,
        "-cert",
        pki.serverCertPath,
        "-key",
        pki.serverKeyPath,
        "-CAfile",
        pki.caCertPath,
        "-Verify",
        "1",
        "-verify_return_error",
        "-tls1_2",
      ],
      /^ACCEPT$/m,
      // s_server ends a connection when its stdin ends: keep it open.
      { stdio: ["pipe", "pipe", "pipe"] },
    );
    try {
      const err = await failureOf(port, {
        ca: pki.caCert,
        servername: "localhost",
        cert: client.cert,
        key: client.key,
      });
      expectKind(err, "refused-by-server");
    } finally {
      await server.stop();
    }
  });

  it("a plain TCP port: not-tls; no version in common: no-common-version", async () => {
    const plain = createNetServer((sock) => sock.end("HTTP/1.1 400 Bad Request\r\n\r\n"));
    servers.push(plain);
    expectKind(await failureOf(await listen(plain), { ca: pki.caCert }), "not-tls");
    const port = await tlsServer({ key: pki.serverKey, cert: pki.serverCert, minVersion: "TLSv1.3" });
    expectKind(
      await failureOf(port, { ca: pki.caCert, servername: "localhost", maxVersion: "TLSv1.2" }),
      "no-common-version",
    );
  });

  it("network errors are not TLS failures, and a cause chain is followed", () => {
    assert.equal(tlsFailureOf(Object.assign(new Error("x"), { code: "ECONNREFUSED" })), undefined);
    assert.equal(tlsFailureOf(undefined), undefined);
    const wrapped = new Error("connect failed", {
      cause: Object.assign(new Error("y"), { code: "CERT_HAS_EXPIRED" }),
    });
    assert.equal(tlsFailureOf(wrapped)?.kind, "expired");
  });
});
