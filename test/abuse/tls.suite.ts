/**
 * TLS (issue 8): the package's TLS server (dps-service, coaps+tcp) offers TLS 1.2 and
 * later with AEAD suites only, probed with openssl s_client as an outsider would; the
 * package's TLS clients verify the server by default and say what failed: unknown CA,
 * wrong host name, expired. Run on its own: `npx mocha dist/test/abuse/tls.suite.js`.
 */
import { after, before, describe, it } from "mocha";
import assert from "node:assert/strict";
import { createServer as createHttpsServer } from "node:https";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { createServer as createTlsServer, type Server as TlsServer } from "node:tls";
import { exchangeFor } from "../../lib/dialects/thingsboard/client";
import { CoapTcpClient } from "../../lib/transports/coap-tcp";
import { makeBadServerCerts, type BadServerCerts, type ServerPair } from "../support/pki-bad";
import { run } from "../support/process";
import { startSoakDemo, type SoakDemo } from "../support/soak-demo";
import { emptyRow, formatTable, recordRow, type SummaryRow } from "../support/soak-summary";
import { demoReady } from "../soak/soak";

describe("abuse/tls", () => {
  const rows: SummaryRow[] = [];
  after(() => {
    for (const r of rows) recordRow(r);
    process.stdout.write("\n" + formatTable(rows) + "\n");
  });

  /** openssl s_client against 127.0.0.1:port; true when a handshake completed. */
  async function handshakes(
    port: number,
    args: string[],
    pkiDir?: string,
  ): Promise<{ ok: boolean; text: string }> {
    const cert = pkiDir
      ? ["-cert", join(pkiDir, "device-manufacturer.pem"), "-key", join(pkiDir, "device-manufacturer.key")]
      : [];
    const r = await run(
      "openssl",
      ["s_client", "-connect", `127.0.0.1:${port}`, "-servername", "localhost", ...cert, ...args],
      {
        input: "Q\n",
        timeout: 15000,
      },
    );
    const text = r.stdout.toString() + r.stderr;
    return {
      ok:
        /^\s*(New|Reused), TLSv[\d.]+, Cipher is (?!\(NONE\))/m.test(text) ||
        (/Cipher is [A-Z]/.test(text) && !/Cipher is \(NONE\)/.test(text)),
      text,
    };
  }

  describe("TLS", () => {
    describe("the coaps+tcp listener of dps-service offers TLS 1.2+ with AEAD suites only", () => {
      let demo: SoakDemo;
      const row = emptyRow("TLS: server probes");
      before(async () => {
        rows.push(row);
        demo = await startSoakDemo();
        await demoReady(demo);
      });
      after(async () => demo?.remove());
      const pki = () => join(demo.userDir, "plgd-dps-demo-pki");

      it("a TLS 1.2 AEAD handshake succeeds (the probe works)", async () => {
        row.inputs++;
        const r = await handshakes(
          demo.ports.dps,
          ["-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256"],
          pki(),
        );
        assert.ok(r.ok, r.text.slice(-1500));
      });

      it("TLS 1.1 and 1.0 are refused", async () => {
        for (const v of ["-tls1_1", "-tls1"]) {
          row.inputs++;
          // SECLEVEL=0 so that the refusal is the server's, not this openssl's own policy.
          const r = await handshakes(demo.ports.dps, [v, "-cipher", "ALL:@SECLEVEL=0"], pki());
          assert.ok(!r.ok, `${v} handshake completed:\n${r.text.slice(-800)}`);
          assert.doesNotMatch(
            r.text,
            /no protocols available/,
            "the client itself refused to try; the probe proves nothing",
          );
        }
      });

      it("CBC and other non-AEAD suites are refused under TLS 1.2", async () => {
        const accepted: string[] = [];
        for (const suite of [
          "ECDHE-ECDSA-AES128-SHA",
          "ECDHE-ECDSA-AES256-SHA384",
          "ECDHE-RSA-AES128-SHA256",
          "AES128-SHA",
          "AES256-SHA256",
          "ECDHE-ECDSA-AES128-SHA256",
        ]) {
          row.inputs++;
          const r = await handshakes(demo.ports.dps, ["-tls1_2", "-cipher", `${suite}:@SECLEVEL=0`], pki());
          if (r.ok) {
            row.leaks++;
            accepted.push(suite);
          }
        }
        assert.deepEqual(accepted, [], "non-AEAD suites the listener accepted");
      });
    });

    describe("the package's TLS clients verify by default and say what failed", () => {
      let certs: BadServerCerts;
      const row = emptyRow("TLS: client verification");
      const servers: Array<{ close: () => void }> = [];
      before(() => {
        rows.push(row);
        certs = makeBadServerCerts();
      });
      after(() => {
        for (const s of servers) s.close();
      });

      async function httpsServing(pair: ServerPair): Promise<number> {
        const srv = createHttpsServer({ cert: pair.cert, key: pair.key }, (_req, res) => res.end("{}"));
        await new Promise<void>((resolve) => srv.listen(0, "127.0.0.1", () => resolve()));
        servers.push(srv);
        return (srv.address() as AddressInfo).port;
      }
      async function tlsServing(pair: ServerPair): Promise<number> {
        const srv: TlsServer = createTlsServer(
          { cert: pair.cert, key: pair.key, ALPNProtocols: ["coap"] },
          (s) => s.end(),
        );
        await new Promise<void>((resolve) => srv.listen(0, "127.0.0.1", () => resolve()));
        servers.push(srv);
        return (srv.address() as AddressInfo).port;
      }

      const cases: Array<{ what: string; pick: (c: BadServerCerts) => ServerPair; says: RegExp }> = [
        {
          what: "unknown CA",
          pick: (c) => c.unknownCa,
          says: /unable to verify|self[- ]signed|unknown ca|local issuer|not signed by a CA/i,
        },
        {
          what: "wrong host name",
          pick: (c) => c.wrongHost,
          says: /altnames|host ?name|does not match|IP: 127\.0\.0\.1/i,
        },
        { what: "expired", pick: (c) => c.expired, says: /expired/i },
      ];

      for (const c of cases) {
        it(`ThingsBoard over HTTPS refuses a server certificate: ${c.what}`, async () => {
          row.inputs++;
          const port = await httpsServing(c.pick(certs));
          const uri = new URL(`https://127.0.0.1:${port}/api/v1/provision`);
          await assert.rejects(
            exchangeFor(uri)(uri, "{}", { timeoutMs: 5000, tls: { ca: certs.trusted.caCert } }),
            (err: Error) => {
              assert.match(err.message, c.says, `the error says what failed: ${err.message}`);
              return true;
            },
          );
        });
        it(`ThingsBoard over MQTTS refuses a server certificate: ${c.what}`, async () => {
          row.inputs++;
          const port = await tlsServing(c.pick(certs));
          const uri = new URL(`mqtts://127.0.0.1:${port}`);
          await assert.rejects(
            exchangeFor(uri)(uri, "{}", { timeoutMs: 5000, tls: { ca: certs.trusted.caCert } }),
            (err: Error) => {
              assert.match(err.message, c.says, `the error says what failed: ${err.message}`);
              return true;
            },
          );
        });
        it(`CoAP over TCP/TLS (the DPS client's transport) refuses a server certificate: ${c.what}`, async () => {
          row.inputs++;
          const port = await tlsServing(c.pick(certs));
          await assert.rejects(
            CoapTcpClient.connect({
              host: "127.0.0.1",
              port,
              tls: { ca: certs.trusted.caCert },
              connectTimeoutMs: 5000,
            }),
            (err: Error) => {
              assert.match(err.message, c.says, `the error says what failed: ${err.message}`);
              return true;
            },
          );
        });
      }

      it("the good certificate is accepted (the cases above fail for their reason only)", async () => {
        const port = await httpsServing(certs.good);
        const uri = new URL(`https://127.0.0.1:${port}/api/v1/provision`);
        const raw = await exchangeFor(uri)(uri, "{}", { timeoutMs: 5000, tls: { ca: certs.trusted.caCert } });
        assert.equal(String(raw), "{}");
      });
    });
  });
});
