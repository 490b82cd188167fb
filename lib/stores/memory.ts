import type { EntryMeta, EntrySummary, JsonValue, StoreBackend, StoredEntry } from "./backend";
import { checkKey, checkValue, makeMeta, toEntry } from "./entry";
import { InFlight } from "./in-flight";
import { KeyLock } from "./key-lock";

/** Keeps entries in this process only: for tests, and for stores that must not persist. */
export class MemoryBackend implements StoreBackend {
  readonly kind = "memory";
  private readonly entries = new Map<string, { value: JsonValue; meta: EntryMeta }>();
  private readonly lock = new KeyLock();
  private readonly inFlight = new InFlight(() => this.describe());

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

  /** Waits for writes under way; later writes are refused, as every backend does. */
  close(): Promise<void> {
    return this.inFlight.close();
  }
}
