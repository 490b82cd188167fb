/**
 * Issue 11, item 4: plgd DPS over coaps+tcp with CSR signing. The demo's dps-service
 * (examples/plgd-dps-local.json: its enrollment group, the demo PKI; rate limit off) in the
 * real node-red;
 * devices from storm client processes, each the package's own DPS run with the demo
 * manufacturer certificate and a new device id (time, owner, cloud, credentials with a
 * fresh key and CSR, ACLs: one connection, one full handshake). The baseline: a bare
 * node:tls in its own process under the same TLS policy and client-certificate check,
 * doing handshakes only, under the same clients. Then what a device costs the server
 * goes to: the bare handshake's CPU, and one CSR parsed and signed by the package's CA
 * code (measured here), as shares of the server's CPU per device; and the signing rate
 * against `openssl speed ecdsap256`.
 *
 *   BENCH_DPS_DEVICES (quick 500, full 5000)  BENCH_DPS_CONCURRENCY (quick 20, full 100)
 */
import { execFileSync } from "node:child_process";
import { readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { createKeyAndCsr, parseCsr } from "../../lib/pki/csr";
import { ensureDemoPki } from "../../lib/pki/demo-pki";
import { CertificateAuthority } from "../../lib/pki/signer";
import { freeTcpPort } from "../support/ports";
import { measure, printRow, rateOf, size, startBare, startNodeRed, StormClients, tmp } from "./harness";

/** CPU ms per CSR parsed and signed, as dps-service does it (lib/dialects/plgd-dps/server.ts). */
function signingCostMs(caCert: string, caKey: string, n = 300): number {
  const ca = CertificateAuthority.fromPem(caCert, caKey);
  const csr = createKeyAndCsr("uuid:6e0c2a4d-1b7f-4c3e-9a58-0d2f4b6c8e10").csr;
  const t0 = process.cpuUsage();
  for (let i = 0; i < n; i++)
    ca.signIdentity(parseCsr(csr), {
      commonName: "uuid:6e0c2a4d-1b7f-4c3e-9a58-0d2f4b6c8e10",
      validityMs: 86400_000,
    });
  const c = process.cpuUsage(t0);
  return (c.user + c.system) / 1000 / n;
}

/** Signatures per second of `openssl speed ecdsap256` on one core, or NaN when it cannot run. */
function opensslSignRate(): number {
  try {
    const out = execFileSync("openssl", ["speed", "-seconds", "1", "ecdsap256"], {
      encoding: "utf8",
      stdio: ["ignore", "pipe", "ignore"],
    });
    const m = /256 bits ecdsa \(nistp256\)\s+[\d.]+s\s+[\d.]+s\s+([\d.]+)/.exec(out);
    return m ? Number(m[1]) : NaN;
  } catch {
    return NaN;
  }
}

export async function run(): Promise<void> {
  const n = size("DPS_DEVICES", 500, 5000);
  const c = size("DPS_CONCURRENCY", 20, 100);
  const userDir = tmp("bench-dps-");
  const pki = ensureDemoPki(join(userDir, "plgd-dps-demo-pki"));
  const port = await freeTcpPort();
  const flows = [
    { id: "bench-tab", type: "tab", label: "bench" },
    {
      id: "bench-tls-server",
      type: "tls-config",
      name: "DPS server",
      cert: pki.dpsServerCert,
      key: pki.dpsServerKey,
      ca: "",
      certname: "",
      keyname: "",
      caname: "",
      servername: "",
      verifyservercert: true,
      alpnprotocol: "",
    },
    {
      id: "bench-group",
      type: "dps-enrollment-group",
      name: "bench devices",
      groupId: "6aa1a3a4-7c41-4c5e-9d8e-2b1f3c4d5e6f",
      owner: "bench-user",
      attestationChain: "",
      attestationChainFile: pki.manufacturerCaCert,
      expiredCertificateEnabled: false,
      hubId: "0c3a1f4e-9b7d-4e2a-8f61-5d2c7b9e1a30",
      gateways: "coaps+tcp://127.0.0.1:5684",
      hubCaPool: "",
      hubCaPoolFile: pki.hubCaCert,
      authorizationProvider: "plgd",
      tokenMode: "random",
      caCertificate: "",
      caCertificateFile: pki.hubCaCert,
      caKeyFile: pki.hubCaKey,
      validity: "365d",
    },
    {
      id: "bench-dps",
      type: "dps-service",
      z: "bench-tab",
      name: "plgd DPS service",
      host: "127.0.0.1",
      port,
      tls: "bench-tls-server",
      group: "bench-group",
      rateLimit: 0,
      rateBurst: 100,
      x: 160,
      y: 120,
      wires: [[]],
    },
  ];
  const nr = await startNodeRed({ flows, userDir });
  const bare = await startBare("tls", {
    BENCH_TLS_CERT: pki.dpsServerCert,
    BENCH_TLS_KEY: pki.dpsServerKey,
    BENCH_TLS_CA: pki.manufacturerCaCert,
  });
  const clients = await StormClients.start();
  try {
    const device = {
      host: "127.0.0.1",
      prefix: "x",
      tlsCert: readFileSync(pki.deviceCert, "utf8"),
      tlsKey: readFileSync(pki.deviceKey, "utf8"),
      tlsCa: readFileSync(pki.dpsCaCert, "utf8"),
    };
    const toBare = { ...device, kind: "handshake" as const, port: bare.port };
    const toNr = { ...device, kind: "dps" as const, port };
    await clients.run(toBare, 0, 100, c);
    await clients.run(toNr, 0, 100, c);
    const o = { count: n, concurrency: c };
    const base = await measure(`bare node:tls, mutual TLS handshake, at ${c}`, bare, clients, toBare, o);
    const row = await measure(`dps-service, coaps+tcp with CSR signing, at ${c}`, nr, clients, toNr, o);
    printRow(base);
    printRow(row, base);
    const signMs = signingCostMs(readFileSync(pki.hubCaCert, "utf8"), readFileSync(pki.hubCaKey, "utf8"));
    const openssl = opensslSignRate();
    process.stdout.write(
      `server CPU per device ${row.cpuMsPer.toFixed(2)} ms: the bare handshake ${base.cpuMsPer.toFixed(2)} ms ` +
        `(${((100 * base.cpuMsPer) / row.cpuMsPer).toFixed(0)}%), one CSR parsed and signed ${signMs.toFixed(2)} ms ` +
        `(${((100 * signMs) / row.cpuMsPer).toFixed(0)}%), the rest ` +
        `${(100 - (100 * (base.cpuMsPer + signMs)) / row.cpuMsPer).toFixed(0)}%\n` +
        `signing: ${(1000 / signMs).toFixed(0)} CSRs/s on one core against openssl speed ecdsap256 ` +
        `${openssl.toFixed(0)} signs/s (x${(1000 / signMs / openssl).toFixed(2)}); ` +
        `devices ${rateOf(row).toFixed(0)}/s (x${(rateOf(row) / openssl).toFixed(4)} of openssl's sign rate)\n`,
    );
  } finally {
    await clients.close();
    await bare.stop();
    await nr.stop();
    rmSync(userDir, { recursive: true, force: true });
  }
}
