import type {
  CreateResult,
  EntryMeta,
  EntryMetaInput,
  EntrySummary,
  JsonValue,
  ManyUpdate,
  StoreBackend,
  StoredEntry,
} from "./backend";
import { checkKey, checkValue, makeMeta, toEntry } from "./entry";
import { InFlight } from "./in-flight";
import { KeyLock } from "./key-lock";
import { TransientPruner, claimOnceVia, countVia, createIfAbsentVia, updateManyUnder } from "./primitives";

/** Keeps entries in this process only: for tests, and for stores that must not persist. */
export class MemoryBackend implements StoreBackend {
  readonly kind = "memory";
  readonly shared = false;
  private readonly entries = new Map<string, { value: JsonValue; meta: EntryMeta }>();
  private readonly lock = new KeyLock();
  private readonly inFlight = new InFlight(() => this.describe());
  private readonly pruner = new TransientPruner(this);

  describe(): string {
    return "memory";
  }

  async get(key: string): Promise<StoredEntry | undefined> {
    const e = this.entries.get(checkKey(key));
    return e && toEntry(key, structuredClone(e.value), { ...e.meta });
  }

  // async, so that a bad key or value rejects like every other backend instead of throwing.
  async set(key: string, value: JsonValue, meta?: Parameters<StoreBackend["set"]>[2]): Promise<StoredEntry> {
    checkKey(key);
    const v = checkValue(value);
    const m = makeMeta(meta);
    return this.inFlight.run(() =>
      this.lock.run(key, async () => {
        this.entries.set(key, { value: v, meta: m });
        return toEntry(key, structuredClone(v), { ...m });
      }),
    );
  }

  async delete(key: string): Promise<boolean> {
    checkKey(key);
    return this.inFlight.run(() => this.lock.run(key, async () => this.entries.delete(key)));
  }

  async list(prefix = ""): Promise<EntrySummary[]> {
    return [...this.entries]
      .filter(([key]) => key.startsWith(prefix))
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([key, e]) => {
        const { value: _value, ...rest } = toEntry(key, null, { ...e.meta });
        return rest;
      });
  }

  async update(key: string, fn: Parameters<StoreBackend["update"]>[1]): Promise<StoredEntry | undefined> {
    checkKey(key);
    return this.inFlight.run(() =>
      this.lock.run(key, async () => {
        const cur = this.entries.get(key);
        const next = fn(cur && toEntry(key, structuredClone(cur.value), { ...cur.meta }));
        if (!next) return undefined;
        const v = checkValue(next.value);
        const m = makeMeta(next.meta);
        this.entries.set(key, { value: v, meta: m });
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

  async updateMany(
    keys: readonly string[],
    fn: ManyUpdate,
  ): Promise<Map<string, StoredEntry | undefined> | undefined> {
    return this.inFlight.run(() =>
      updateManyUnder(this.lock, keys, fn, {
        read: async (key) => {
          const e = this.entries.get(key);
          return e && toEntry(key, structuredClone(e.value), { ...e.meta });
        },
        commit: async (changes) => {
          for (const [key, c] of changes) {
            if (c === null) this.entries.delete(key);
            else this.entries.set(key, { value: c.fresh(), meta: { ...c.meta } });
          }
        },
      }),
    );
  }

  /** Waits for writes under way; later writes are refused, as every backend does. */
  async close(): Promise<void> {
    await this.pruner.idle();
    return this.inFlight.close();
  }
}
