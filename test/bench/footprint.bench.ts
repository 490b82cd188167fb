/**
 * Issue 11, item 6: footprint. The real node-red running the device-side example
 * (examples/thingsboard-real-server-device.json, with this package linked) against a bare
 * node-red (no package, no flows), started alternately BENCH_FOOTPRINT_STARTS times each
 * after one start that is not counted:
 * resident memory and heap after a forced GC once the flows have started, and the time
 * from fork to "Started flows" (medians). Then what an install brings: the package's own
 * files (`npm pack --dry-run`) and its production dependencies (`npm ls --omit=dev`),
 * their size on disk and their count.
 *
 *   BENCH_FOOTPRINT_STARTS (quick 3, full 7)
 */
import { execFileSync } from "node:child_process";
import { lstatSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { PROJECT_ROOT } from "../support/node-red";
import { size, startNodeRed } from "./harness";

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const mib = (b: number) => (b / 1048576).toFixed(1);

/** Bytes of the regular files under `dir`, its own node_modules left out (listed on their own). */
function duBytes(dir: string, top = true): number {
  let total = 0;
  for (const name of readdirSync(dir)) {
    if (top && name === "node_modules") continue;
    const p = join(dir, name);
    const st = lstatSync(p);
    if (st.isDirectory()) total += name === "node_modules" ? 0 : duBytes(p, false);
    else if (st.isFile()) total += st.size;
  }
  return total;
}

function npm(args: string[]): string {
  return execFileSync("npm", args, {
    cwd: PROJECT_ROOT,
    encoding: "utf8",
    stdio: ["ignore", "pipe", "ignore"],
  });
}

export async function run(): Promise<void> {
  const starts = size("FOOTPRINT_STARTS", 3, 7);
  const example = JSON.parse(
    readFileSync(join(PROJECT_ROOT, "examples", "thingsboard-real-server-device.json"), "utf8"),
  ) as unknown[];
  const m = {
    bare: { rss: [] as number[], heap: [] as number[], start: [] as number[] },
    pkg: { rss: [] as number[], heap: [] as number[], start: [] as number[] },
  };
  // One start not counted: the first reads every module from disk into the page cache.
  await (await startNodeRed({ flows: [{ id: "dev-tab", type: "tab" }, ...example] })).stop();
  for (let i = 0; i < starts; i++) {
    for (const which of ["bare", "pkg"] as const) {
      const nr = await startNodeRed(
        which === "bare"
          ? { flows: [], withPackage: false }
          : { flows: [{ id: "dev-tab", type: "tab" }, ...example] },
      );
      try {
        const s = await nr.stats(true);
        m[which].rss.push(s.rss);
        m[which].heap.push(s.heapUsed);
        m[which].start.push(nr.startMs);
      } finally {
        await nr.stop();
      }
    }
  }
  const line = (label: string, w: typeof m.bare) =>
    `${label.padEnd(46)} rss ${mib(median(w.rss))} MiB  heap ${mib(median(w.heap))} MiB  start ${median(w.start).toFixed(0)} ms`;
  process.stdout.write(line("bare node-red, no flows (baseline)", m.bare) + "\n");
  process.stdout.write(
    line("node-red + package, device-side example", m.pkg) +
      `  | +${mib(median(m.pkg.rss) - median(m.bare.rss))} MiB rss, +${mib(median(m.pkg.heap) - median(m.bare.heap))} MiB heap, ` +
      `+${(median(m.pkg.start) - median(m.bare.start)).toFixed(0)} ms start (medians of ${starts})\n`,
  );

  const pack = JSON.parse(npm(["pack", "--dry-run", "--json", "--ignore-scripts"]))[0] as {
    unpackedSize: number;
    entryCount: number;
  };
  const deps = [
    ...new Set(
      npm(["ls", "--omit=dev", "--all", "--parseable"])
        .split("\n")
        .map((l) => l.trim())
        .filter((l) => l && l !== PROJECT_ROOT),
    ),
  ];
  const depBytes = deps.reduce((a, d) => a + duBytes(d), 0);
  process.stdout.write(
    `${"installed: the package's files".padEnd(46)} ${mib(pack.unpackedSize)} MiB in ${pack.entryCount} files\n` +
      `${"installed: production dependencies".padEnd(46)} ${mib(depBytes)} MiB in ${deps.length} packages ` +
      `(total ${mib(pack.unpackedSize + depBytes)} MiB)\n`,
  );
}
