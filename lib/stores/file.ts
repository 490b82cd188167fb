/**
 * The file backend: one directory, one file per key. Each file holds the key and its
 * metadata in plain JSON beside the value, which is sealed with AES-256-GCM when the
 * store has an encryption key, so listing never decrypts. Every write is atomic.
 *
 * Nothing per entry is held in memory: opening a store of 100,000 devices reads its
 * directory, not its files, and memory does not grow with the store. list() reads the
 * files its prefix names (the hex file names spell their keys), so a registry lists one
 * group without reading the others.
 */
import { chmod, mkdir, readFile, readdir, unlink } from "node:fs/promises";
import { join, resolve } from "node:path";
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
import { atomicWrite, fsyncDir, ioError, removeStaleTemps } from "./fs-util";
import { fileNameFor, isEntryFileName, keyOfFileName } from "./file-names";
import { isSealedBox, seal, unseal, type SealedBox } from "./crypto-box";
import { openStoreKey } from "./store-header";

export interface FileBackendOptions {
  directory: string;
  /** When given, values are encrypted at rest with a key derived from it. */
  passphrase?: string;
  /** scrypt cost N for a NEW store directory (a power of two); tests lower it. */
  scryptN?: number;
}

interface DiskRecord {
  format: 1;
  key: string;
  meta: EntryMeta;
  value?: JsonValue;
  sealed?: SealedBox;
}

/** Files list() reads at once. */
const LIST_READERS = 8;

const META_FIELDS = ["protocol", "endpoint", "expiresAt", "kind"] as const;

function isMeta(m: unknown): m is EntryMeta {
  const o = m as Record<string, unknown> | null;
  if (typeof o !== "object" || o === null) return false;
  if (typeof o.obtainedAt !== "string" || typeof o.updatedAt !== "string") return false;
  return META_FIELDS.every((f) => o[f] === undefined || typeof o[f] === "string");
}

function parseRecord(text: string): DiskRecord | undefined {
  try {
    const r = JSON.parse(text) as Partial<DiskRecord> | null;
    if (typeof r !== "object" || r === null || r.format !== 1 || typeof r.key !== "string" || !isMeta(r.meta))
      return undefined;
    if (r.sealed !== undefined ? !isSealedBox(r.sealed) : r.value === undefined) return undefined;
    return r as DiskRecord;
  } catch {
    return undefined;
  }
}

/** Binds a sealed value to its key, so a file copied over another key's file fails to open. */
const aadFor = (key: string) => `entry:${key}`;

export class FileBackend implements StoreBackend {
  readonly kind = "file";
  readonly shared = false;
  private readonly dir: string;
  private readonly lock = new KeyLock();
  private readonly inFlight = new InFlight(() => this.describe());
  private readonly pruner = new TransientPruner(this);
  private cryptoKey?: Buffer;
  private opening?: Promise<void>;

  constructor(private readonly opts: FileBackendOptions) {
    if (!opts.directory) throw new StoreError("IO", "the file store needs a directory");
    if (opts.passphrase !== undefined && opts.passphrase.length === 0)
      throw new StoreError("WRONG_KEY", "encryption is on but the encryption key is empty");
    this.dir = resolve(opts.directory);
  }

  describe(): string {
    return `file ${this.dir}${this.opts.passphrase !== undefined ? " (encrypted)" : ""}`;
  }

  /**
   * Creates the directory, removes temp files of crashed writers and checks the encryption
   * key; entries are read only when asked for. Every operation waits for it; calling it
   * early reports problems at deploy. IO and READ_ONLY failures are retried by the next
   * call (a mount may come back); a wrong key is final.
   */
  open(): Promise<void> {
    if (this.inFlight.closed) return Promise.reject(this.inFlight.refusal());
    return this.ready();
  }

  /**
   * What open() does, for writes already accepted: a write that was under way when
   * close() was called completes (close waits for it) instead of failing here.
   */
  private ready(): Promise<void> {
    if (!this.opening) {
      const p = this.doOpen();
      this.opening = p;
      p.catch((err: unknown) => {
        const code = (err as StoreError).code;
        if (this.opening === p && (code === "IO" || code === "READ_ONLY")) this.opening = undefined;
      });
    }
    return this.opening;
  }

  async get(key: string): Promise<StoredEntry | undefined> {
    checkKey(key);
    await this.open();
    const rec = await this.readRecord(key);
    return rec && toEntry(key, rec.value, { ...rec.meta });
  }

  async set(key: string, value: JsonValue, meta?: EntryMetaInput): Promise<StoredEntry> {
    checkKey(key);
    const v = checkValue(value);
    const m = makeMeta(meta);
    return this.inFlight.run(() =>
      this.lock.run(key, async () => {
        await this.ready();
        // Reading first refuses to replace an entry we cannot read (corrupt, or sealed
        // under a key we do not have): nothing is overwritten that way.
        await this.readRecord(key);
        await this.write(key, v, m);
        return toEntry(key, v, { ...m });
      }),
    );
  }

  async delete(key: string): Promise<boolean> {
    checkKey(key);
    return this.inFlight.run(() =>
      this.lock.run(key, async () => {
        await this.ready();
        try {
          await unlink(this.pathFor(key));
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw ioError(err, `cannot delete "${key}"`);
          return false;
        }
        await fsyncDir(this.dir).catch((err: unknown) => {
          throw ioError(err, `cannot flush ${this.dir}`);
        });
        return true;
      }),
    );
  }

  async list(prefix = ""): Promise<EntrySummary[]> {
    await this.open();
    let names: string[];
    try {
      names = await readdir(this.dir);
    } catch (err) {
      throw ioError(err, `cannot read the store directory ${this.dir}`);
    }
    const wanted = names.filter((name) => {
      if (!isEntryFileName(name)) return false;
      const key = keyOfFileName(name);
      return key === undefined || key.startsWith(prefix);
    });
    const out: EntrySummary[] = [];
    // A few reads at a time: a large store is listed without a burst of open files.
    let next = 0;
    const reader = async () => {
      while (next < wanted.length) {
        const name = wanted[next++];
        // A corrupt file stays out of the list; get() of its key reports CORRUPT.
        const rec = await this.readDisk(join(this.dir, name)).catch(() => undefined);
        if (rec && rec.key.startsWith(prefix) && fileNameFor(rec.key) === name)
          out.push({ key: rec.key, meta: { ...rec.meta }, expired: isExpired(rec.meta) });
      }
    };
    await Promise.all(Array.from({ length: Math.min(LIST_READERS, wanted.length) }, reader));
    return out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }

  async update(key: string, fn: Parameters<StoreBackend["update"]>[1]): Promise<StoredEntry | undefined> {
    checkKey(key);
    return this.inFlight.run(() =>
      this.lock.run(key, async () => {
        await this.ready();
        const cur = await this.readRecord(key);
        const next = fn(cur && toEntry(key, cur.value, { ...cur.meta }));
        if (!next) return undefined;
        const v = checkValue(next.value);
        const m = makeMeta(next.meta);
        await this.write(key, v, m);
        return toEntry(key, v, { ...m });
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
   * One file per key: the changes are written one after the other (each atomic) under the
   * keys' locks, so no write of this process comes between; a crash in the middle can
   * leave some of them written.
   */
  async updateMany(
    keys: readonly string[],
    fn: ManyUpdate,
  ): Promise<Map<string, StoredEntry | undefined> | undefined> {
    return this.inFlight.run(async () => {
      await this.ready();
      return updateManyUnder(this.lock, keys, fn, {
        read: async (key) => {
          const rec = await this.readRecord(key);
          return rec && toEntry(key, rec.value, { ...rec.meta });
        },
        commit: async (changes) => {
          let deleted = false;
          for (const [key, c] of changes) {
            if (c !== null) {
              await this.write(key, c.value, c.meta);
              continue;
            }
            try {
              await unlink(this.pathFor(key));
              deleted = true;
            } catch (err) {
              if ((err as NodeJS.ErrnoException).code !== "ENOENT")
                throw ioError(err, `cannot delete "${key}"`);
            }
          }
          if (deleted)
            await fsyncDir(this.dir).catch((err: unknown) => {
              throw ioError(err, `cannot flush ${this.dir}`);
            });
        },
      });
    });
  }

  /** Waits for operations under way; later calls are refused. */
  async close(): Promise<void> {
    await this.pruner.idle();
    return this.inFlight.close();
  }

  private pathFor(key: string): string {
    return join(this.dir, fileNameFor(key));
  }

  private async doOpen(): Promise<void> {
    try {
      const created = await mkdir(this.dir, { recursive: true, mode: 0o700 });
      // The umask could have widened nothing but could have narrowed: set it exactly.
      if (created !== undefined) await chmod(this.dir, 0o700);
    } catch (err) {
      throw ioError(err, `cannot create the store directory ${this.dir}`);
    }
    let names: string[];
    try {
      names = await readdir(this.dir);
    } catch (err) {
      throw ioError(err, `cannot read the store directory ${this.dir}`);
    }
    await removeStaleTemps(this.dir, names);
    if (this.opts.passphrase !== undefined)
      this.cryptoKey = await openStoreKey(this.dir, this.opts.passphrase, this.opts.scryptN);
  }

  private async readDisk(path: string): Promise<DiskRecord | undefined> {
    let text: string;
    try {
      text = await readFile(path, "utf8");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      throw ioError(err, `cannot read ${path}`);
    }
    const rec = parseRecord(text);
    if (!rec) throw new StoreError("CORRUPT", `the entry file ${path} is damaged`);
    return rec;
  }

  private async readRecord(key: string): Promise<{ value: JsonValue; meta: EntryMeta } | undefined> {
    const rec = await this.readDisk(this.pathFor(key));
    if (!rec) return undefined;
    if (rec.key !== key) throw new StoreError("CORRUPT", `the entry file for "${key}" names another key`);
    if (!rec.sealed) return { value: rec.value as JsonValue, meta: rec.meta };
    if (!this.cryptoKey)
      throw new StoreError(
        "WRONG_KEY",
        `the entry "${key}" is encrypted and this store has no encryption key`,
      );
    const plain = unseal(this.cryptoKey, rec.sealed, aadFor(key));
    if (!plain) throw new StoreError("CORRUPT", `the entry "${key}" fails its integrity check`);
    try {
      return { value: JSON.parse(plain.toString("utf8")) as JsonValue, meta: rec.meta };
    } catch {
      throw new StoreError("CORRUPT", `the entry "${key}" does not decode`);
    }
  }

  private async write(key: string, value: JsonValue, meta: EntryMeta): Promise<void> {
    const rec: DiskRecord = { format: 1, key, meta };
    if (this.cryptoKey) rec.sealed = seal(this.cryptoKey, Buffer.from(JSON.stringify(value)), aadFor(key));
    else rec.value = value;
    try {
      await atomicWrite(this.pathFor(key), JSON.stringify(rec) + "\n");
    } catch (err) {
      throw ioError(err, `cannot write "${key}" in ${this.dir}`);
    }
  }
}
