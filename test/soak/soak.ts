/**
 * The soak: the demo flows in the real node-red program, idle, then a device provisioning
 * now and then over every protocol the demo serves, then idle again. While idle after
 * start-up nothing may happen: no certificate issued, no store write, no warning, no new
 * log line, no status or debug message. CPU, resident memory and heap after a forced GC
 * are sampled; the heap after load returns to its idle level.
 */
import { setTimeout as delay } from "node:timers/promises";
import {
  fileTimes,
  readStore,
  writesBetween,
  type ProcStats,
  type SoakDemo,
  type Stats,
} from "../support/soak-demo";
import { dpsTime, httpCall, mainfluxDevice, tbHttp, tbMqtt } from "../support/soak-devices";
import { emptyRow, type SummaryRow } from "../support/soak-summary";
import { DEMO_SECRETS } from "../support/soak-demo";

export interface Sample {
  phase: "start" | "idle" | "load" | "after";
  atS: number;
  cpuPercent: number;
  rssMb: number;
  heapMb: number;
  eldMaxMs: number;
  /** Of that delay, the longest the process was busy itself (see soak-demo.ts). */
  blockedMs: number;
}

export interface SoakReport {
  row: SummaryRow;
  samples: Sample[];
  /** Idle after start-up: what happened that should not have. */
  idle: { writes: string[]; logLines: string[]; comms: string[]; warnings: string[]; certificates: number };
  /** Idle after the load. */
  after: { writes: string[]; logLines: string[]; warnings: string[] };
  lost: string[];
  duplicates: string[];
  issuedTokens: string[];
  heapIdleMb: number;
  heapAfterMb: number;
}

const WARNING = /\[warn\]|Warning|TimeoutOverflow/;

/** Waits until the demo's own devices have provisioned at deploy (statuses in the editor). */
export async function demoReady(demo: SoakDemo): Promise<void> {
  await demo.comms.waitForStatus("tb-gateway", /^(provisioned|reused)$/, 60000);
  await demo.comms.waitForStatus("mf-ex-device", /^(bootstrapped|reused stored configuration)$/, 60000);
  await demo.comms.waitForStatus("dps-ex-client", /^provisioned/, 60000);
  // The serving nodes count those provisionings in their status a moment later (a
  // debounced update): start-up is over once the editor has heard nothing for a second.
  const quietMs = 1000;
  const until = Date.now() + 15000;
  let seen = productMessages(demo.comms.all()).length;
  while (Date.now() < until) {
    await delay(quietMs);
    const now = productMessages(demo.comms.all()).length;
    if (now === seen) return;
    seen = now;
  }
  throw new Error("the demo's statuses did not settle within 15 s of start-up");
}

/** What nodes sent the editor (status, debug), without Node-RED's own websocket heartbeat. */
function productMessages(all: Array<{ topic: string }>): Array<{ topic: string }> {
  return all.filter((m) => m.topic !== "hb");
}

const mb = (n: number) => Math.round((n / 1048576) * 10) / 10;

/**
 * Runs `minutes` of soak on a started demo: a quarter idle, half with a provisioning every
 * `everyMs`, a quarter idle again.
 */
export async function runSoak(demo: SoakDemo, minutes: number, everyMs = 1500): Promise<SoakReport> {
  const row = emptyRow("soak");
  const samples: Sample[] = [];
  const t0 = Date.now();
  const total = minutes * 60000;
  const idleMs = Math.max(20000, total / 4);
  const loadMs = Math.max(20000, total / 2);
  let lastProc: ProcStats = demo.proc();
  let lastAt = Date.now();
  const sample = async (phase: Sample["phase"], gc = true): Promise<Stats> => {
    const s = await demo.stats({ gc, reset: true });
    const p = demo.proc();
    const now = Date.now();
    samples.push({
      phase,
      atS: Math.round((now - t0) / 1000),
      cpuPercent: Math.round(((p.cpuMs - lastProc.cpuMs) / Math.max(1, now - lastAt)) * 1000) / 10,
      rssMb: mb(p.rssBytes),
      heapMb: mb(s.heapUsed),
      eldMaxMs: Math.round(s.eldMaxMs),
      blockedMs: Math.round(s.blockedMaxMs),
    });
    lastProc = p;
    lastAt = now;
    return s;
  };
  /** Samples every 10 s until `ms` have passed (bounded by count too). */
  const watch = async (phase: Sample["phase"], ms: number, work?: () => Promise<void>) => {
    const end = Date.now() + ms;
    let nextSample = Date.now() + 10000;
    for (let i = 0; i < 100000 && Date.now() < end; i++) {
      if (work) await work();
      else await delay(Math.min(1000, Math.max(0, end - Date.now())));
      if (Date.now() >= nextSample) {
        await sample(phase, phase !== "load");
        nextSample += 10000;
      }
      if (!demo.alive()) throw new Error(`node-red exited during the soak:\n${demo.output().slice(-4000)}`);
    }
  };

  // ---- idle after start-up
  await demoReady(demo);
  const base = await sample("start");
  const files0 = fileTimes(demo.userDir);
  const out0 = demo.output().length;
  const comms0 = demo.comms.all().length;
  // (heartbeats are Node-RED's own, every 15 s)
  await watch("idle", idleMs);
  const idleOut = demo.output().slice(out0);
  const idleComms = demo.comms
    .all()
    .slice(comms0)
    .filter((m) => m.topic !== "hb");
  const idle = {
    writes: writesBetween(files0, fileTimes(demo.userDir)),
    logLines: idleOut.split("\n").filter(Boolean),
    comms: idleComms.map((m) => `${m.topic} ${JSON.stringify(m.data).slice(0, 120)}`),
    warnings: idleOut.split("\n").filter((l) => WARNING.test(l)),
    certificates: idleComms.filter((m) => m.topic === "status/dps-ex-client").length,
  };
  const heapIdle = (await demo.stats({ gc: true })).heapUsed;

  // ---- load: a device now and then, over every protocol
  const issuedTokens: string[] = [];
  const lost: string[] = [];
  const tokens = new Map<string, string>();
  let n = 0;
  const one = async () => {
    const i = ++n;
    const name = `soak-device-${i}`;
    const started = Date.now();
    try {
      switch (i % 5) {
        case 0: {
          const a = await tbMqtt(demo.ports.mqtt, name);
          if (a.status !== "SUCCESS") throw new Error(`MQTT ${JSON.stringify(a)}`);
          issuedTokens.push(String(a.credentialsValue));
          const prev = tokens.get(String(a.credentialsValue));
          if (prev) row.duplicates++;
          tokens.set(String(a.credentialsValue), name);
          break;
        }
        case 1: {
          const a = await tbHttp(demo.ports.http, name);
          if (a.answer?.status !== "SUCCESS") throw new Error(`HTTP ${a.http} ${a.body.slice(0, 100)}`);
          issuedTokens.push(String(a.answer.credentialsValue));
          if (tokens.has(String(a.answer.credentialsValue))) row.duplicates++;
          tokens.set(String(a.answer.credentialsValue), name);
          break;
        }
        case 2: {
          const a = await mainfluxDevice(demo.url);
          if (a.status !== 200) throw new Error(`bootstrap ${a.status}`);
          break;
        }
        case 3:
          // A device outside Node-RED (libcoap) on the DPS, and now and then the demo's own
          // dps-client asked to provision / show its result (its inject node, admin API).
          if (!(await dpsTime(demo.userDir, demo.ports.dps))) throw new Error("DPS time failed");
          if (i % 10 === 3) {
            const r = await fetch(`${demo.url}/inject/dps-ex-start`, { method: "POST" });
            if (r.status !== 200) throw new Error(`inject dps-ex-start answered ${r.status}`);
          }
          break;
        default: {
          const a = await httpCall(
            demo.ports.http,
            `/things/bootstrap/${DEMO_SECRETS.BOOTSTRAP_EXTERNAL_ID}`,
            {
              method: "GET",
              headers: { authorization: `Thing ${DEMO_SECRETS.BOOTSTRAP_EXTERNAL_KEY}` },
            },
          );
          if (a.status !== 200) throw new Error(`plain bootstrap ${a.status}`);
        }
      }
    } catch (err) {
      row.lost++;
      lost.push(`${name}: ${(err as Error).message}`);
    }
    row.inputs++;
    await delay(Math.max(0, everyMs - (Date.now() - started)));
  };
  await watch("load", loadMs, one);

  // ---- idle again: the load is over, memory returns to its level
  const files1 = fileTimes(demo.userDir);
  const out1 = demo.output().length;
  await watch("after", Math.max(20000, total - (Date.now() - t0)));
  const afterOut = demo.output().slice(out1);
  const heapAfter = (await demo.stats({ gc: true })).heapUsed;
  if (heapAfter > heapIdle * 1.2 + 8 * 1048576) row.leaks++;
  if (idle.writes.length || idle.certificates || idle.warnings.length) row.leaks++;
  // The first sample covers start-up (loading nodes, the first TLS keys, JIT), not the soak.
  row.stalls = samples.slice(1).filter((s) => s.blockedMs > 100).length;
  // The registry holds every device that got SUCCESS with what it got.
  const stored = JSON.stringify(readStore(demo.userDir).map((e) => e.record));
  for (const [token, name] of tokens)
    if (!stored.includes(token)) lost.push(`${name}: its token is not in the registry`);
  row.notes =
    `heap idle ${mb(heapIdle)} MB -> after load ${mb(heapAfter)} MB (start ${mb(base.heapUsed)}); ` +
    `idle: ${idle.writes.length} store writes, ${idle.certificates} certificate statuses, ${idle.warnings.length} warnings, ${idle.logLines.length} log lines`;
  return {
    row,
    samples,
    idle,
    after: {
      writes: writesBetween(files1, fileTimes(demo.userDir)),
      logLines: afterOut.split("\n").filter(Boolean),
      warnings: afterOut.split("\n").filter((l) => WARNING.test(l)),
    },
    lost,
    duplicates: [...tokens.keys()].filter((_, i, a) => a.indexOf(a[i]) !== i),
    issuedTokens,
    heapIdleMb: mb(heapIdle),
    heapAfterMb: mb(heapAfter),
  };
}

export function formatSamples(samples: Sample[]): string {
  const lines = ["phase  t(s)  cpu%   rss MB  heap MB  eld max ms  busy ms"];
  for (const s of samples)
    lines.push(
      `${s.phase.padEnd(6)} ${String(s.atS).padStart(4)} ${String(s.cpuPercent).padStart(5)} ${String(s.rssMb).padStart(8)} ${String(s.heapMb).padStart(8)} ${String(s.eldMaxMs).padStart(11)} ${String(s.blockedMs).padStart(8)}`,
    );
  return lines.join("\n");
}
