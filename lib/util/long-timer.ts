/**
 * Waits of any length (a certificate's or token's lifetime: days, a year). Node's
 * setTimeout takes at most 2^31-1 ms (24.8 days); a longer delay is replaced by 1 ms with
 * a TimeoutOverflowWarning (https://nodejs.org/api/timers.html#settimeoutcallback-delay-args),
 * so a renewal "in 243 days" would fire at once, again and again. Here the wait is a chain
 * of steps below that bound, each one re-measured against the clock, so a clock that
 * jumps (suspend, NTP) shortens or lengthens the rest as it should.
 */

/** The longest delay Node's timers honour. */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/** What a long wait needs of a clock; tests inject one whose time they control. */
export interface TimerClock {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export const systemTimerClock: TimerClock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (h) => clearTimeout(h as ReturnType<typeof setTimeout>),
};

export interface LongTimeoutOptions {
  clock?: TimerClock;
  /** Let the process exit while only this wait is pending (Node's timeout.unref()). */
  unref?: boolean;
  /** The longest single step; default and upper bound MAX_TIMER_MS. For tests. */
  maxStepMs?: number;
}

export interface LongTimer {
  /** Clock time (ms) at which the callback runs. */
  readonly dueAt: number;
  /** True until it has fired or was cancelled. */
  readonly pending: boolean;
  /** Stops the wait; the callback never runs. Safe to call more than once. */
  cancel(): void;
  /** Lets the process exit while this wait is pending; returns the timer. */
  unref(): LongTimer;
  /** Undoes unref(). */
  ref(): LongTimer;
}

interface NodeTimerLike {
  ref?: () => unknown;
  unref?: () => unknown;
}

/**
 * Runs `fn` once after `ms` milliseconds (any finite length; negative or NaN count as 0),
 * on the given clock, in steps of at most 2^31-1 ms.
 */
export function setLongTimeout(fn: () => void, ms: number, opts: LongTimeoutOptions = {}): LongTimer {
  const clock = opts.clock ?? systemTimerClock;
  const maxStep = Math.max(1, Math.min(opts.maxStepMs ?? MAX_TIMER_MS, MAX_TIMER_MS));
  const delay = Number.isFinite(ms) && ms > 0 ? ms : ms === Infinity ? Number.MAX_SAFE_INTEGER : 0;
  const dueAt = clock.now() + delay;
  let handle: unknown;
  let pending = true;
  let unrefd = opts.unref === true;

  const applyRef = () => {
    const h = handle as NodeTimerLike | undefined;
    if (!h || typeof h !== "object") return;
    if (unrefd) h.unref?.();
    else h.ref?.();
  };

  const step = () => {
    handle = undefined;
    if (!pending) return;
    const left = dueAt - clock.now();
    if (left <= 0) {
      pending = false;
      fn();
      return;
    }
    handle = clock.setTimeout(step, Math.min(left, maxStep));
    applyRef();
  };

  const timer: LongTimer = {
    dueAt,
    get pending() {
      return pending;
    },
    cancel() {
      pending = false;
      if (handle !== undefined) clock.clearTimeout(handle);
      handle = undefined;
    },
    unref() {
      unrefd = true;
      applyRef();
      return timer;
    },
    ref() {
      unrefd = false;
      applyRef();
      return timer;
    },
  };
  // The first step always goes through the clock, so the callback never runs synchronously.
  handle = clock.setTimeout(step, Math.min(delay, maxStep));
  applyRef();
  return timer;
}
