/**
 * The token-file backend: the one plain access token that the Edge Gateway's Python
 * self-provisioning script (self_provisioning.py, for ThingsBoard) keeps, at the same path and read the same way, so a gateway that already has
 * a token keeps it and a token stored here is found by the old gateway.
 *
 * It holds ONE value, so the key is checked for form but otherwise ignored: get(any key)
 * returns `{ token }`, set(any key) replaces the token, list() names the entry "token".
 * Only the token text is written, so metadata given to set() is kept in memory for as
 * long as the file still holds that token; otherwise obtainedAt is the file's mtime.
 */
import { readFile, readdir, stat, unlink } from "node:fs/promises";
import { basename, dirname, resolve } from "node:path";
import {
  StoreError,
  type CreateResult,
  type EntryMeta,
  type EntryMetaInput,
  type EntrySummary,
  type JsonValue,
  type StoreBackend,
  type StoredEntry,
} from "./backend";
import { checkKey, checkValue, isExpired, makeMeta, toEntry } from "./entry";
import { InFlight } from "./in-flight";
import { KeyLock } from "./key-lock";
import { createIfAbsentVia } from "./primitives";
import { TEMP_MARK, atomicWrite, fsyncDir, ioError, removeStaleTemps } from "./fs-util";

export interface TokenFileOptions {
  /** The token file; empty means $THINGSBOARD_ACCESS_TOKEN, else ./tb_access_token. */
  path?: string;
  /** For tests; defaults to process.env and process.cwd(), as that script uses them. */
  env?: Record<string, string | undefined>;
  cwd?: string;
}

/** The name list() gives the single entry. */
export const TOKEN_ENTRY = "token";

/** The script's own lookup: `os.environ.get("THINGSBOARD_ACCESS_TOKEN") or "./tb_access_token"`. */
export function tokenFilePath(opts: TokenFileOptions = {}): string {
  const env = opts.env ?? process.env;
  const p = opts.path || env.THINGSBOARD_ACCESS_TOKEN || "./tb_access_token";
  return resolve(opts.cwd ?? process.cwd(), p);
}

const utf8 = new TextDecoder("utf-8", { fatal: true });

/**
 * What the script sees in the file: Python's text mode decodes UTF-8 and turns \r\n and \r
 * into \n; a token of 3 characters or fewer counts as no token.
 */
export function readSeedToken(bytes: Buffer): string | undefined {
  let text: string;
  try {
    text = utf8.decode(bytes);
  } catch {
    throw new StoreError("CORRUPT", "the token file is not UTF-8 text");
  }
  text = text.replace(/\r\n?/g, "\n");
  return [...text].length > 3 ? text : undefined;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** A string, `{ token }`, or a ProvisioningResult whose credentials.token is set. */
export function tokenFromValue(value: JsonValue): string {
  let token: unknown;
  if (typeof value === "string") token = value;
  else if (isObject(value) && typeof value.token === "string") token = value.token;
  else if (isObject(value) && isObject(value.credentials)) token = value.credentials.token;
  if (typeof token !== "string")
    throw new StoreError(
      "INVALID_VALUE",
      "the token file keeps an access token only: give a string, { token } or a result with credentials.token",
    );
  if ([...token].length <= 3)
    throw new StoreError("INVALID_VALUE", "a token of 3 characters or fewer would read back as no token");
  return token;
}

export class TokenFileBackend implements StoreBackend {
  readonly kind = "token-file";
  readonly shared = false;
  readonly path: string;
  private readonly lock = new KeyLock();
  private readonly inFlight = new InFlight(() => this.describe());
  /** Metadata of the token this process wrote last, while the file still holds it. */
  private remembered?: { token: string; meta: EntryMeta };
  private opening?: Promise<void>;

  constructor(opts: TokenFileOptions = {}) {
    this.path = tokenFilePath(opts);
  }

  describe(): string {
    return `token file ${this.path}`;
  }

  /** Removes temp files of a crashed writer; a missing token file is fine (no token yet). */
  open(): Promise<void> {
    if (this.inFlight.closed) return Promise.reject(this.inFlight.refusal());
    return this.ready();
  }

  /**
   * What open() does, for writes already accepted: a write that was under way when
   * close() was called completes (close waits for it) instead of failing here.
   */
  private ready(): Promise<void> {
    this.opening ??= (async () => {
      const dir = dirname(this.path);
      const names = await readdir(dir).catch(() => [] as string[]);
      await removeStaleTemps(dir, names, `${TEMP_MARK}${basename(this.path)}-`);
    })();
    return this.opening;
  }

  async get(key: string): Promise<StoredEntry | undefined> {
    checkKey(key);
    await this.open();
    const found = await this.read();
    return found && toEntry(key, { token: found.token }, found.meta);
  }

  async set(key: string, value: JsonValue, meta?: EntryMetaInput): Promise<StoredEntry> {
    checkKey(key);
    const token = tokenFromValue(checkValue(value));
    const m = makeMeta(meta);
    return this.inFlight.run(() => this.lock.run(TOKEN_ENTRY, () => this.write(key, token, m)));
  }

  async delete(key: string): Promise<boolean> {
    checkKey(key);
    return this.inFlight.run(() =>
      this.lock.run(TOKEN_ENTRY, async () => {
        await this.ready();
        const had = (await this.read()) !== undefined;
        try {
          await unlink(this.path);
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code === "ENOENT") return false;
          throw ioError(err, `cannot delete ${this.path}`);
        }
        this.remembered = undefined;
        await fsyncDir(dirname(this.path)).catch((err: unknown) => {
          throw ioError(err, `cannot flush ${dirname(this.path)}`);
        });
        return had;
      }),
    );
  }

  async list(prefix = ""): Promise<EntrySummary[]> {
    await this.open();
    const found = TOKEN_ENTRY.startsWith(prefix) ? await this.read() : undefined;
    return found ? [{ key: TOKEN_ENTRY, meta: found.meta, expired: isExpired(found.meta) }] : [];
  }

  async update(key: string, fn: Parameters<StoreBackend["update"]>[1]): Promise<StoredEntry | undefined> {
    checkKey(key);
    return this.inFlight.run(() =>
      this.lock.run(TOKEN_ENTRY, async () => {
        await this.ready();
        const found = await this.read();
        const next = fn(found && toEntry(key, { token: found.token }, found.meta));
        if (!next) return undefined;
        return this.write(key, tokenFromValue(checkValue(next.value)), makeMeta(next.meta));
      }),
    );
  }

  /** The one token, unless the file holds one already (any key names it). */
  createIfAbsent(key: string, value: JsonValue, meta?: EntryMetaInput): Promise<CreateResult> {
    return createIfAbsentVia((k, fn) => this.update(k, fn), key, value, meta);
  }

  /** The token file holds one token: there are no several keys to change together. */
  async updateMany(): Promise<never> {
    throw new StoreError("UNSUPPORTED", "the token file holds one token: updateMany needs another backend");
  }

  /** The token file holds one token: no claims beside it. */
  async claimOnce(): Promise<never> {
    throw new StoreError("UNSUPPORTED", "the token file holds one token: claims need another backend");
  }

  /** The token file holds one token: no counters beside it. */
  async count(): Promise<never> {
    throw new StoreError("UNSUPPORTED", "the token file holds one token: counters need another backend");
  }

  /** Waits for operations under way; later calls are refused. */
  close(): Promise<void> {
    return this.inFlight.close();
  }

  private async read(): Promise<{ token: string; meta: EntryMeta } | undefined> {
    let bytes: Buffer;
    let mtime: Date;
    try {
      bytes = await readFile(this.path);
      mtime = (await stat(this.path)).mtime;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      throw ioError(err, `cannot read ${this.path}`);
    }
    const token = readSeedToken(bytes);
    if (token === undefined) return undefined;
    if (this.remembered && this.remembered.token === token)
      return { token, meta: { ...this.remembered.meta } };
    const at = mtime.toISOString();
    return { token, meta: { obtainedAt: at, updatedAt: at, kind: "ACCESS_TOKEN" } };
  }

  private async write(key: string, token: string, meta: EntryMeta): Promise<StoredEntry> {
    await this.ready();
    try {
      // Exactly the token, no newline: what the script writes and reads back.
      await atomicWrite(this.path, token);
    } catch (err) {
      throw ioError(err, `cannot write ${this.path}`);
    }
    this.remembered = { token, meta };
    return toEntry(key, { token }, { ...meta });
  }
}
