/**
 * The one asynchronous interface every credential-store backend implements (file,
 * token file, Node-RED context). Values are JSON objects; metadata is kept apart so
 * that listing never needs to read, decrypt or reveal a value.
 */

export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };

export interface EntryMeta {
  /** ISO 8601: when the value was obtained from its service. */
  obtainedAt: string;
  /** ISO 8601: when this entry was last written. */
  updatedAt: string;
  protocol?: string;
  endpoint?: string;
  /** ISO 8601, where known. */
  expiresAt?: string;
  /** A short free label, never secret. */
  kind?: string;
}

export interface EntryMetaInput {
  obtainedAt?: string;
  protocol?: string;
  endpoint?: string;
  expiresAt?: string;
  kind?: string;
}

export interface StoredEntry {
  key: string;
  value: JsonValue;
  meta: EntryMeta;
  /** True when meta.expiresAt is in the past. */
  expired: boolean;
}

export interface EntrySummary {
  key: string;
  meta: EntryMeta;
  expired: boolean;
}

export interface StoreBackend {
  /** "memory", "file", "journal", "token-file", "context", "postgres". */
  readonly kind: string;
  /**
   * True when other processes write the same entries (PostgreSQL: N Node-RED instances
   * over one table), so what this process holds in memory is not the whole truth; false
   * for the backends whose exactly-once primitives hold only inside this process (memory,
   * file, journal, token file, context). The service layer uses the primitives either way;
   * it reads this only to decide what it may keep in memory (a lock, a count, a cache).
   */
  readonly shared: boolean;
  /** A human description without secrets, for status and errors ("file /data/creds"). */
  describe(): string;
  get(key: string): Promise<StoredEntry | undefined>;
  set(key: string, value: JsonValue, meta?: EntryMetaInput): Promise<StoredEntry>;
  /** Resolves true when something was deleted. */
  delete(key: string): Promise<boolean>;
  /**
   * Entries whose key starts with `prefix` (every entry without one), metadata only, in key
   * order. A backend reads only what matches where it can (the file backend reads only the
   * files whose names say so), so a registry lists one group without touching the rest.
   */
  list(prefix?: string): Promise<EntrySummary[]>;
  /**
   * Read-modify-write of one key, serialised with every other write to that key through
   * this backend instance. `fn` returns the new value and meta, or undefined to leave the
   * entry as it is. Used by registries: "create unless present" without a race. On
   * PostgreSQL the write is checked against the version read and `fn` is called again after
   * a lost race with another instance, so `fn` must not act outside its answer.
   */
  update(
    key: string,
    fn: (current: StoredEntry | undefined) => { value: JsonValue; meta?: EntryMetaInput } | undefined,
  ): Promise<StoredEntry | undefined>;
  /**
   * Optional, for a backend that writes one ordered log (the journal): update() that, when
   * `fn` writes, also writes the entries `before()` then returns, ahead of the key's own, in
   * the same batch and under the same fsync: they are durable when the key's entry is, and a
   * crash keeps a prefix of them (never the key's entry without them). `before` is called
   * once, after `fn` has decided to write. Records writes its index claims this way, so a
   * new record costs one durable write instead of two in a row.
   */
  updateWith?(
    key: string,
    fn: (current: StoredEntry | undefined) => { value: JsonValue; meta?: EntryMetaInput } | undefined,
    before: () => Array<{ key: string; value: JsonValue; meta?: EntryMetaInput }>,
  ): Promise<StoredEntry | undefined>;
  /**
   * Writes `value` unless `key` holds an entry (expired or not); one atomic step on every
   * backend: across instances on PostgreSQL, within this process elsewhere. `entry` is
   * what the key holds afterwards: ours when `created`, else the one that was there.
   */
  createIfAbsent(key: string, value: JsonValue, meta?: EntryMetaInput): Promise<CreateResult>;
  /**
   * A read-modify-write over several keys at once: `fn` sees every key's current entry
   * (undefined when absent) and returns the changes (a value to write, null to delete) for
   * some of those keys, or undefined to change nothing. No other write of this backend to
   * any of the keys comes in between (PostgreSQL: one transaction over rows locked in key
   * order; the others: the per-key locks in key order). `fn` may be called again after a
   * lost race, so it must not act outside its answer. Resolves with the entries after the
   * changes, or undefined when `fn` returned undefined.
   */
  updateMany(
    keys: readonly string[],
    fn: ManyUpdate,
  ): Promise<Map<string, StoredEntry | undefined> | undefined>;
  /**
   * Optional: several keys read in one step (one statement on PostgreSQL), for a caller
   * that reads a few keys on every request; getEntries() (primitives.ts) falls back to
   * get() per key. Absent keys map to undefined. At most MAX_MANY_KEYS keys.
   */
  getMany?(keys: readonly string[]): Promise<Map<string, StoredEntry | undefined>>;
  /**
   * Single use: true when this caller took `key` (it was absent, or an earlier claim's
   * `ttlMs` had run out), false while an earlier claim holds it. The entry (value
   * `{ claimedAt }`, meta.kind "store-claim") expires after `ttlMs` and is pruned later.
   */
  claimOnce(key: string, ttlMs: number): Promise<boolean>;
  /**
   * Adds one hit to the counter `key` and resolves with the hits in its window, this one
   * included: a fixed window that starts at the first hit and lasts `windowMs`, then the
   * count starts again at 1 (value `{ n, since }`, meta.kind "store-count"). For failure
   * limits that must hold across instances.
   */
  count(key: string, windowMs: number): Promise<number>;
  close(): Promise<void>;
}

export interface CreateResult {
  created: boolean;
  entry: StoredEntry;
}

/** A change of updateMany(): the new value and meta, or null to delete the entry. */
export type EntryChange = { value: JsonValue; meta?: EntryMetaInput } | null;

export type ManyUpdate = (
  current: ReadonlyMap<string, StoredEntry | undefined>,
) => ReadonlyMap<string, EntryChange> | undefined;

/** Thrown by backends; `code` is stable for flows and tests, `message` holds no secret. */
export class StoreError extends Error {
  constructor(
    readonly code:
      | "NOT_FOUND"
      | "INVALID_KEY"
      | "INVALID_VALUE"
      | "WRONG_KEY"
      | "CORRUPT"
      | "IO"
      | "READ_ONLY"
      | "UNSUPPORTED",
    message: string,
  ) {
    super(message);
    this.name = "StoreError";
  }
}
