import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { FileBackend } from "../../lib/stores/file";
import { atomicWrite } from "../../lib/stores/fs-util";
import { printFigures, timed, type Figures } from "./report";

/**
 * The file store's cost per write and read against the floor it cannot beat: a bare atomic
 * write (temp, fsync, rename, directory fsync) of the same bytes, measured in this run.
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
    printFigures(await measure("file store set, 20 keys", (i) => plain.set(`device-${i % 20}`, value)), base);
    printFigures(await measure("file store get", (i) => plain.get(`device-${i % 20}`)), base);
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
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
