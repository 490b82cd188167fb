/**
 * Failed-attempt limiting shared by every serving dialect (brute force of provision keys
 * and secrets, Mainflux external keys). Failures are counted per remote address and per
 * "account" (a ThingsBoard profile whose provisionDeviceKey was right but whose secret was
 * wrong; a Mainflux external id that exists but got the wrong key). Past `slowAfter`
 * failures the answer is delayed, growing exponentially; at `lockAfter` failures the
 * subject is locked for `lockMs` and refused without looking at the secret. With
 * lockAfter 100 and lockMs one hour, no address and no account sees more than 100 failed
 * attempts an hour (OWASP ASVS 4.0.3, V2.2.1).
 *
 * An account lock never refuses an address with a clean record: the provision secret of a
 * ThingsBoard profile is shared by a whole fleet, so refusing every address would let one
 * attacker lock the fleet out with 100 wrong guesses. While an account is locked, only
 * addresses that have failed themselves (in the current window) are refused for it, so a
 * distributed attacker gets at most one evaluated guess per address per window, and
 * honest devices elsewhere are answered at once.
 *
 * Memory is bounded: each map holds at most `maxEntries` subjects; the least recently
 * touched one is forgotten first (a Map iterates in insertion order, and every touch
 * re-inserts).
 *
 * N instances over one shared store (StoreBackend.shared: PostgreSQL) share one budget per
 * address and per account: every failure is also one backend.count() of the subject's
 * counter (a fixed window from its first failure), the failure that reaches `lockAfter`
 * takes the subject's lock with backend.claimOnce(lock, lockMs) (one instance wins: one
 * "locked" event across the fleet) and clears the counter, so the budget starts again
 * after the lock, as here. refresh() reads the subject's counter and lock (one statement on
 * PostgreSQL, two when the account is looked at) and merges them into this instance's
 * counters, which check() reads synchronously as before. N wrong secrets spread over the
 * instances so lock at the configured count, not N times it; only attempts already past
 * their last check when the lock began are still evaluated (one per request in flight).
 * A store that is not shared (one process) keeps the counts in memory only: exact there
 * already, and a flood of wrong secrets does not become a flood of file writes.
 */
import { createHash } from "node:crypto";
import type { StoreBackend, StoredEntry } from "../stores/backend";
import { isExpired } from "../stores/entry";
import { getEntries, liveCount } from "../stores/primitives";

export interface FailureLimitOptions {
  /** Off: nothing is counted, delayed or refused. */
  enabled: boolean;
  /** Failures (per address or account) answered at once; later ones are delayed. */
  slowAfter: number;
  /** Failures within `windowMs` that lock the subject. */
  lockAfter: number;
  /** How long a lock lasts; the count starts again after it. */
  lockMs: number;
  /** Failures older than this are forgotten (when no lock is running). */
  windowMs: number;
  /** First delay; doubles with every further failure. */
  baseDelayMs: number;
  /**
   * Longest delay. Kept within what device clients wait for an answer (a few seconds):
   * a longer hold reads as a hang and holds a socket; the lock does the limiting.
   */
  maxDelayMs: number;
  /** Most requests from one address that may wait out a delay at once; more are refused. */
  maxWaiting: number;
  /** Most addresses and most accounts remembered (each). */
  maxEntries: number;
}

export const FAILURE_LIMIT_DEFAULTS: FailureLimitOptions = {
  enabled: true,
  slowAfter: 5,
  lockAfter: 100,
  lockMs: 60 * 60 * 1000,
  windowMs: 60 * 60 * 1000,
  baseDelayMs: 250,
  maxDelayMs: 2 * 1000,
  maxWaiting: 20,
  maxEntries: 10000,
};

interface Counter {
  failures: number;
  since: number;
  lockedUntil: number;
  waiting: number;
}

export type LimitVerdict =
  | { action: "go"; delayMs: number }
  | { action: "locked"; subject: "address" | "account"; retryAfterMs: number }
  | { action: "throttled"; retryAfterMs: number };

/** What the limiter knows of one attempt: the remote address, and the account when known. */
export interface AttemptSubject {
  remote?: string;
  /** A ThingsBoard profile name, a Mainflux external id; never a secret. One limiter serves one service. */
  account?: string;
  /**
   * Kept apart from other scopes' counts of the same address. UDP source addresses can be
   * forged (RFC 7252 section 11.4, CoAP's own security considerations), so CoAP counts
   * in scope "udp": forged failures cannot lock the address out of MQTT or HTTP.
   */
  scope?: string;
}

function addressId(s: AttemptSubject): string | undefined {
  if (s.remote === undefined) return undefined;
  return (s.scope ? `${s.scope} ` : "") + addressUnit(s.remote);
}

/**
 * The unit an address is counted in: IPv4 (and IPv4-mapped IPv6) as is, other IPv6 by
 * its /64, since one host is commonly given a whole /64 (RFC 4291 section 2.5.4, RFC 7421).
 */
export function addressUnit(remote: string): string {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(remote);
  if (mapped) return mapped[1];
  if (!remote.includes(":")) return remote;
  const [head, tail] = remote.split("%")[0].toLowerCase().split("::");
  const left = head ? head.split(":") : [];
  const right = tail === undefined ? [] : tail ? tail.split(":") : [];
  const groups =
    tail === undefined ? left : [...left, ...Array(8 - left.length - right.length).fill("0"), ...right];
  return (
    groups
      .slice(0, 4)
      .map((g) => g.replace(/^0+(?=.)/, ""))
      .join(":") + "::/64"
  );
}

class BoundedCounters {
  private readonly map = new Map<string, Counter>();
  constructor(private readonly max: number) {}

  /** The live counter, refreshed for time; undefined when nothing is remembered. */
  peek(id: string, now: number, opts: FailureLimitOptions): Counter | undefined {
    const c = this.map.get(id);
    if (!c) return undefined;
    if (c.lockedUntil !== 0 && c.lockedUntil <= now) {
      c.lockedUntil = 0;
      c.failures = 0;
      c.since = now;
    } else if (c.lockedUntil === 0 && now - c.since > opts.windowMs) {
      c.failures = 0;
      c.since = now;
    }
    if (c.failures === 0 && c.lockedUntil === 0 && c.waiting === 0) {
      this.map.delete(id);
      return undefined;
    }
    return c;
  }

  touch(id: string, now: number): Counter {
    let c = this.map.get(id);
    if (c) this.map.delete(id);
    else {
      c = { failures: 0, since: now, lockedUntil: 0, waiting: 0 };
      while (this.map.size >= this.max) {
        const oldest = this.map.keys().next().value;
        if (oldest === undefined) break;
        this.map.delete(oldest);
      }
    }
    this.map.set(id, c);
    return c;
  }

  /** Raises the subject's counter to what the shared store says (never lowers it). */
  merge(id: string, now: number, failures: number, lockedUntil: number): void {
    if (failures <= 0 && lockedUntil <= now) return;
    const c = this.touch(id, now);
    if (lockedUntil > c.lockedUntil) c.lockedUntil = lockedUntil;
    if (failures > c.failures) c.failures = failures;
  }

  locked(now: number): number {
    let n = 0;
    for (const c of this.map.values()) if (c.lockedUntil > now) n++;
    return n;
  }

  get size(): number {
    return this.map.size;
  }
}

export interface LockEvent {
  subject: "address" | "account";
  /** The address unit, or the account id as given; never a secret. */
  id: string;
  failures: number;
  untilMs: number;
}

/** Where N instances keep one budget: a shared store and the name of this service in it. */
export interface SharedFailureStore {
  backend: StoreBackend;
  /** The service's name in keys ("thingsboard"): services keep apart budgets. */
  service: string;
}

type Subject = "address" | "account";

export class FailureLimiter {
  readonly opts: FailureLimitOptions;
  private readonly addresses: BoundedCounters;
  private readonly accounts: BoundedCounters;
  private readonly shared?: SharedFailureStore;

  constructor(
    opts: Partial<FailureLimitOptions> = {},
    private readonly now: () => number = Date.now,
    /** Called once when a subject becomes locked (once across instances when shared). */
    private readonly onLock?: (e: LockEvent) => void,
    /** Given (and its backend shared), the budget is shared with every instance over it. */
    shared?: SharedFailureStore,
  ) {
    this.opts = { ...FAILURE_LIMIT_DEFAULTS, ...opts };
    this.addresses = new BoundedCounters(this.opts.maxEntries);
    this.accounts = new BoundedCounters(this.opts.maxEntries);
    if (shared?.backend.shared) this.shared = shared;
  }

  /** True when the budget is kept in a store shared with other instances. */
  get isShared(): boolean {
    return this.shared !== undefined;
  }

  /**
   * The store keys of one subject: the counter and the lock. Hashed: an address or an
   * account id is not secret, but keys have a length limit and show in listings.
   */
  private keysOf(subject: Subject, id: string): { count: string; lock: string } {
    const h = createHash("sha256").update(id, "utf8").digest("hex");
    const head = `failure-limit/${(this.shared as SharedFailureStore).service}/${subject}/`;
    return { count: `${head}${h}`, lock: `${head}${h}.lock` };
  }

  /** A subject's shared counter and lock: failures in the window, and the lock's end. */
  private async readShared(subject: Subject, id: string, t: number): Promise<[number, number]> {
    const { backend } = this.shared as SharedFailureStore;
    const k = this.keysOf(subject, id);
    // One statement on PostgreSQL: this runs before every attempt.
    const got = await getEntries(backend, [k.count, k.lock]);
    const count = got.get(k.count);
    const lock = got.get(k.lock);
    return [liveCount(count, t)?.n ?? 0, lockEnd(lock, t)];
  }

  /**
   * Brings this instance's view of the subject up to the shared store's (a no-op when the
   * store is not shared). Call it once per attempt, before the first check(); the account
   * is read only when the address has failed (as check() applies it). A store that cannot
   * be read leaves this instance's own counts: the guard still holds per instance.
   */
  async refresh(s: AttemptSubject): Promise<void> {
    if (!this.opts.enabled || !this.shared) return;
    const aid = addressId(s);
    if (aid === undefined && s.account === undefined) return;
    try {
      const t = this.now();
      let failed = 0;
      if (aid !== undefined) {
        const [n, until] = await this.readShared("address", aid, t);
        this.addresses.merge(aid, t, n, until);
        failed = this.addresses.peek(aid, t, this.opts)?.failures ?? 0;
      }
      if (s.account !== undefined && failed > 0) {
        const [n, until] = await this.readShared("account", s.account, t);
        this.accounts.merge(s.account, t, n, until);
      }
    } catch {
      // Unreadable: this instance's counts decide alone.
    }
  }

  /** Subjects locked right now (addresses + accounts), for the node's status. */
  lockedCount(): number {
    if (!this.opts.enabled) return 0;
    const t = this.now();
    return this.addresses.locked(t) + this.accounts.locked(t);
  }

  /** Remembered subjects (addresses + accounts); bounded by 2 * maxEntries. */
  get size(): number {
    return this.addresses.size + this.accounts.size;
  }

  /**
   * Decides, before the secret is looked at, whether this attempt may be evaluated and
   * after how long. Call it again right before the comparison when a delay was waited
   * out, and let no await come between the last check and `failed()`: then requests in
   * parallel cannot overshoot the lock.
   */
  check(s: AttemptSubject): LimitVerdict {
    if (!this.opts.enabled) return { action: "go", delayMs: 0 };
    const t = this.now();
    const aid = addressId(s);
    const addr = aid === undefined ? undefined : this.addresses.peek(aid, t, this.opts);
    if (addr && addr.lockedUntil > t)
      return { action: "locked", subject: "address", retryAfterMs: addr.lockedUntil - t };
    const addrFailures = addr?.failures ?? 0;
    // An account's count applies only to addresses that have failed themselves.
    const acct =
      s.account !== undefined && addrFailures > 0 ? this.accounts.peek(s.account, t, this.opts) : undefined;
    if (acct && acct.lockedUntil > t)
      return { action: "locked", subject: "account", retryAfterMs: acct.lockedUntil - t };
    const n = Math.max(addrFailures, acct?.failures ?? 0);
    return { action: "go", delayMs: this.delayFor(n) };
  }

  private delayFor(failures: number): number {
    const over = failures - this.opts.slowAfter;
    if (failures === 0 || over < 0) return 0;
    return Math.min(this.opts.maxDelayMs, this.opts.baseDelayMs * 2 ** Math.min(over, 30));
  }

  /**
   * Waits out a delay for the subject's address, refusing when too many of its requests are already
   * waiting (so a flood cannot hold unbounded timers and sockets). Resolves true to go on.
   */
  async wait(s: AttemptSubject, delayMs: number, signal?: AbortSignal): Promise<boolean> {
    if (delayMs <= 0) return true;
    const id = addressId(s) ?? "";
    const c = this.addresses.touch(id, this.now());
    if (c.waiting >= this.opts.maxWaiting) return false;
    c.waiting++;
    try {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, delayMs);
        signal?.addEventListener("abort", () => {
          clearTimeout(timer);
          resolve();
        });
      });
    } finally {
      c.waiting--;
    }
    return !signal?.aborted;
  }

  /**
   * Records one failed attempt against the address and, when known, the account. The
   * local count is taken at once (synchronously, so a check() after it sees it); with a
   * shared store the promise resolves once the failure is counted there too: await it
   * before answering, so the next attempt, at any instance, finds it.
   */
  failed(s: AttemptSubject): Promise<void> {
    if (!this.opts.enabled) return Promise.resolve();
    const t = this.now();
    const aid = addressId(s);
    const announce = !this.shared;
    if (aid !== undefined) this.count(this.addresses, "address", aid, t, announce);
    if (s.account !== undefined) this.count(this.accounts, "account", s.account, t, announce);
    if (!this.shared) return Promise.resolve();
    const writes: Promise<void>[] = [];
    if (aid !== undefined) writes.push(this.countShared(this.addresses, "address", aid));
    if (s.account !== undefined) writes.push(this.countShared(this.accounts, "account", s.account));
    // A store that cannot be written leaves the local count: the guard holds per instance.
    return Promise.all(writes).then(
      () => undefined,
      () => undefined,
    );
  }

  /** One failure in the shared counter; the one that reaches lockAfter takes the lock. */
  private async countShared(map: BoundedCounters, subject: Subject, id: string): Promise<void> {
    const { backend } = this.shared as SharedFailureStore;
    const k = this.keysOf(subject, id);
    const n = await backend.count(k.count, this.opts.windowMs);
    const t = this.now();
    map.merge(id, t, n, 0);
    if (n < this.opts.lockAfter) return;
    const until = t + this.opts.lockMs;
    const won = await backend.claimOnce(k.lock, this.opts.lockMs);
    if (won) {
      // The budget starts again after the lock, as in memory (failures during a lock are not counted).
      await backend.delete(k.count);
      this.announce({ subject, id, failures: n, untilMs: until });
    }
    map.merge(id, t, 0, won ? until : lockEnd(await backend.get(k.lock), t));
  }

  private count(map: BoundedCounters, subject: Subject, id: string, t: number, announce: boolean): void {
    map.peek(id, t, this.opts); // expires an old window or lock first
    const c = map.touch(id, t);
    if (c.lockedUntil > t) return;
    if (c.failures === 0) c.since = t;
    c.failures++;
    if (c.failures >= this.opts.lockAfter) {
      c.lockedUntil = t + this.opts.lockMs;
      if (announce) this.announce({ subject, id, failures: c.failures, untilMs: c.lockedUntil });
    }
  }

  private announce(e: LockEvent): void {
    try {
      this.onLock?.(e);
    } catch {
      // A consumer's bug must not change the answer.
    }
  }
}

/** When a lock entry (claimOnce) ends; 0 when there is none or it ran out. */
function lockEnd(e: StoredEntry | undefined, now: number): number {
  if (!e || isExpired(e.meta, now) || e.meta.expiresAt === undefined) return 0;
  return Date.parse(e.meta.expiresAt);
}

/** The dialog settings every serving node offers for the failure limit. */
export interface FailureLimitSettings {
  failLimit?: boolean;
  failSlowAfter?: string | number;
  failLockAfter?: string | number;
  failLockMinutes?: string | number;
}

function setting(v: unknown, fallback: number, min: number): number {
  const n = typeof v === "number" ? v : typeof v === "string" && v.trim() !== "" ? Number(v) : NaN;
  return Number.isFinite(n) && n >= min ? n : fallback;
}

/**
 * Options from a node's settings: on unless `failLimit` is false; a missing or invalid
 * number keeps its default. The window is at least as long as the lock, so that a lock
 * of an hour after 100 failures keeps to "at most 100 an hour".
 */
export function failureLimitOptions(s: FailureLimitSettings): Partial<FailureLimitOptions> {
  const d = FAILURE_LIMIT_DEFAULTS;
  const lockMs = setting(s.failLockMinutes, d.lockMs / 60000, 0.01) * 60000;
  return {
    enabled: s.failLimit !== false,
    slowAfter: Math.floor(setting(s.failSlowAfter, d.slowAfter, 0)),
    lockAfter: Math.floor(setting(s.failLockAfter, d.lockAfter, 1)),
    lockMs,
    windowMs: Math.max(d.windowMs, lockMs),
  };
}
