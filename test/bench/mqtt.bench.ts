/**
 * Issue 11, item 1: the MQTT provisioning storm. Each device connects as `provision`,
 * subscribes, requests, gets its answer and disconnects; the devices come from storm
 * client processes (BENCH_CLIENTS), `concurrency` at a time. The server under test is
 * provision-response in the real node-red program (default file registry, rate limit
 * off); the baseline a bare aedes in its own process answering each request with a fixed
 * SUCCESS, under the same clients, row by row. Then the same over TLS (ECDSA P-256 server
 * certificate) against a bare aedes over TLS.
 *
 *   BENCH_DEVICES=1000,20000 BENCH_CONCURRENCY=100,1000  sizes (quick: 1000 at 100 and 1000)
 *   BENCH_GC_EVERY=10000      a forced GC and a heap reading every so many provisionings
 *   BENCH_WARMUP=2000         devices provisioned on each server before the rows (not counted)
 *   BENCH_TLS=0 | 1           plain MQTT only | TLS only (default both)
 *   BENCH_TARGET=mqtt://host:port  storm that server instead (no baseline, no server figures),
 *                             with its profile's BENCH_KEY and BENCH_SECRET (new device names
 *                             storm-<time>-<i>: a profile that allows creating devices)
 *   BENCH_PROFILE=<dir>       one more Node-RED row under a CPU profile: top 15 self-time
 */
import { rmSync } from "node:fs";
import { join } from "node:path";
import { freeTcpPort } from "../support/ports";
import { makeTestPki } from "../support/pki";
import {
  measure,
  printRow,
  size,
  sizes,
  startBare,
  startNodeRed,
  StormClients,
  TB_KEY,
  TB_SECRET,
  tbFlow,
  topSelfTime,
  type Row,
} from "./harness";

export async function run(): Promise<void> {
  const devices = sizes("DEVICES", [1000], [1000, 20000]);
  const concurrencies = sizes("CONCURRENCY", [100, 1000], [100, 1000]);
  const gcEvery = size("GC_EVERY", 10000, 10000);
  // Both servers warm up alike before any row: the rows compare steady states, not JIT warm-up.
  const warmUp = size("WARMUP", 2000, 2000);
  const clients = await StormClients.start();
  const device = { kind: "mqtt" as const, key: TB_KEY, secret: TB_SECRET, sourceAddresses: true };
  try {
    const target = process.env.BENCH_TARGET;
    if (target) {
      const u = new URL(target);
      const job = {
        ...device,
        host: u.hostname,
        port: Number(u.port || 1883),
        sourceAddresses: false,
        key: process.env.BENCH_KEY ?? TB_KEY,
        secret: process.env.BENCH_SECRET ?? TB_SECRET,
      };
      if (u.protocol === "mqtts:")
        process.stdout.write("(BENCH_TARGET over TLS is not supported: plain MQTT only)\n");
      for (const n of devices)
        for (const c of concurrencies)
          printRow(
            await measure(
              `${target}, ${n} devices at ${c}`,
              undefined,
              clients,
              { ...job, prefix: `storm-${Date.now()}` },
              {
                count: n,
                concurrency: c,
              },
            ),
          );
      return;
    }
    const pki = makeTestPki("Bench");
    try {
      const tlsModes =
        process.env.BENCH_TLS === "0" ? [false] : process.env.BENCH_TLS === "1" ? [true] : [false, true];
      for (const tls of tlsModes) {
        const kind = tls ? "MQTT over TLS" : "MQTT";
        const bare = await startBare(tls ? "mqtts" : "mqtt", {
          BENCH_TLS_CERT: pki.serverCertPath,
          BENCH_TLS_KEY: pki.serverKeyPath,
        });
        const mqttPort = await freeTcpPort();
        const { flows, credentials } = tbFlow({
          mqttPort,
          tls: tls ? { cert: pki.serverCertPath, key: pki.serverKeyPath } : undefined,
          maxSessions: 2 * Math.max(...concurrencies, 500),
        });
        const nr = await startNodeRed({ flows, credentials });
        const tlsCa = tls ? pki.caCert : undefined;
        const toBare = { ...device, host: "127.0.0.1", port: bare.port, tlsCa };
        const toNr = { ...device, host: "127.0.0.1", port: mqttPort, tlsCa };
        try {
          // Warm-up, not counted: the JIT and the registry's first writes.
          await clients.run({ ...toBare, prefix: "warm" }, 0, warmUp, 50);
          await clients.run({ ...toNr, prefix: "warm" }, 0, warmUp, 50);
          let round = 0;
          for (const n of devices)
            for (const c of concurrencies) {
              const o = { count: n, concurrency: c, gcEvery };
              // Each round its own device names: a size given twice must not meet its own devices.
              const tag = `${n}-${c}-${round++}`;
              const base = await measure(
                `bare aedes, ${kind}, ${n} devices at ${c}`,
                bare,
                clients,
                { ...toBare, prefix: `b${tag}` },
                o,
              );
              const row: Row = await measure(
                `provision-response, ${kind}, ${n} at ${c}`,
                nr,
                clients,
                { ...toNr, prefix: `d${tag}` },
                o,
              );
              printRow(base);
              printRow(row, base);
            }
          const profileDir = process.env.BENCH_PROFILE;
          if (profileDir && !tls) {
            const n = devices[devices.length - 1];
            const c = concurrencies[0];
            const file = join(profileDir, `node-red-mqtt-storm-${Date.now()}.cpuprofile`);
            await nr.profile("start");
            const row = await measure(
              `(profiled) provision-response, ${kind}, ${n} at ${c}`,
              nr,
              clients,
              { ...toNr, prefix: `p${n}-${c}` },
              { count: n, concurrency: c },
            );
            await nr.profile("stop", file);
            printRow(row);
            process.stdout.write(`CPU profile of Node-RED under the storm: ${file}\ntop 15 self time:\n`);
            for (const l of topSelfTime(file)) process.stdout.write(`  ${l}\n`);
            // The baseline under the same storm: what both pay (aedes, sockets) and what only
            // the package does shows in the difference of the two.
            const bareFile = join(profileDir, `bare-aedes-mqtt-storm-${Date.now()}.cpuprofile`);
            await bare.profile("start");
            printRow(
              await measure(
                `(profiled) bare aedes, ${kind}, ${n} at ${c}`,
                bare,
                clients,
                { ...toBare, prefix: `pb${n}-${c}` },
                { count: n, concurrency: c },
              ),
            );
            await bare.profile("stop", bareFile);
            process.stdout.write(
              `CPU profile of bare aedes under the storm: ${bareFile}\ntop 15 self time:\n`,
            );
            for (const l of topSelfTime(bareFile)) process.stdout.write(`  ${l}\n`);
          }
        } finally {
          await bare.stop();
          await nr.stop();
        }
      }
    } finally {
      rmSync(pki.dir, { recursive: true, force: true });
    }
  } finally {
    await clients.close();
  }
}
