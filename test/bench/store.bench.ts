import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import type { StoreBackend } from "../../lib/stores/backend";
import { FileBackend } from "../../lib/stores/file";
import { atomicWrite } from "../../lib/stores/fs-util";
import { JournalBackend } from "../../lib/stores/journal";
import { Records } from "../../lib/service/records";
import { size } from "./harness";
import { printFigures, timed, type Figures } from "./report";

/**
 * The file store's cost per write and read against the floor it cannot beat: a bare atomic
 * write (temp, fsync, rename, directory fsync) of the same bytes, measured in this run.
 * Then the journal store (lib/stores/journal.ts) against the file store: new keys written
 * by many writers at once as a provisioning storm does (BENCH_STORE_WRITES new keys,
 * BENCH_STORE_CONCURRENCY writers), with CPU per write and fdatasyncs per write; and at
 * scale (BENCH_STORE_KEYS keys, 100,000 with --full): open time, the longest turn of the
 * event loop while opening, memory held per key, and the cost of a new key there against
 * at 1,000 keys.
 */
const N = 300;

async function measure(label: string, fn: (i: number) => Promise<unknown>): Promise<Figures> {
  const latenciesMs: number[] = [];
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < N; i++) latenciesMs.push((await timed(() => fn(i)))[1]);
  return { label, count: N, seconds: Number(process.hrtime.bigint() - t0) / 1e9, latenciesMs };
}

export async function run(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "bench-store-"));
  try {
    const value = {
      type: "X509_CERTIFICATE",
      certificate: "-----BEGIN CERTIFICATE-----\n" + "A".repeat(2000),
    };
    const bytes = JSON.stringify(value);
    const base = await measure("bare atomic write, 2 KB (baseline)", (i) =>
      atomicWrite(join(dir, `bare-${i % 20}`), bytes),
    );
    printFigures(base);
    const plain = new FileBackend({ directory: join(dir, "plain") });
    await plain.open();
    const fileSet = await measure("file store set, 20 keys", (i) => plain.set(`device-${i % 20}`, value));
    printFigures(fileSet, base);
    const fileGet = await measure("file store get", (i) => plain.get(`device-${i % 20}`));
    printFigures(fileGet, base);
    const enc = new FileBackend({ directory: join(dir, "enc"), passphrase: "bench passphrase" });
    await enc.open();
    printFigures(await measure("encrypted file store set", (i) => enc.set(`device-${i % 20}`, value)), base);
    printFigures(await measure("encrypted file store get", (i) => enc.get(`device-${i % 20}`)), base);
    for (let i = 0; i < 2000; i++) await plain.set(`many-${i}`, { token: "x" });
    printFigures(
      await measure("file store set with 2,000 keys present", (i) => plain.set(`device-${i % 20}`, value)),
      base,
    );
    await plain.close();
    await enc.close();
    await journalFigures(dir, value, fileSet, fileGet);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const WRITES = size("STORE_WRITES", 2000, 20000);
const CONCURRENCY = size("STORE_CONCURRENCY", 100, 100);
const SCALE_KEYS = size("STORE_KEYS", 20000, 100000);

interface StormFigures extends Figures {
  cpuUsPerWrite: number;
}

/** `n` new keys from `concurrency` writers at once; wall time, latencies, CPU of this process. */
async function storm(
  label: string,
  b: StoreBackend,
  n: number,
  concurrency: number,
  keyOf: (i: number) => string,
  value: (i: number) => Record<string, string | number>,
): Promise<StormFigures> {
  const latenciesMs: number[] = [];
  let next = 0;
  const cpu0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < n) {
        const i = next++;
        latenciesMs.push((await timed(() => b.set(keyOf(i), value(i), { kind: "ACCESS_TOKEN" })))[1]);
      }
    }),
  );
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const cpu = process.cpuUsage(cpu0);
  return { label, count: n, seconds, latenciesMs, cpuUsPerWrite: (cpu.user + cpu.system) / n };
}

function printStorm(f: StormFigures, baseline?: StormFigures, extra = "", unit = "a write"): void {
  printFigures(f, baseline);
  const ratio = baseline ? `  x${(f.cpuUsPerWrite / baseline.cpuUsPerWrite).toFixed(2)} of its CPU` : "";
  process.stdout.write(`${"".padEnd(44)}   CPU ${f.cpuUsPerWrite.toFixed(0)} us ${unit}${ratio}${extra}\n`);
}

async function journalFigures(
  dir: string,
  sample: Record<string, string>,
  fileSet: Figures,
  fileGet: Figures,
): Promise<void> {
  const device = (i: number) => ({ ...sample, n: i });
  const key = (p: string) => (i: number) => `thingsboard/devices/default/${p}-${i}`;
  const file = new FileBackend({ directory: join(dir, "storm-file") });
  await file.open();
  const base = await storm(
    `file store, ${WRITES} new keys at concurrency ${CONCURRENCY}`,
    file,
    WRITES,
    CONCURRENCY,
    key("f"),
    device,
  );
  printStorm(base);
  await file.close();
  const journal = new JournalBackend({ directory: join(dir, "storm-journal") });
  await journal.open();
  const j = await storm(`journal store, the same`, journal, WRITES, CONCURRENCY, key("j"), device);
  const { syncs, records } = journal.counters;
  printStorm(j, base, `, ${(syncs / records).toFixed(3)} fdatasyncs a write`);
  const seq = await measure("journal store set, one writer, 20 keys", (i) =>
    journal.set(`device-${i % 20}`, sample),
  );
  printFigures(seq, fileSet);
  printFigures(await measure("journal store get", (i) => journal.get(`device-${i % 20}`)), fileGet);
  await journal.close();

  // What a provisioning costs the registry: a record and its unique credential index entry
  // (lib/service/records.ts claim: create unless present and the index entry in one updateMany), by 100 requests at once, over either store.
  const registry = async (label: string, b: StoreBackend): Promise<StormFigures> => {
    const records = new Records<{ name: string; token: string }>(b, {
      dialect: "thingsboard",
      indexes: { token: (d) => [d.token] },
    });
    await records.open();
    let next = 0;
    const latenciesMs: number[] = [];
    const cpu0 = process.cpuUsage();
    const t0 = process.hrtime.bigint();
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async () => {
        while (next < WRITES) {
          const i = next++;
          const rec = { name: `device-${i}`, token: `token-${i}-${"t".repeat(20)}` };
          const addr = { group: "default", id: rec.name };
          // As a serving dialect registers a device: claim its credential, then create it.
          const register = () =>
            records.claim("token", [rec.token], addr, (cur) =>
              cur ? { result: false } : { next: rec, result: true },
            );
          latenciesMs.push((await timed(register))[1]);
        }
      }),
    );
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    const cpu = process.cpuUsage(cpu0);
    return { label, count: WRITES, seconds, latenciesMs, cpuUsPerWrite: (cpu.user + cpu.system) / WRITES };
  };
  const fileRegistry = new FileBackend({ directory: join(dir, "registry-file") });
  const fr = await registry(`records over the file store, ${WRITES} devices`, fileRegistry);
  printStorm(fr, undefined, "", "a device");
  await fileRegistry.close();
  const journalRegistry = new JournalBackend({ directory: join(dir, "registry-journal") });
  const jr = await registry(`records over the journal store, the same`, journalRegistry);
  const c = journalRegistry.counters;
  printStorm(
    jr,
    fr,
    `, ${(c.records / WRITES).toFixed(1)} store writes and ${(c.syncs / WRITES).toFixed(3)} fdatasyncs a device`,
    "a device",
  );
  await journalRegistry.close();

  // At scale: small registry records, as provision-response keeps them.
  setFlagsFromString("--expose-gc");
  const gc = runInNewContext("gc") as () => void;
  const held = () => {
    gc();
    gc();
    const m = process.memoryUsage();
    return m.heapUsed + m.arrayBuffers;
  };
  const small = (i: number) => ({
    credentialsType: "ACCESS_TOKEN",
    credentialsValue: `token-${i}`,
    profile: "default",
  });
  const scaleDir = join(dir, "scale-journal");
  const big = new JournalBackend({ directory: scaleDir });
  await big.open();
  const at1k = await storm(
    "journal: 1,000 new keys into an empty store",
    big,
    1000,
    CONCURRENCY,
    key("a"),
    small,
  );
  printStorm(at1k);
  await storm("fill", big, SCALE_KEYS - 2000, 500, key("b"), small);
  const atScale = await storm(
    `journal: 1,000 new keys at ${SCALE_KEYS - 1000}`,
    big,
    1000,
    CONCURRENCY,
    key("c"),
    small,
  );
  printStorm(atScale, at1k);
  await big.close();
  const before = held();
  const again = new JournalBackend({ directory: scaleDir });
  /** The longest gap between turns of the event loop while `fn` runs. */
  const longestTurn = async (fn: () => Promise<unknown>): Promise<number> => {
    let longest = 0;
    let last = performance.now();
    const ticker = setInterval(() => {
      const now = performance.now();
      longest = Math.max(longest, now - last);
      last = now;
    }, 1);
    await fn();
    clearInterval(ticker);
    return Math.max(longest, performance.now() - last);
  };
  const t0 = performance.now();
  const longest = await longestTurn(() => again.open());
  const openMs = performance.now() - t0;
  // The floor on this machine: the same wait with nothing to do.
  const idle = await longestTurn(() => new Promise((r) => setTimeout(r, openMs)));
  const grown = held() - before;
  const st = again.stats();
  process.stdout.write(
    `journal: open with ${st.keys} keys (log ${(st.logBytes / 1048576).toFixed(1)} MiB)`.padEnd(44) +
      `  ${openMs.toFixed(0)} ms, longest event-loop turn ${longest.toFixed(1)} ms (idle: ${idle.toFixed(1)} ms), ` +
      `held ${(grown / 1048576).toFixed(1)} MiB (${(grown / st.keys).toFixed(0)} bytes a key, index ${(st.indexBytes / 1048576).toFixed(1)} MiB)\n`,
  );
  const [all, listMs] = await timed(() => again.list("thingsboard/devices/"));
  const [none, noneMs] = await timed(() => again.list("mainflux/"));
  process.stdout.write(
    `journal: list(prefix) over ${st.keys} keys`.padEnd(44) +
      `  ${all.length} listed in ${listMs.toFixed(0)} ms; ${none.length} listed in ${noneMs.toFixed(0)} ms (the whole log is read either way)\n`,
  );
  await again.close();
}
