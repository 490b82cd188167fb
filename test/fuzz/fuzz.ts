/**
 * Sends generated malformed inputs from this process (never the node-red process) to
 * every serving transport of the demo, in batches. After each batch: node-red is alive,
 * no unhandled error was printed, its event loop never stalled longer than STALL_MS (500 ms) (its own
 * monitorEventLoopDelay, see soak-demo.ts), and a well-formed request from another
 * loopback address succeeds. After a transport: its heap after a forced GC is back near
 * where it started. A batch that broke something is written to test/fuzz/corpus/ and
 * replayed first on every later run.
 */
import { once } from "node:events";
import { createSocket } from "node:dgram";
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { connect as netConnect, type Socket } from "node:net";
import { join } from "node:path";
import { connect as tlsConnect } from "node:tls";
import { FrameParser } from "../../lib/transports/coap-tcp/frame";
import { PROJECT_ROOT } from "../support/node-red";
import { DEMO_SECRETS, type SoakDemo } from "../support/soak-demo";
import { httpCall, tbHttp, tbMqtt } from "../support/soak-devices";
import { emptyRow, type SummaryRow } from "../support/soak-summary";
import {
  bootstrapInput,
  coapTcpCsm,
  coapTcpGetTime,
  coapTcpInput,
  coapUdpInput,
  coapUdpProvision,
  mqttInput,
  mulberry32,
  tbHttpInput,
} from "./generators";

export type Transport = "mqtt" | "http-tb" | "http-bootstrap" | "coap-udp" | "coap-tcp-tls";
export const TRANSPORTS: Transport[] = ["mqtt", "http-tb", "http-bootstrap", "coap-udp", "coap-tcp-tls"];

/** Where fuzz inputs come from; honest checks come from 127.0.0.2. */
const FUZZ_ADDRESS = "127.0.0.3";
const HONEST_ADDRESS = "127.0.0.2";
/**
 * A stall is the loop busy with one piece of its own work (CPU used, not time waited for
 * the scheduler) for longer than this. Input that stalls a loop (a pathological regular
 * expression, a deep parse) takes seconds; a TLS handshake plus a garbage collection under
 * a loaded 2-core machine measured up to 142 ms, so the bar sits well above that.
 */
export const STALL_MS = 500;
const CORPUS = join(PROJECT_ROOT, "test", "fuzz", "corpus");

/** One unit sent on its own connection (or datagram); `count` inputs it holds. */
interface Unit {
  chunks: Buffer[];
  count: number;
}

function generate(t: Transport, seed: number, i: number): Unit {
  const r = mulberry32(seed * 1_000_003 + i);
  switch (t) {
    case "mqtt": {
      const m = mqttInput(r, i);
      return { chunks: [m.raw], count: m.packets };
    }
    case "http-tb":
      return { chunks: [tbHttpInput(r, i).raw], count: 1 };
    case "http-bootstrap":
      return { chunks: [bootstrapInput(r, i).raw], count: 1 };
    case "coap-udp":
      return { chunks: [coapUdpInput(r, i)], count: 1 };
    case "coap-tcp-tls": {
      const c = coapTcpInput(r, i);
      return { chunks: c.frames, count: c.frames.length };
    }
  }
}

/** Waits for the peer to close, or gives up after `ms` (a silent server is not a finding here). */
function closedOrAfter(sock: Socket, ms: number): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      sock.destroy();
      resolve();
    }, ms);
    sock.once("close", () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

async function sendStream(demo: SoakDemo, t: Transport, unit: Unit): Promise<void> {
  if (t === "coap-tcp-tls") {
    const pki = join(demo.userDir, "plgd-dps-demo-pki");
    const sock = tlsConnect({
      socket: netConnect({ host: "127.0.0.1", port: demo.ports.dps, localAddress: FUZZ_ADDRESS }),
      cert: readFileSync(join(pki, "device-manufacturer.pem")),
      key: readFileSync(join(pki, "device-manufacturer.key")),
      ca: readFileSync(join(pki, "dps-ca.pem")),
      servername: "localhost",
      rejectUnauthorized: false,
    });
    sock.on("error", () => undefined);
    sock.once("secureConnect", () => {
      sock.write(coapTcpCsm());
      for (const f of unit.chunks) sock.write(f);
      sock.end();
    });
    await closedOrAfter(sock, 3000);
    return;
  }
  const port = t === "mqtt" ? demo.ports.mqtt : demo.ports.http;
  const sock = netConnect({ host: "127.0.0.1", port, localAddress: FUZZ_ADDRESS });
  sock.on("error", () => undefined);
  sock.on("data", () => undefined);
  sock.once("connect", () => {
    for (const c of unit.chunks) sock.write(c);
    sock.end();
  });
  await closedOrAfter(sock, 3000);
}

async function sendBatch(demo: SoakDemo, t: Transport, units: Unit[], concurrency: number): Promise<void> {
  if (t === "coap-udp") {
    const sock = createSocket("udp4");
    await new Promise<void>((resolve) => sock.bind(0, FUZZ_ADDRESS, () => resolve()));
    sock.on("message", () => undefined);
    for (const u of units) {
      await new Promise<void>((resolve) =>
        sock.send(u.chunks[0], demo.ports.coap, "127.0.0.1", () => resolve()),
      );
    }
    sock.close();
    return;
  }
  let next = 0;
  const worker = async () => {
    while (next < units.length) await sendStream(demo, t, units[next++]);
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, units.length) }, worker));
}

let honestCounter = 0;

/** A well-formed request on the transport, from the honest address: true when it succeeded. */
export async function honest(demo: SoakDemo, t: Transport): Promise<string | undefined> {
  const name = `honest-${t}-${process.pid}-${++honestCounter}-${Date.now()}`;
  try {
    switch (t) {
      case "mqtt": {
        const a = await tbMqtt(demo.ports.mqtt, name, { localAddress: HONEST_ADDRESS });
        return a.status === "SUCCESS" ? undefined : `MQTT answered ${JSON.stringify(a)}`;
      }
      case "http-tb": {
        const a = await tbHttp(demo.ports.http, name, { localAddress: HONEST_ADDRESS });
        return a.answer?.status === "SUCCESS" ? undefined : `HTTP ${a.http}: ${a.body.slice(0, 200)}`;
      }
      case "http-bootstrap": {
        const a = await httpCall(demo.ports.http, `/things/bootstrap/${DEMO_SECRETS.BOOTSTRAP_EXTERNAL_ID}`, {
          method: "GET",
          headers: { authorization: `Thing ${DEMO_SECRETS.BOOTSTRAP_EXTERNAL_KEY}` },
          localAddress: HONEST_ADDRESS,
        });
        return a.status === 200 ? undefined : `bootstrap answered ${a.status}: ${a.body.slice(0, 200)}`;
      }
      case "coap-udp":
        return await honestCoapUdp(demo, name);
      case "coap-tcp-tls":
        return await honestCoapTcp(demo);
    }
  } catch (err) {
    return `${t}: ${(err as Error).message}`;
  }
}

async function honestCoapUdp(demo: SoakDemo, name: string): Promise<string | undefined> {
  const sock = createSocket("udp4");
  await new Promise<void>((resolve) => sock.bind(0, HONEST_ADDRESS, () => resolve()));
  const token = Buffer.from([0xa5, 0x5a, honestCounter & 0xff, 0x01]);
  const body = JSON.stringify({
    deviceName: name,
    provisionDeviceKey: DEMO_SECRETS.PROVISION_DEVICE_KEY,
    provisionDeviceSecret: DEMO_SECRETS.PROVISION_DEVICE_SECRET,
  });
  try {
    const answer = new Promise<Buffer>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error("no CoAP answer within 10 s")), 10000);
      sock.on("message", (m) => {
        const tkl = m[0] & 0x0f;
        if (m.length >= 4 + tkl && m.subarray(4, 4 + tkl).equals(token) && m[1] !== 0) {
          clearTimeout(timer);
          resolve(m);
        }
      });
    });
    sock.send(coapUdpProvision(body, 0x7000 + (honestCounter & 0xfff), token), demo.ports.coap, "127.0.0.1");
    const m = await answer;
    const marker = m.indexOf(0xff, 4 + (m[0] & 0x0f));
    const payload = marker >= 0 ? m.subarray(marker + 1).toString() : "";
    return /"SUCCESS"/.test(payload) ? undefined : `CoAP answered code ${m[1]}: ${payload.slice(0, 200)}`;
  } finally {
    sock.close();
  }
}

async function honestCoapTcp(demo: SoakDemo): Promise<string | undefined> {
  const pki = join(demo.userDir, "plgd-dps-demo-pki");
  const sock = tlsConnect({
    socket: netConnect({ host: "127.0.0.1", port: demo.ports.dps, localAddress: HONEST_ADDRESS }),
    cert: readFileSync(join(pki, "device-manufacturer.pem")),
    key: readFileSync(join(pki, "device-manufacturer.key")),
    ca: readFileSync(join(pki, "dps-ca.pem")),
    servername: "localhost",
  });
  sock.on("error", () => undefined);
  try {
    await Promise.race([
      once(sock, "secureConnect"),
      once(sock, "close").then(() => {
        throw new Error("closed during the handshake");
      }),
    ]);
    const parser = new FrameParser(1 << 20);
    const token = Buffer.from([0x42, 0x42]);
    const got = new Promise<number>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error("no answer to GET /x.plgd.dev/time within 10 s")),
        10000,
      );
      sock.on("data", (c: Buffer) => {
        for (const m of parser.push(c).messages)
          if (m.token.equals(token)) {
            clearTimeout(timer);
            resolve(m.code);
          }
      });
      sock.once("close", () => reject(new Error("closed before answering")));
    });
    sock.write(coapTcpCsm());
    sock.write(coapTcpGetTime(token));
    const code = await got;
    return code === 0x45 ? undefined : `DPS answered code ${code >> 5}.${String(code & 31).padStart(2, "0")}`;
  } finally {
    sock.destroy();
  }
}

function saveCase(t: Transport, seed: number, from: number, units: Unit[], reason: string): string {
  const dir = join(CORPUS, t);
  mkdirSync(dir, { recursive: true });
  // Not .json: the corpus is data, kept byte for byte, never reformatted by Prettier.
  const file = join(dir, `seed${seed}-from${from}.fuzzcase`);
  if (existsSync(file)) return file;
  writeFileSync(
    file,
    JSON.stringify(
      {
        transport: t,
        seed,
        from,
        reason: reason.replace(/\d{4}-\d\d-\d\dT[\d:.]+Z/g, ""),
        units: units.map((u) => ({ count: u.count, chunks: u.chunks.map((c) => c.toString("base64")) })),
      },
      null,
      1,
    ) + "\n",
  );
  return file;
}

function corpusCases(t: Transport): Array<{ name: string; units: Unit[] }> {
  const dir = join(CORPUS, t);
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((f) => f.endsWith(".fuzzcase"))
    .sort()
    .map((f) => {
      const c = JSON.parse(readFileSync(join(dir, f), "utf8")) as {
        units: Array<{ count: number; chunks: string[] }>;
      };
      return {
        name: f,
        units: c.units.map((u) => ({
          count: u.count,
          chunks: u.chunks.map((s) => Buffer.from(s, "base64")),
        })),
      };
    });
}

export interface FuzzResult {
  row: SummaryRow;
  /** Every broken expectation, one line each (batch, what broke). */
  failures: string[];
  /** Corpus files written in this run. */
  saved: string[];
  heapBefore: number;
  heapAfter: number;
  maxStallMs: number;
}

/**
 * Fuzzes one transport with `count` generated inputs (plus the corpus), `batch` units at a
 * time; stops early only when node-red is gone or after `deadline` (ms since epoch).
 */
export async function fuzzTransport(
  demo: SoakDemo,
  t: Transport,
  opts: { count: number; seed?: number; batch?: number; concurrency?: number; deadline?: number },
): Promise<FuzzResult> {
  const seed = opts.seed ?? 8;
  const batchSize = opts.batch ?? 100;
  const row = emptyRow(`fuzz ${t}`);
  const failures: string[] = [];
  const saved: string[] = [];
  let maxStallMs = 0;
  let maxDelayMs = 0;
  const heapBefore = (await demo.stats({ gc: true })).heapUsed;
  const output0 = demo.output().length;

  const check = async (label: string, units: Unit[], from: number, isCorpus: boolean) => {
    const problems: string[] = [];
    if (!demo.alive()) problems.push(`node-red exited (${demo.child.exitCode ?? demo.child.signalCode})`);
    else {
      const s = await demo.stats({ reset: true });
      maxStallMs = Math.max(maxStallMs, s.blockedMaxMs);
      maxDelayMs = Math.max(maxDelayMs, s.eldMaxMs);
      if (s.blockedMaxMs > STALL_MS) {
        row.stalls++;
        problems.push(
          `event loop blocked ${s.blockedMaxMs.toFixed(0)} ms (delay ${s.eldMaxMs.toFixed(0)} ms)`,
        );
      }
      const bad = await honest(demo, t);
      if (bad) {
        row.lost++;
        problems.push(`well-formed request after the batch failed: ${bad}`);
      }
    }
    const fresh = demo.output().slice(output0);
    const at = fresh.search(/Unhandled|uncaught exception|UnhandledPromiseRejection/i);
    if (at >= 0 && !failures.some((f) => f.includes("unhandled"))) {
      problems.push("node-red printed an unhandled error");
      // What node-red printed, so that a failure in CI can be read without a rerun.
      process.stdout.write(
        `\n--- node-red output at the unhandled error:\n${fresh.slice(Math.max(0, at - 1500), at + 2500)}\n---\n`,
      );
    }
    if (!demo.alive())
      process.stdout.write(`\n--- the last node-red output:\n${demo.output().slice(-3000)}\n---\n`);
    if (problems.length) {
      failures.push(`${t} ${label}: ${problems.join("; ")}`);
      if (!isCorpus) saved.push(saveCase(t, seed, from, units, problems.join("; ")));
    }
  };

  for (const c of corpusCases(t)) {
    if (!demo.alive()) break;
    await demo.stats({ reset: true });
    await sendBatch(demo, t, c.units, opts.concurrency ?? 8);
    row.inputs += c.units.reduce((s, u) => s + u.count, 0);
    await check(`corpus case ${c.name}`, c.units, 0, true);
  }
  for (let from = 0; row.inputs < opts.count; from += batchSize) {
    if (!demo.alive() || (opts.deadline && Date.now() > opts.deadline)) break;
    const units = Array.from({ length: batchSize }, (_, k) => generate(t, seed, from + k));
    await demo.stats({ reset: true });
    await sendBatch(demo, t, units, opts.concurrency ?? 8);
    row.inputs += units.reduce((s, u) => s + u.count, 0);
    await check(`batch from ${from} (seed ${seed})`, units, from, false);
  }
  let heapAfter = heapBefore;
  if (demo.alive()) {
    heapAfter = (await demo.stats({ gc: true })).heapUsed;
    // Back to its level: what a batch held must be released once it is over.
    if (heapAfter > heapBefore * 1.25 + 16 * 1024 * 1024) {
      row.leaks++;
      failures.push(`${t}: heap after GC ${mb(heapAfter)} MB, was ${mb(heapBefore)} MB before the inputs`);
    }
  }
  row.notes = `event loop busy at most ${maxStallMs.toFixed(0)} ms (longest delay ${maxDelayMs.toFixed(0)} ms); heap ${mb(heapBefore)} -> ${mb(heapAfter)} MB`;
  return { row, failures, saved, heapBefore, heapAfter, maxStallMs };
}

export const mb = (n: number) => (n / 1048576).toFixed(1);
