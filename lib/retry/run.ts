import { retryDelayMs, type RetryPolicy } from "./policy";

/** An error that must not be retried (a FAILURE answer, a 403, a bad configuration). */
export class FinalError extends Error {
  readonly final = true;
}

export function isFinal(err: unknown): boolean {
  return typeof err === "object" && err !== null && (err as { final?: unknown }).final === true;
}

export interface RetryHooks {
  /** Told before each wait, so a node can show "retrying in N s". */
  onRetry?: (info: { attempt: number; delayMs: number; error: unknown }) => void;
  /** Overrides isFinal() for one caller (e.g. "retry on FAILURE" chosen by the user). */
  shouldRetry?: (error: unknown) => boolean;
  signal?: AbortSignal;
  random?: () => number;
}

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
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
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
      const delayMs = retry ? retryDelayMs(policy, n, hooks.random) : undefined;
      if (delayMs === undefined) throw error;
      hooks.onRetry?.({ attempt: n, delayMs, error });
      await abortableDelay(delayMs, hooks.signal);
    }
  }
}
