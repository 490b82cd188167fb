/**
 * Issue 11, item 2: ThingsBoard provisioning over HTTP (POST /api/v1/provision on
 * Node-RED's own port, keep-alive connections, BENCH_HTTP_CONCURRENCY at a time) against
 * a bare node:http with a fixed answer; and over CoAP on UDP against a bare node-coap with
 * a fixed answer: requests per second and the heap after a forced GC (node-coap's default
 * response cache once grew the heap to 1.6 GB under a million requests).
 *
 *   BENCH_HTTP_REQUESTS (quick 2000, full 20000)  BENCH_HTTP_CONCURRENCY (100)
 *   BENCH_COAP_REQUESTS (quick 3000, full 1000000)  BENCH_COAP_CONCURRENCY (100)
 *   BENCH_COAP_GC_EVERY (full 100000)
 */
import { join } from "node:path";
import { freeUdpPort } from "../support/ports";
import {
  measure,
  printRow,
  size,
  startBare,
  startNodeRed,
  StormClients,
  TB_KEY,
  TB_SECRET,
  tbFlow,
  topSelfTime,
} from "./harness";

export async function run(): Promise<void> {
  const httpN = size("HTTP_REQUESTS", 2000, 20000);
  const httpC = size("HTTP_CONCURRENCY", 100, 100);
  const coapN = size("COAP_REQUESTS", 3000, 1000000);
  const coapC = size("COAP_CONCURRENCY", 100, 100);
  const coapEvery = size("COAP_GC_EVERY", coapN, 100000);
  const coapPort = await freeUdpPort();
  const { flows, credentials } = tbFlow({ http: true, coapPort });
  const nr = await startNodeRed({ flows, credentials });
  const clients = await StormClients.start();
  const device = { key: TB_KEY, secret: TB_SECRET, host: "127.0.0.1" };
  try {
    const bareHttp = await startBare("http");
    try {
      const toBare = { ...device, kind: "http" as const, port: bareHttp.port };
      const toNr = { ...device, kind: "http" as const, port: nr.port };
      await clients.run({ ...toBare, prefix: "warm" }, 0, 200, 20);
      await clients.run({ ...toNr, prefix: "warm" }, 0, 200, 20);
      const o = { count: httpN, concurrency: httpC };
      const base = await measure(
        `bare node:http, keep-alive, at ${httpC}`,
        bareHttp,
        clients,
        { ...toBare, prefix: "bh" },
        o,
      );
      // With BENCH_PROFILE, Node-RED's row runs under a CPU profile (its top list printed).
      const profileDir = process.env.BENCH_PROFILE;
      if (profileDir) await nr.profile("start");
      const row = await measure(
        `provision-response, HTTP keep-alive, at ${httpC}`,
        nr,
        clients,
        { ...toNr, prefix: "h" },
        o,
      );
      printRow(base);
      printRow(row, base);
      if (profileDir) {
        const file = join(profileDir, `node-red-http-${Date.now()}.cpuprofile`);
        await nr.profile("stop", file);
        process.stdout.write(`CPU profile of Node-RED under HTTP: ${file}\ntop 15 self time:\n`);
        for (const l of topSelfTime(file)) process.stdout.write(`  ${l}\n`);
      }
    } finally {
      await bareHttp.stop();
    }
    const barePort = await freeUdpPort();
    const bareCoap = await startBare("coap", { BENCH_PORT: String(barePort) });
    try {
      const toBare = { ...device, kind: "coap" as const, port: barePort };
      const toNr = { ...device, kind: "coap" as const, port: coapPort };
      await clients.run({ ...toBare, prefix: "warm-c" }, 0, 200, 20);
      await clients.run({ ...toNr, prefix: "warm-c" }, 0, 200, 20);
      const o = { count: coapN, concurrency: coapC, gcEvery: coapEvery };
      const base = await measure(
        `bare node-coap, ${coapN} requests at ${coapC}`,
        bareCoap,
        clients,
        { ...toBare, prefix: "bc" },
        o,
      );
      const row = await measure(
        `provision-response, CoAP, ${coapN} at ${coapC}`,
        nr,
        clients,
        { ...toNr, prefix: "c" },
        o,
      );
      printRow(base);
      printRow(row, base);
    } finally {
      await bareCoap.stop();
    }
  } finally {
    await clients.close();
    await nr.stop();
  }
}
