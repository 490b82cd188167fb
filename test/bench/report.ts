/** Timing helpers shared by the benchmarks: percentiles and one printed line per figure. */

export function percentile(sortedMs: number[], p: number): number {
  if (sortedMs.length === 0) return NaN;
  const i = Math.min(sortedMs.length - 1, Math.max(0, Math.ceil((p / 100) * sortedMs.length) - 1));
  return sortedMs[i];
}

export interface Figures {
  label: string;
  count: number;
  seconds: number;
  latenciesMs?: number[];
  heapBytes?: number;
}

export function rate(f: Figures): number {
  return f.count / f.seconds;
}

export function printFigures(f: Figures, baseline?: Figures): void {
  const parts = [`${f.label.padEnd(44)} ${rate(f).toFixed(0).padStart(7)}/s`];
  if (f.latenciesMs && f.latenciesMs.length > 0) {
    const s = [...f.latenciesMs].sort((a, b) => a - b);
    parts.push(`p50 ${percentile(s, 50).toFixed(2)} ms`, `p99 ${percentile(s, 99).toFixed(2)} ms`);
  }
  if (f.heapBytes !== undefined) parts.push(`heap +${(f.heapBytes / 1048576).toFixed(1)} MiB`);
  if (baseline) parts.push(`x${(rate(f) / rate(baseline)).toFixed(2)} of ${baseline.label}`);
  process.stdout.write(parts.join("  ") + "\n");
}

export async function timed<T>(fn: () => Promise<T>): Promise<[T, number]> {
  const t0 = process.hrtime.bigint();
  const v = await fn();
  return [v, Number(process.hrtime.bigint() - t0) / 1e6];
}
