/**
 * The retry policy shared by every client node. Defaults follow plgd's client: each
 * interval is waited as interval * (1 - jitter) + random * interval * jitter, so with
 * jitter 0.5 the wait is t/2 + random[0, t/2), and the list loops.
 */

export interface RetryPolicy {
  /** Seconds; 1 to 8 values, each > 0. */
  intervals: number[];
  /** 0 (none) to 1 (anywhere in [0, t)). */
  jitter: number;
  /** Attempts in all, the first included; -1 for forever. */
  maxAttempts: number;
}

export const DEFAULT_RETRY_POLICY: Readonly<RetryPolicy> = Object.freeze({
  intervals: [10, 20, 40, 80, 120],
  jitter: 0.5,
  maxAttempts: -1,
});

/** Returns a validated copy, or throws an Error that names the offending field. */
export function validateRetryPolicy(input: Partial<RetryPolicy> | undefined): RetryPolicy {
  const p: RetryPolicy = {
    intervals: input?.intervals ?? [...DEFAULT_RETRY_POLICY.intervals],
    jitter: input?.jitter ?? DEFAULT_RETRY_POLICY.jitter,
    maxAttempts: input?.maxAttempts ?? DEFAULT_RETRY_POLICY.maxAttempts,
  };
  if (!Array.isArray(p.intervals) || p.intervals.length < 1 || p.intervals.length > 8) {
    throw new Error("retry intervals: give 1 to 8 values");
  }
  for (const s of p.intervals) {
    if (typeof s !== "number" || !Number.isFinite(s) || s <= 0) {
      throw new Error("retry intervals: every value must be a number of seconds above 0");
    }
  }
  if (typeof p.jitter !== "number" || !(p.jitter >= 0 && p.jitter <= 1)) {
    throw new Error("retry jitter: must be between 0 and 1");
  }
  if (!Number.isInteger(p.maxAttempts) || (p.maxAttempts < 1 && p.maxAttempts !== -1)) {
    throw new Error("retry max attempts: a whole number from 1, or -1 for forever");
  }
  return p;
}

/** Parses "10, 20, 40" as typed in a dialog. */
export function parseIntervals(text: string): number[] {
  return text
    .split(/[\s,;]+/)
    .filter((s) => s.length > 0)
    .map(Number);
}

/**
 * Milliseconds to wait after failed attempt number `attempt` (1-based), or undefined
 * when the policy allows no further attempt.
 */
export function retryDelayMs(
  policy: RetryPolicy,
  attempt: number,
  random: () => number = Math.random,
): number | undefined {
  if (policy.maxAttempts !== -1 && attempt >= policy.maxAttempts) return undefined;
  const t = policy.intervals[(attempt - 1) % policy.intervals.length] * 1000;
  return Math.round(t * (1 - policy.jitter) + random() * t * policy.jitter);
}
