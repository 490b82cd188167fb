/**
 * The context backend: entries kept in a Node-RED context store (memory,
 * localfilesystem, Redis plugins...) through the callback API of the GLOBAL context,
 * which works with every store. Node-RED is not imported: the node passes the global
 * context object in as a `ContextApi`. Context stores offer no compare-and-set, so
 * writes to one key are serialised in this process with a KeyLock.
 */
import {
  StoreError,
  type CreateResult,
  type EntryMeta,
  type EntryMetaInput,
  type EntrySummary,
  type JsonValue,
  type ManyUpdate,
  type StoreBackend,
  type StoredEntry,
} from "./backend";
import { checkKey, checkValue, isExpired, makeMeta, toEntry } from "./entry";
import { InFlight } from "./in-flight";
import { KeyLock } from "./key-lock";
import { TransientPruner, claimOnceVia, countVia, createIfAbsentVia, updateManyUnder } from "./primitives";

/** The part of Node-RED's context object used here (global.get/set/keys with callbacks). */
export interface ContextApi {
  get(key: string, store: string | undefined, cb: (err?: Error | null, value?: unknown) => void): void;
  set(key: string, value: unknown, store: string | undefined, cb: (err?: Error | null) => void): void;
  keys(store: string | undefined, cb: (err?: Error | null, keys?: string[]) => void): void;
}

export interface ContextBackendOptions {
  context: ContextApi;
  /** The context store name from settings.js contextStorage; undefined = the default. */
  store?: string;
  /** Put before every key so list() finds only ours. */
  prefix?: string;
}

export const DEFAULT_CONTEXT_PREFIX = "provisioning_";

/** Characters Node-RED takes literally in a context key; others start a property path. */
const PLAIN = /^[A-Za-z0-9_\-~:@/]$/;

/** Percent-encodes what Node-RED would read as a path (`.`, `[`, spaces...) so any key is one variable. */
export function contextName(prefix: string, key: string): string {
  let out = prefix;
  for (const ch of key) {
    if (PLAIN.test(ch)) out += ch;
    else for (const b of Buffer.from(ch, "utf8")) out += "%" + b.toString(16).toUpperCase().padStart(2, "0");
  }
  return out;
}

function keyFromName(prefix: string, name: string): string | undefined {
  if (!name.startsWith(prefix)) return undefined;
  try {
    return decodeURIComponent(name.slice(prefix.length));
  } catch {
    return undefined;
  }
}

interface ContextRecord {
  format: 1;
  key: string;
  meta: EntryMeta;
  value: JsonValue;
}

function isRecord(v: unknown, key: string): v is ContextRecord {
  const r = v as Partial<ContextRecord> | null;
  return (
    typeof r === "object" &&
    r !== null &&
    r.format === 1 &&
    r.key === key &&
    r.value !== undefined &&
    typeof r.meta === "object" &&
    r.meta !== null &&
    typeof r.meta.obtainedAt === "string" &&
    typeof r.meta.updatedAt === "string"
  );
}

export class ContextBackend implements StoreBackend {
  readonly kind = "context";
  readonly shared = false;
  private readonly ctx: ContextApi;
  private readonly store: string | undefined;
  private readonly prefix: string;
  private readonly lock = new KeyLock();
  private readonly inFlight = new InFlight(() => this.describe());
  private readonly pruner = new TransientPruner(this);

  constructor(opts: ContextBackendOptions) {
    this.ctx = opts.context;
    this.store = opts.store || undefined;
    this.prefix = opts.prefix ?? DEFAULT_CONTEXT_PREFIX;
    if (this.prefix.length === 0 || [...this.prefix].some((c) => !PLAIN.test(c)))
      throw new StoreError(
        "INVALID_KEY",
        "the context key prefix may hold only letters, digits and _ - ~ : @ /",
      );
  }

  describe(): string {
    return `context ${this.store ?? "default"} (${this.prefix}*)`;
  }

  /** Asks the store for its keys once, so a broken store shows at deploy. */
  async open(): Promise<void> {
    await this.keys();
  }

  async get(key: string): Promise<StoredEntry | undefined> {
    checkKey(key);
    const rec = await this.read(key);
    return rec && toEntry(key, rec.value, rec.meta);
  }

  async set(key: string, value: JsonValue, meta?: EntryMetaInput): Promise<StoredEntry> {
    checkKey(key);
    const v = checkValue(value);
    const m = makeMeta(meta);
    return this.inFlight.run(() =>
      this.lock.run(key, async () => {
        await this.read(key); // refuses to replace a damaged record: nothing is overwritten
        await this.write(key, v, m);
        return toEntry(key, structuredClone(v), { ...m });
      }),
    );
  }

  async delete(key: string): Promise<boolean> {
    checkKey(key);
    return this.inFlight.run(() =>
      this.lock.run(key, async () => {
        const name = contextName(this.prefix, key);
        const had = (await this.raw(name)) !== undefined;
        if (had) await this.put(name, undefined);
        return had;
      }),
    );
  }

  async list(prefix = ""): Promise<EntrySummary[]> {
    const out: EntrySummary[] = [];
    for (const name of (await this.keys()).sort()) {
      const key = keyFromName(this.prefix, name);
      if (key === undefined || !key.startsWith(prefix)) continue;
      const rec = await this.raw(name);
      if (isRecord(rec, key)) out.push({ key, meta: { ...rec.meta }, expired: isExpired(rec.meta) });
    }
    return out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }

  async update(key: string, fn: Parameters<StoreBackend["update"]>[1]): Promise<StoredEntry | undefined> {
    checkKey(key);
    return this.inFlight.run(() =>
      this.lock.run(key, async () => {
        const cur = await this.read(key);
        const next = fn(cur && toEntry(key, cur.value, cur.meta));
        if (!next) return undefined;
        const v = checkValue(next.value);
        const m = makeMeta(next.meta);
        await this.write(key, v, m);
        return toEntry(key, structuredClone(v), { ...m });
      }),
    );
  }

  createIfAbsent(key: string, value: JsonValue, meta?: EntryMetaInput): Promise<CreateResult> {
    return createIfAbsentVia((k, fn) => this.update(k, fn), key, value, meta);
  }

  async claimOnce(key: string, ttlMs: number): Promise<boolean> {
    const taken = await claimOnceVia((k, fn) => this.update(k, fn), key, ttlMs);
    this.pruner.touched(key);
    return taken;
  }

  async count(key: string, windowMs: number): Promise<number> {
    const n = await countVia((k, fn) => this.update(k, fn), key, windowMs);
    this.pruner.touched(key);
    return n;
  }

  /**
   * Context stores have no transaction: the changes are written one after the other under
   * the keys' locks, so no write of this process comes between, but a crash (or a failing
   * store) in the middle can leave some of them written.
   */
  async updateMany(
    keys: readonly string[],
    fn: ManyUpdate,
  ): Promise<Map<string, StoredEntry | undefined> | undefined> {
    return this.inFlight.run(() =>
      updateManyUnder(this.lock, keys, fn, {
        read: async (key) => {
          const rec = await this.read(key);
          return rec && toEntry(key, rec.value, rec.meta);
        },
        commit: async (changes) => {
          for (const [key, c] of changes) {
            if (c === null) await this.put(contextName(this.prefix, key), undefined);
            else await this.write(key, c.value, c.meta);
          }
        },
      }),
    );
  }

  /** Waits for operations under way; later calls are refused. */
  async close(): Promise<void> {
    await this.pruner.idle();
    return this.inFlight.close();
  }

  private async read(key: string): Promise<{ value: JsonValue; meta: EntryMeta } | undefined> {
    const rec = await this.raw(contextName(this.prefix, key));
    if (rec === undefined) return undefined;
    if (!isRecord(rec, key)) throw new StoreError("CORRUPT", `the context entry for "${key}" is damaged`);
    // Memory stores hand out the stored object itself: copies keep callers from changing it.
    return { value: structuredClone(rec.value), meta: { ...rec.meta } };
  }

  private write(key: string, value: JsonValue, meta: EntryMeta): Promise<void> {
    const rec: ContextRecord = { format: 1, key, meta, value };
    return this.put(contextName(this.prefix, key), rec);
  }

  private raw(name: string): Promise<unknown> {
    return new Promise((resolve, reject) => {
      try {
        this.ctx.get(name, this.store, (err, value) =>
          err ? reject(this.fail("read", err)) : resolve(value === null ? undefined : value),
        );
      } catch (err) {
        reject(this.fail("read", err));
      }
    });
  }

  private put(name: string, value: unknown): Promise<void> {
    return new Promise((resolve, reject) => {
      try {
        this.ctx.set(name, value, this.store, (err) => (err ? reject(this.fail("write", err)) : resolve()));
      } catch (err) {
        reject(this.fail("write", err));
      }
    });
  }

  private keys(): Promise<string[]> {
    return new Promise((resolve, reject) => {
      try {
        this.ctx.keys(this.store, (err, keys) =>
          err ? reject(this.fail("list", err)) : resolve(keys ?? []),
        );
      } catch (err) {
        reject(this.fail("list", err));
      }
    });
  }

  private fail(what: string, err: unknown): StoreError {
    return new StoreError(
      "IO",
      `cannot ${what} the context store ${this.store ?? "default"}: ${(err as Error)?.message ?? err}`,
    );
  }
}
