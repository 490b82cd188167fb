/**
 * The exactly-once primitives of StoreBackend (createIfAbsent, updateMany, claimOnce,
 * count) for the backends whose writes are serialised inside this process by a KeyLock
 * (memory, file, journal, context). Each is built from the backend's own per-key
 * read-modify-write, so it is exactly as atomic as update() is there: within one process.
 * The PostgreSQL backend has its own, one statement or one transaction each, that hold
 * across instances (postgres.ts).
 */
import {
  StoreError,
  type CreateResult,
  type EntryChange,
  type EntryMeta,
  type EntryMetaInput,
  type JsonValue,
  type ManyUpdate,
  type StoreBackend,
  type StoredEntry,
} from "./backend";
import { checkKey, checkValue, isExpired, makeMeta, toEntry, valueText } from "./entry";
import type { KeyLock } from "./key-lock";

/**
 * meta.kind of the entries claimOnce() and count() write, and of the entries a service
 * writes only to share a short-lived state between instances (EPHEMERAL_KIND: an Azure
 * DPS operation); the pruner removes only these, once expired. A credential whose
 * expiresAt passed is kept: it is listed as expired.
 */
export const CLAIM_KIND = "store-claim";
export const COUNT_KIND = "store-count";
export const EPHEMERAL_KIND = "store-ephemeral";
export const TRANSIENT_KINDS: readonly string[] = [CLAIM_KIND, COUNT_KIND, EPHEMERAL_KIND];

/** At most this many keys in one updateMany(): a protocol needs two or three, not a table. */
export const MAX_MANY_KEYS = 64;
/** The longest claim or window: ten years, far beyond any request id or failure window. */
export const MAX_TTL_MS = 10 * 365 * 24 * 3600 * 1000;

export function checkTtl(name: string, ms: unknown): number {
  if (typeof ms !== "number" || !Number.isInteger(ms) || ms <= 0 || ms > MAX_TTL_MS)
    throw new StoreError(
      "INVALID_VALUE",
      `${name} must be a whole number of milliseconds from 1 to ${MAX_TTL_MS}`,
    );
  return ms;
}

/** The keys of an updateMany(), checked, without repeats, in key order. */
export function checkKeys(keys: unknown): string[] {
  if (!Array.isArray(keys) || keys.length === 0)
    throw new StoreError("INVALID_KEY", "updateMany and getMany need a list of keys");
  if (keys.length > MAX_MANY_KEYS)
    throw new StoreError("INVALID_KEY", `updateMany and getMany take at most ${MAX_MANY_KEYS} keys`);
  const out = [...new Set(keys.map((k) => checkKey(k)))];
  return out.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

/** Several keys read at once: the backend's getMany() where it has one, else get() per key. */
export async function getEntries(
  b: StoreBackend,
  keys: readonly string[],
): Promise<Map<string, StoredEntry | undefined>> {
  if (b.getMany) return b.getMany(keys);
  const sorted = checkKeys(keys);
  const got = await Promise.all(sorted.map((k) => b.get(k)));
  return new Map(sorted.map((k, i) => [k, got[i]]));
}

/**
 * A value checked and given its meta, ready to be written: its JSON `text` is what a
 * backend that writes text (the journal) writes, so the value is turned into JSON once per
 * write; `value` is a copy made from the text when a backend asks for one.
 */
export class PreparedValue {
  private parsed?: JsonValue;

  constructor(
    readonly text: string,
    readonly meta: EntryMeta,
  ) {}

  get value(): JsonValue {
    return (this.parsed ??= JSON.parse(this.text) as JsonValue);
  }

  /** A copy of the value of its own, for a caller that may change it. */
  fresh(): JsonValue {
    return JSON.parse(this.text) as JsonValue;
  }
}

/** A change checked and given its meta, ready to be written (null deletes). */
export type PreparedChange = PreparedValue | null;

/** Checks what `fn` of updateMany() answered: only locked keys, storable values. */
export function prepareChanges(
  keys: readonly string[],
  changes: ReadonlyMap<string, EntryChange>,
  now = new Date(),
): Map<string, PreparedChange> {
  if (!(changes instanceof Map))
    throw new StoreError("INVALID_VALUE", "updateMany's function must answer a Map of changes, or undefined");
  const out = new Map<string, PreparedChange>();
  const at = now.toISOString();
  for (const [key, change] of changes) {
    if (!keys.includes(key))
      throw new StoreError("INVALID_KEY", "updateMany may change only the keys it was given");
    out.set(
      key,
      change === null ? null : new PreparedValue(valueText(change.value), makeMeta(change.meta, at)),
    );
  }
  return out;
}

/** The entries after the changes: the changed ones as written, the others as they were. */
export function entriesAfter(
  current: ReadonlyMap<string, StoredEntry | undefined>,
  changes: ReadonlyMap<string, PreparedChange>,
): Map<string, StoredEntry | undefined> {
  const out = new Map<string, StoredEntry | undefined>();
  for (const [key, entry] of current) {
    if (!changes.has(key)) out.set(key, entry);
    else {
      const c = changes.get(key) as PreparedChange;
      out.set(key, c === null ? undefined : toEntry(key, c.fresh(), { ...c.meta }));
    }
  }
  return out;
}

/** What a backend gives updateManyUnder(): reads and writes without taking a lock. */
export interface UnlockedIo {
  read(key: string): Promise<StoredEntry | undefined>;
  /** Writes every change; the journal writes them as one batch under one fsync. */
  commit(changes: ReadonlyMap<string, PreparedChange>): Promise<void>;
}

/** updateMany() under the per-key locks of `lock`, taken in key order. */
export async function updateManyUnder(
  lock: KeyLock,
  keys: readonly string[],
  fn: ManyUpdate,
  io: UnlockedIo,
): Promise<Map<string, StoredEntry | undefined> | undefined> {
  const sorted = checkKeys(keys);
  return lock.runMany(sorted, async () => {
    const current = new Map<string, StoredEntry | undefined>();
    for (const key of sorted) current.set(key, await io.read(key));
    const answer = fn(current);
    if (answer === undefined) return undefined;
    const changes = prepareChanges(sorted, answer);
    await io.commit(changes);
    return entriesAfter(current, changes);
  });
}

type Update = StoreBackend["update"];

/** createIfAbsent() from update(): the decision is taken under the key's lock. */
export async function createIfAbsentVia(
  update: Update,
  key: string,
  value: JsonValue,
  meta?: EntryMetaInput,
): Promise<CreateResult> {
  checkKey(key);
  const v = checkValue(value);
  makeMeta(meta); // a bad date is refused before anything is locked
  let seen: StoredEntry | undefined;
  const written = await update(key, (cur) => {
    seen = cur;
    return cur ? undefined : { value: v, meta };
  });
  if (written) return { created: true, entry: written };
  if (!seen) throw new StoreError("IO", `createIfAbsent of "${key}" neither wrote nor found an entry`);
  return { created: false, entry: seen };
}

/** claimOnce() from update(): a live claim is left alone, an absent or run-out one is taken. */
export async function claimOnceVia(update: Update, key: string, ttlMs: number): Promise<boolean> {
  checkKey(key);
  checkTtl("ttlMs", ttlMs);
  const written = await update(key, (cur) => {
    const now = Date.now();
    if (cur && !isExpired(cur.meta, now)) return undefined;
    const at = new Date(now).toISOString();
    return {
      value: { claimedAt: at },
      meta: { obtainedAt: at, kind: CLAIM_KIND, expiresAt: new Date(now + ttlMs).toISOString() },
    };
  });
  return written !== undefined;
}

/** The hits and window start of a counter entry, when it is one and its window still runs. */
export function liveCount(
  cur: StoredEntry | undefined,
  now: number,
): { n: number; since: string } | undefined {
  if (!cur || cur.meta.kind !== COUNT_KIND || isExpired(cur.meta, now)) return undefined;
  const v = cur.value as { n?: unknown; since?: unknown } | null;
  if (typeof v !== "object" || v === null || !Number.isSafeInteger(v.n) || typeof v.since !== "string")
    return undefined;
  return { n: v.n as number, since: v.since };
}

/** count() from update(): one more hit in the running window, or the first of a new one. */
export async function countVia(update: Update, key: string, windowMs: number): Promise<number> {
  checkKey(key);
  checkTtl("windowMs", windowMs);
  let n = 0;
  await update(key, (cur) => {
    const now = Date.now();
    const live = liveCount(cur, now);
    const since = live ? live.since : new Date(now).toISOString();
    n = (live?.n ?? 0) + 1;
    const expiresAt = new Date(Date.parse(since) + windowMs).toISOString();
    return { value: { n, since }, meta: { obtainedAt: since, kind: COUNT_KIND, expiresAt } };
  });
  return n;
}

/** What a key's group is: everything up to its last "/" (records keep one group there). */
export function groupOf(key: string): string {
  const i = key.lastIndexOf("/");
  return i < 0 ? "" : key.slice(0, i + 1);
}

/**
 * Removes run-out claims and counters, lazily and in bounded steps: after a claim or a
 * count, the key's group is listed (metadata only) unless that was done within `everyMs`,
 * and at most `limit` of its expired claim and count entries are deleted, each only if it
 * is still expired under its lock. One sweep at a time, in the background; a failure only
 * leaves entries for a later sweep. Other entries, expired or not, are never touched: an
 * expired credential stays readable and flagged.
 */
export class TransientPruner {
  private readonly swept = new Map<string, number>();
  private running?: Promise<number>;

  constructor(
    private readonly backend: Pick<StoreBackend, "list" | "updateMany">,
    private readonly everyMs = 10 * 60 * 1000,
    private readonly limit = 256,
  ) {}

  touched(key: string, now = Date.now()): void {
    const group = groupOf(key);
    const last = this.swept.get(group);
    if (this.running || (last !== undefined && now - last < this.everyMs)) return;
    this.swept.delete(group);
    this.swept.set(group, now);
    // The map is bounded: the group swept longest ago is forgotten first.
    if (this.swept.size > 1024) this.swept.delete(this.swept.keys().next().value as string);
    const p = this.sweep(group).catch(() => 0);
    this.running = p;
    void p.finally(() => {
      if (this.running === p) this.running = undefined;
    });
  }

  /** Waits for a sweep under way (close() calls it, so nothing runs after a store closed). */
  async idle(): Promise<void> {
    await this.running;
  }

  /** Deletes up to `limit` expired claim and count entries under `prefix`; resolves with how many. */
  async sweep(prefix: string, limit = this.limit): Promise<number> {
    const now = Date.now();
    const due = (await this.backend.list(prefix))
      .filter((e) => e.expired && TRANSIENT_KINDS.includes(e.meta.kind ?? ""))
      .slice(0, limit);
    let removed = 0;
    for (const e of due) {
      const after = await this.backend.updateMany([e.key], (cur) => {
        const c = cur.get(e.key);
        return c && isExpired(c.meta, now) && TRANSIENT_KINDS.includes(c.meta.kind ?? "")
          ? new Map([[e.key, null]])
          : undefined;
      });
      if (after) removed++;
    }
    return removed;
  }
}
