import { retryDelayMs, type RetryPolicy } from "./policy";
import { setLongTimeout } from "../util/long-timer";
import { isFinal } from "../model/errors";

// Whether an error ends the retries is the error's own `final` flag (lib/model/errors.ts):
// one vocabulary for every protocol.
export { isFinal };

/** Longest wait a server's Retry-After may impose on one retry: 1 hour. */
export const MAX_RETRY_AFTER_MS = 3_600_000;

/** The wait a transient error says its server asked for (HTTP Retry-After), in ms. */
export function retryAfterOf(err: unknown): number | undefined {
  const v =
    typeof err === "object" && err !== null ? (err as { retryAfterMs?: unknown }).retryAfterMs : undefined;
  return typeof v === "number" && Number.isFinite(v) && v >= 0 ? v : undefined;
}

/**
 * Retry-After (RFC 9110 section 10.2.3): delay-seconds or an HTTP-date. Milliseconds from
 * now, or undefined when absent or unreadable.
 */
export function parseRetryAfter(
  value: string | string[] | undefined,
  now: number = Date.now(),
): number | undefined {
  const v = (Array.isArray(value) ? value[0] : value)?.trim();
  if (!v) return undefined;
  if (/^\d+$/.test(v)) return Number(v) * 1000;
  const at = Date.parse(v);
  return Number.isFinite(at) ? Math.max(0, at - now) : undefined;
}

/**
 * The wait before the next attempt: the policy's, or, when the server said how long to
 * wait, at least that (capped at MAX_RETRY_AFTER_MS), spread by the policy's jitter so that
 * the devices throttled together do not all come back in the same instant.
 */
export function nextDelayMs(
  policy: RetryPolicy,
  attempt: number,
  error: unknown,
  random: () => number = Math.random,
): number | undefined {
  const planned = retryDelayMs(policy, attempt, random);
  const asked = retryAfterOf(error);
  if (planned === undefined || asked === undefined) return planned;
  const base = Math.min(asked, MAX_RETRY_AFTER_MS);
  return Math.round(base + random() * base * policy.jitter);
}

export interface RetryHooks {
  /** Told before each wait, so a node can show "retrying in N s". */
  onRetry?: (info: { attempt: number; delayMs: number; error: unknown }) => void;
  /** Overrides isFinal() for one caller (e.g. "retry on FAILURE" chosen by the user). */
  shouldRetry?: (error: unknown) => boolean;
  signal?: AbortSignal;
  random?: () => number;
}

/**
 * This side stopped waiting (close, redeploy). An internal signal, not a failure to
 * report: the node ends the message with done() and no error, so it never reaches a
 * Catch node and needs no code of the shared vocabulary.
 */
export class AbortedError extends Error {
  constructor() {
    super("stopped");
    this.name = "AbortedError";
  }
}

/** Waits ms, or rejects with AbortedError as soon as the signal fires. */
export function abortableDelay(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(new AbortedError());
    // Retry intervals come from a dialog or a server's Retry-After: any length is possible,
    // and setTimeout fires at once past 2^31-1 ms.
    const timer = setLongTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      timer.cancel();
      reject(new AbortedError());
    };
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/**
 * Runs `attempt` until it resolves, a final error is thrown, the policy runs out of
 * attempts, or the signal aborts. The last error is rethrown as it was.
 */
export async function runWithRetry<T>(
  policy: RetryPolicy,
  attempt: (n: number) => Promise<T>,
  hooks: RetryHooks = {},
): Promise<T> {
  for (let n = 1; ; n++) {
    if (hooks.signal?.aborted) throw new AbortedError();
    try {
      return await attempt(n);
    } catch (error) {
      if (error instanceof AbortedError) throw error;
      const retry = hooks.shouldRetry ? hooks.shouldRetry(error) : !isFinal(error);
      const delayMs = retry ? nextDelayMs(policy, n, error, hooks.random) : undefined;
      if (delayMs === undefined) throw error;
      hooks.onRetry?.({ attempt: n, delayMs, error });
      await abortableDelay(delayMs, hooks.signal);
    }
  }
}
