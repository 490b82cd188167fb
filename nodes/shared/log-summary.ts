/**
 * Repeated refusals summarised in the log instead of one line each: a peer that sends a
 * thousand bad requests a second must not write a thousand log lines (nor anything it
 * sent: only fixed reason words and counts reach the log). The first refusal after a
 * quiet interval is logged at once, so an operator sees trouble start; the rest are
 * counted and logged as one line per interval, with counts per reason.
 */

export interface SummaryLine {
  /** The reason of the first refusal (logged at once), or undefined for a summary. */
  first?: string;
  /** Counts per reason since the last line (summary only). */
  counts?: Record<string, number>;
  total?: number;
  seconds: number;
}

export class LogSummary {
  private counts = new Map<string, number>();
  private timer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(
    private readonly write: (line: SummaryLine) => void,
    private readonly intervalMs = 60_000,
  ) {}

  /** Counts one refusal; `reason` must be a fixed word, never request content. */
  count(reason: string): void {
    if (this.closed) return;
    if (!this.timer) {
      this.write({ first: reason, seconds: this.intervalMs / 1000 });
      this.arm();
      return;
    }
    this.counts.set(reason, (this.counts.get(reason) ?? 0) + 1);
  }

  private arm(): void {
    this.timer = setTimeout(() => this.tick(), this.intervalMs);
    this.timer.unref?.();
  }

  private tick(): void {
    this.timer = undefined;
    if (this.counts.size === 0) return;
    this.flush();
    // Refusals went on: keep summarising instead of logging the next one at once.
    this.arm();
  }

  private flush(): void {
    if (this.counts.size === 0) return;
    const counts = Object.fromEntries(this.counts);
    const total = [...this.counts.values()].reduce((a, b) => a + b, 0);
    this.counts = new Map();
    this.write({ counts, total, seconds: this.intervalMs / 1000 });
  }

  /** Stops the timer and writes what is still counted (for a node's close). */
  close(): void {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.flush();
  }
}

/** "throttled 12, too-large 3": the counts of a summary, largest first. */
export function formatCounts(counts: Record<string, number>): string {
  return Object.entries(counts)
    .sort((a, b) => b[1] - a[1])
    .map(([k, n]) => `${k} ${n}`)
    .join(", ");
}
