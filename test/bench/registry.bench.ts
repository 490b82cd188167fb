/**
 * Issue 11, item 5: registry scale. A user directory whose default file registry already
 * holds N ThingsBoard devices (written beforehand by the package's own service code over
 * the same store, exactly as provision-response lays them out), then the real node-red
 * started on it: start-up time (fork to "Started flows"), the first provisioning answered
 * after that (a registry that loads in the way shows here), heap held after a forced GC,
 * and the cost of one new device (one at a time over MQTT: latency and server CPU) at
 * that size against the same at 1,000 devices.
 *
 *   BENCH_REGISTRY_DEVICES (quick 10000, full 100000)  BENCH_REGISTRY_PROBE (new devices measured, 200)
 */
import { rmSync } from "node:fs";
import { performance } from "node:perf_hooks";
import { TbProvisioningService } from "../../lib/dialects/thingsboard/server";
import { createStore } from "../../lib/stores/open";
import { freeTcpPort } from "../support/ports";
import { profile } from "../support/tbserve-fixtures";
import {
  benchStoreBackend,
  measure,
  printRow,
  size,
  startNodeRed,
  StormClients,
  TB_KEY,
  TB_SECRET,
  tbFlow,
  tmp,
  type Row,
} from "./harness";

/** Writes `n` devices into the registry provision-response would open in `userDir`. */
async function fill(userDir: string, n: number): Promise<number> {
  const store = createStore(
    // The backend the flow's registry uses (tbFlow), so Node-RED opens what was written.
    { backend: benchStoreBackend(), directory: "", ownFolder: "bench-store", encrypt: false },
    { userDir, contextStores: undefined },
  );
  await store.open();
  const service = new TbProvisioningService(
    {
      profiles: [
        profile({ name: "bench profile", provisionDeviceKey: TB_KEY, provisionDeviceSecret: TB_SECRET }),
      ],
    },
    { dialect: "thingsboard", store, audit: () => undefined, now: Date.now, refused: () => undefined },
  );
  const t0 = performance.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: 64 }, async () => {
      while (next < n) {
        const name = `held-${next++}`;
        const out = await service.handle(
          JSON.stringify({ deviceName: name, provisionDeviceKey: TB_KEY, provisionDeviceSecret: TB_SECRET }),
          { transport: "mqtt", remote: "127.0.0.1" },
        );
        if (out.response.status !== "SUCCESS")
          throw new Error(`fill: ${name} answered ${out.response.status}`);
      }
    }),
  );
  await store.close();
  return (performance.now() - t0) / 1000;
}

export async function run(): Promise<void> {
  const big = size("REGISTRY_DEVICES", 10000, 100000);
  const probe = size("REGISTRY_PROBE", 200, 200);
  const clients = await StormClients.start(1);
  const rows: Array<{ n: number; startMs: number; firstMs: number; heap: number; row: Row }> = [];
  try {
    for (const n of [1000, big]) {
      const userDir = tmp("bench-registry-");
      try {
        const fillS = await fill(userDir, n);
        process.stdout.write(
          `(${n} devices written beforehand in ${fillS.toFixed(1)} s, ${(n / fillS).toFixed(0)}/s)\n`,
        );
        const mqttPort = await freeTcpPort();
        const { flows, credentials } = tbFlow({ mqttPort });
        const nr = await startNodeRed({ flows, credentials, userDir });
        try {
          const job = {
            kind: "mqtt" as const,
            host: "127.0.0.1",
            port: mqttPort,
            key: TB_KEY,
            secret: TB_SECRET,
          };
          // The service starts after "Started flows" (its registry opens first): a device
          // that finds nobody listening tries again 20 ms later, as a fleet would.
          const t0 = performance.now();
          for (let i = 0; ; i++) {
            const first = await clients.run({ ...job, prefix: `first${i}` }, 0, 1, 1);
            if (!first.errors) break;
            if (performance.now() - t0 > 60000)
              throw new Error(`no first answer: ${first.errorSamples.join("; ")}`);
            await new Promise((resolve) => setTimeout(resolve, 20));
          }
          const firstMs = performance.now() - t0;
          const heap = (await nr.stats(true)).heapUsed;
          await clients.run({ ...job, prefix: "warm" }, 0, 50, 1);
          const row = await measure(
            `one new device at a time, ${n} held`,
            nr,
            clients,
            { ...job, prefix: "new" },
            {
              count: probe,
              concurrency: 1,
            },
          );
          rows.push({ n, startMs: nr.startMs, firstMs, heap, row });
        } finally {
          await nr.stop();
        }
      } finally {
        rmSync(userDir, { recursive: true, force: true });
      }
    }
  } finally {
    await clients.close();
  }
  const [small, large] = rows;
  for (const r of rows) {
    process.stdout.write(
      `${`registry of ${r.n} devices`.padEnd(46)} start ${r.startMs.toFixed(0)} ms, first answer ${r.firstMs.toFixed(0)} ms after, ` +
        `heap after GC ${(r.heap / 1048576).toFixed(1)} MiB` +
        (r === large
          ? `  | x${(r.startMs / small.startMs).toFixed(2)} start, +${((r.heap - small.heap) / 1048576).toFixed(1)} MiB held`
          : "") +
        "\n",
    );
  }
  printRow(small.row);
  printRow(large.row, small.row);
}
