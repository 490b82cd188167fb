/**
 * Past one machine: what a provisioning costs when the registry is PostgreSQL, and what
 * three instances behind HAProxy do together. The same MQTT storm (storm client
 * processes, as mqtt.bench.ts) against:
 *   1. one Node-RED with the default journal registry (the baseline of this run);
 *   2. one Node-RED with the registry on a private PostgreSQL (Debian's, loopback);
 *   3. three Node-RED processes on that PostgreSQL, behind HAProxy in TCP mode.
 * Printed per row: rate, latency, Node-RED CPU per provisioning (summed over the
 * instances), PostgreSQL's CPU per provisioning (postmaster and backends, from /proc), and
 * ratios to the baseline.
 *
 *   BENCH_FLEET_DEVICES (quick 2000, full 20000)  BENCH_FLEET_CONCURRENCY (quick 100, full 300)
 */
import { readdirSync, readFileSync } from "node:fs";
import { cpus } from "node:os";
import { performance } from "node:perf_hooks";
import { accepting } from "../support/fleet";
import { balancedConfig, haproxyPresent, runHaproxy } from "../support/haproxy";
import { freeTcpPort } from "../support/ports";
import { postgresBin, startPostgres, type PgServer } from "../support/postgres";
import {
  measure,
  printRow,
  rateOf,
  size,
  startNodeRed,
  StormClients,
  TB_KEY,
  TB_SECRET,
  tbFlow,
  type BenchNodeRed,
  type Row,
} from "./harness";

const TICK_MS = 10; // USER_HZ is 100 on Linux: /proc/<pid>/stat counts 10 ms ticks

/** CPU ms of a process and its direct children (PostgreSQL's backends are the postmaster's). */
function treeCpuMs(pid: number): number {
  let ticks = 0;
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, "utf8");
      const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      // fields after "(comm)": state ppid ... utime (11) stime (12), 0-based from state
      if (Number(name) === pid || Number(f[1]) === pid) ticks += Number(f[11]) + Number(f[12]);
    } catch {
      // exited meanwhile
    }
  }
  return ticks * TICK_MS;
}

function pgStore(pg: PgServer, table: string) {
  return {
    config: {
      backend: "postgres",
      pgHost: pg.host,
      pgPort: String(pg.port),
      pgDatabase: pg.database,
      pgUser: pg.user,
      pgNamespace: table,
      pgPoolSize: "4",
    },
    credentials: { pgPassword: pg.password },
  };
}

export async function run(): Promise<void> {
  if (!postgresBin() || !haproxyPresent()) {
    process.stdout.write(
      "(skipped: needs Debian's postgresql and haproxy; scripts/ensure-peers.sh installs them)\n",
    );
    return;
  }
  const count = size("FLEET_DEVICES", 2000, 20000);
  const concurrency = size("FLEET_CONCURRENCY", 100, 300);
  const clients = await StormClients.start();
  const pg = await startPostgres();
  const started: BenchNodeRed[] = [];
  const device = { kind: "mqtt" as const, key: TB_KEY, secret: TB_SECRET, sourceAddresses: true };
  const pgCpu = () => treeCpuMs(pg.pid() ?? 0);
  try {
    const one = async (label: string, store?: ReturnType<typeof pgStore>) => {
      const mqttPort = await freeTcpPort();
      const { flows, credentials } = tbFlow({ mqttPort, maxSessions: 2 * concurrency + 200, store });
      const nr = await startNodeRed({ flows, credentials, label });
      started.push(nr);
      // "Started flows" comes before the broker listens (after the registry opens).
      await accepting(mqttPort);
      return { nr, mqttPort };
    };
    const o = { count, concurrency };

    // 1. The baseline: one instance, journal registry.
    const base = await one("Node-RED, journal");
    await clients.run({ ...device, host: "127.0.0.1", port: base.mqttPort, prefix: "warm" }, 0, 200, 50);
    const baseRow = await measure(
      `one instance, journal registry, ${count} at ${concurrency}`,
      base.nr,
      clients,
      { ...device, host: "127.0.0.1", port: base.mqttPort, prefix: "j" },
      o,
    );
    printRow(baseRow);
    await base.nr.stop();

    // 2. One instance on PostgreSQL.
    const single = await one("Node-RED, PostgreSQL", pgStore(pg, "bench_one"));
    await clients.run({ ...device, host: "127.0.0.1", port: single.mqttPort, prefix: "warm" }, 0, 200, 50);
    const pg0 = pgCpu();
    const pgRow = await measure(
      `one instance, PostgreSQL registry, ${count} at ${concurrency}`,
      single.nr,
      clients,
      { ...device, host: "127.0.0.1", port: single.mqttPort, prefix: "p" },
      o,
    );
    const pgMsPer = (pgCpu() - pg0) / count;
    printRow(pgRow, baseRow);
    process.stdout.write(`    PostgreSQL: ${pgMsPer.toFixed(3)} ms CPU per provisioning\n`);
    await single.nr.stop();

    // 3. Three instances on one table behind HAProxy.
    const three = await Promise.all([1, 2, 3].map((i) => one(`Node-RED ${i}/3`, pgStore(pg, "bench_fleet"))));
    const front = await freeTcpPort();
    const haproxy = await runHaproxy(
      balancedConfig({
        frontendPort: front,
        serverPorts: three.map((t) => t.mqttPort),
        serverOptions: "check inter 1s",
        maxconn: 4 * concurrency + 1000,
      }),
    );
    try {
      const job = { ...device, host: "127.0.0.1", port: front };
      await clients.run({ ...job, prefix: "warm3" }, 0, 300, 50);
      const before = await Promise.all(three.map((t) => t.nr.stats(false)));
      const pg1 = pgCpu();
      const t0 = performance.now();
      const r = await clients.run({ ...job, prefix: "f" }, 0, count, concurrency);
      const wall = (performance.now() - t0) / 1000;
      const after = await Promise.all(three.map((t) => t.nr.stats(true)));
      const cpuUs = after.reduce((sum, a, i) => sum + a.cpuUs - before[i]!.cpuUs, 0);
      const fleetRow: Row = {
        label: `three instances behind HAProxy, ${count} at ${concurrency}`,
        count,
        seconds: r.seconds,
        latencies: r.latencies,
        errors: r.errors,
        errorSamples: r.errorSamples,
        cpuMsPer: cpuUs / 1000 / count,
        busy: cpuUs / 1e6 / wall / three.length,
        heaps: [],
        rss: NaN,
      };
      printRow(fleetRow, baseRow);
      process.stdout.write(
        `    PostgreSQL: ${((pgCpu() - pg1) / count).toFixed(3)} ms CPU per provisioning; ` +
          `rate x${(rateOf(fleetRow) / rateOf(pgRow)).toFixed(2)} of one instance on PostgreSQL ` +
          `(this machine's ${cpus().length} cores run the clients, HAProxy and PostgreSQL too)\n`,
      );
    } finally {
      await haproxy.stop();
    }
  } finally {
    for (const nr of started) await nr.stop();
    await clients.close();
    await pg.remove();
  }
}
