/**
 * The PostgreSQL backend: one table per store (postgres-sql.ts), shared by every Node-RED
 * instance that opens the same database and namespace, so that several instances serve
 * one registry. What the other backends serialise inside one process holds here across
 * instances, by the database's own means:
 *
 * - update(): read, call fn, then write only if the row's version is still the one read
 *   (`UPDATE ... WHERE version = $n`, or `INSERT ... ON CONFLICT DO NOTHING` when it was
 *   absent); a lost race reads again and calls fn again, a bounded number of times
 *   (optimistic concurrency control, as HTTP's If-Match or etcd's compare-and-swap);
 * - createIfAbsent(), claimOnce(), count(): one statement each (INSERT ... ON CONFLICT);
 * - updateMany(): one transaction over the rows locked in key order (SELECT ... FOR
 *   UPDATE), run again after a unique violation (a row inserted meanwhile) or a deadlock.
 *
 * Values are sealed with the store's encryption when it is on (AES-256-GCM bound to the
 * key, as the file and journal backends do), so a database dump holds no token; the key
 * check lives in one header row. `pg` is loaded when the store opens, so a Node-RED that
 * never uses PostgreSQL never loads it. Dead connections (a server restart) are dropped by
 * pg.Pool and opened again by the next operation; until then operations fail with IO.
 */
import type { Pool, PoolClient, QueryResult } from "pg";
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
import { isSealedBox, seal, unseal } from "./crypto-box";
import { checkKey, checkValue, isExpired, makeMeta, toEntry } from "./entry";
import { InFlight } from "./in-flight";
import { KeyLock } from "./key-lock";
import {
  checkNamespace,
  checkPoolSize,
  describeConnection,
  poolConfig,
  readConnection,
  redact,
  type Connection,
  type PostgresBackendOptions,
} from "./postgres-config";
import { HEADER_KEY, isRetriable, likePrefix, pgFailure, storeSql, type StoreSql } from "./postgres-sql";
import {
  CLAIM_KIND,
  COUNT_KIND,
  checkKeys,
  checkTtl,
  entriesAfter,
  prepareChanges,
  type PreparedChange,
} from "./primitives";
import { keyFromHeader, newStoreHeader } from "./store-header";

export type { PostgresBackendOptions } from "./postgres-config";

/** Lost races update() and updateMany() take before they give up with IO. */
const MAX_RACES = 50;
/** Expired claims and counters deleted by one prune, and how often one runs per store. */
const PRUNE_LIMIT = 256;
const PRUNE_EVERY_MS = 60 * 1000;

interface Row {
  value: unknown;
  sealed: boolean;
  meta: unknown;
  version: string;
}

const META_FIELDS = ["protocol", "endpoint", "expiresAt", "kind"] as const;

function isMeta(m: unknown): m is EntryMeta {
  const o = m as Record<string, unknown> | null;
  if (typeof o !== "object" || o === null) return false;
  if (typeof o.obtainedAt !== "string" || typeof o.updatedAt !== "string") return false;
  return META_FIELDS.every((f) => o[f] === undefined || typeof o[f] === "string");
}

/** Binds a sealed value to its key, as file.ts and journal.ts do. */
const aadFor = (key: string) => `entry:${key}`;

/** A short pause that grows with the lost races, so two instances stop colliding in step. */
function backoff(attempt: number): Promise<void> {
  if (attempt < 2) return Promise.resolve();
  return new Promise((r) => setTimeout(r, Math.random() * Math.min(50, 2 ** attempt)));
}

/** The error fn of update()/updateMany() threw: passed on as it is, never retried or renamed. */
class FromCaller {
  constructor(readonly err: unknown) {}
}

export class PostgresBackend implements StoreBackend {
  readonly kind = "postgres";
  readonly shared = true;
  readonly namespace: string;
  private readonly conn: Connection;
  private readonly sql: StoreSql;
  private readonly lock = new KeyLock();
  private readonly inFlight = new InFlight(() => this.describe());
  private pool?: Pool;
  private cryptoKey?: Buffer;
  private opening?: Promise<void>;
  private lastPrune = 0;
  private pruning?: Promise<number>;
  /** The last failure of an idle connection (a server restart), for nothing but diagnosis. */
  lastIdleError?: string;

  constructor(private readonly opts: PostgresBackendOptions) {
    if (opts.passphrase !== undefined && opts.passphrase.length === 0)
      throw new StoreError("WRONG_KEY", "encryption is on but the encryption key is empty");
    this.namespace = checkNamespace(opts.namespace);
    this.conn = readConnection(opts);
    checkPoolSize(opts.poolSize);
    this.sql = storeSql(this.namespace);
  }

  describe(): string {
    return `${describeConnection(this.conn)} table ${this.namespace}${this.opts.passphrase !== undefined ? " (encrypted)" : ""}`;
  }

  /**
   * Connects, creates the table if absent and checks the encryption key. Every operation
   * waits for it; IO failures (server down) are tried again by the next call, a wrong key
   * is final.
   */
  open(): Promise<void> {
    if (this.inFlight.closed) return Promise.reject(this.inFlight.refusal());
    return this.ready();
  }

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
    return this.inFlight.run(async () => {
      await this.ready();
      const row = await this.readRow(key);
      return row && this.entryOf(key, row);
    });
  }

  async getMany(keys: readonly string[]): Promise<Map<string, StoredEntry | undefined>> {
    const sorted = checkKeys(keys);
    return this.inFlight.run(async () => {
      await this.ready();
      const r = await this.q(this.sql.getMany, [sorted], "cannot read entries");
      const rows = new Map((r.rows as (Row & { key: string })[]).map((row) => [row.key, row]));
      return new Map(
        sorted.map((k) => {
          const row = rows.get(k);
          return [k, row && this.entryOf(k, row)] as const;
        }),
      );
    });
  }

  async set(key: string, value: JsonValue, meta?: EntryMetaInput): Promise<StoredEntry> {
    checkKey(key);
    const v = checkValue(value);
    const m = makeMeta(meta);
    return this.inFlight.run(async () => {
      await this.ready();
      await this.q(this.sql.set, this.params(key, v, m), `cannot write "${key}"`);
      return toEntry(key, v, { ...m });
    });
  }

  async delete(key: string): Promise<boolean> {
    checkKey(key);
    return this.inFlight.run(async () => {
      await this.ready();
      const r = await this.q(this.sql.delete, [key], `cannot delete "${key}"`);
      return (r.rowCount ?? 0) > 0;
    });
  }

  async list(prefix = ""): Promise<EntrySummary[]> {
    return this.inFlight.run(async () => {
      await this.ready();
      const r = await this.q(this.sql.list, [likePrefix(prefix), HEADER_KEY], "cannot list the store");
      const out: EntrySummary[] = [];
      for (const row of r.rows as { key: string; meta: unknown }[]) {
        // A damaged row stays out of the list; get() of its key reports CORRUPT.
        if (isMeta(row.meta)) out.push({ key: row.key, meta: { ...row.meta }, expired: isExpired(row.meta) });
      }
      // The other backends' order (UTF-16 code units); "C" orders UTF-8 bytes.
      return out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    });
  }

  async update(key: string, fn: Parameters<StoreBackend["update"]>[1]): Promise<StoredEntry | undefined> {
    checkKey(key);
    return this.inFlight.run(() =>
      // The local lock leaves only other instances to race with.
      this.lock.run(key, async () => {
        await this.ready();
        for (let attempt = 0; ; attempt++) {
          const row = await this.readRow(key);
          const next = fn(row && this.entryOf(key, row));
          if (!next) return undefined;
          const v = checkValue(next.value);
          const m = makeMeta(next.meta);
          const r = row
            ? await this.q(
                this.sql.updateIfVersion,
                [...this.params(key, v, m), row.version],
                `cannot write "${key}"`,
              )
            : await this.q(this.sql.insertIfAbsent, this.params(key, v, m), `cannot write "${key}"`);
          if (r.rowCount === 1) return toEntry(key, v, { ...m });
          if (attempt >= MAX_RACES) throw this.tooManyRaces(key);
          await backoff(attempt);
        }
      }),
    );
  }

  async createIfAbsent(key: string, value: JsonValue, meta?: EntryMetaInput): Promise<CreateResult> {
    checkKey(key);
    const v = checkValue(value);
    const m = makeMeta(meta);
    return this.inFlight.run(async () => {
      await this.ready();
      for (let attempt = 0; ; attempt++) {
        const r = await this.q(this.sql.insertIfAbsent, this.params(key, v, m), `cannot write "${key}"`);
        if (r.rowCount === 1) return { created: true, entry: toEntry(key, v, { ...m }) };
        const row = await this.readRow(key);
        if (row) return { created: false, entry: this.entryOf(key, row) };
        // Deleted between the two statements: try again.
        if (attempt >= MAX_RACES) throw this.tooManyRaces(key);
      }
    });
  }

  async claimOnce(key: string, ttlMs: number): Promise<boolean> {
    checkKey(key);
    checkTtl("ttlMs", ttlMs);
    return this.inFlight.run(async () => {
      await this.ready();
      const now = new Date();
      const at = now.toISOString();
      const m = makeMeta(
        { obtainedAt: at, kind: CLAIM_KIND, expiresAt: new Date(now.getTime() + ttlMs).toISOString() },
        now,
      );
      const r = await this.q(
        this.sql.claim,
        [...this.params(key, { claimedAt: at }, m), at],
        `cannot claim "${key}"`,
      );
      this.maybePrune();
      return r.rowCount === 1;
    });
  }

  /**
   * The counter's value is `{ n, since }` in plain JSON even when values are sealed: a
   * number and a time are no secret, and so one statement counts on in the database.
   */
  async count(key: string, windowMs: number): Promise<number> {
    checkKey(key);
    checkTtl("windowMs", windowMs);
    return this.inFlight.run(async () => {
      await this.ready();
      const now = new Date();
      const at = now.toISOString();
      const end = new Date(now.getTime() + windowMs).toISOString();
      const meta = makeMeta({ obtainedAt: at, kind: COUNT_KIND, expiresAt: end }, now);
      const r = await this.q(
        this.sql.count,
        [key, JSON.stringify({ n: 1, since: at }), JSON.stringify(meta), end, at, at],
        `cannot count "${key}"`,
      );
      this.maybePrune();
      return Number((r.rows[0] as { n: string | number }).n);
    });
  }

  async updateMany(
    keys: readonly string[],
    fn: ManyUpdate,
  ): Promise<Map<string, StoredEntry | undefined> | undefined> {
    const sorted = checkKeys(keys);
    return this.inFlight.run(() =>
      this.lock.runMany(sorted, async () => {
        await this.ready();
        for (let attempt = 0; ; attempt++) {
          try {
            return await this.transaction((c) => this.manyOnce(c, sorted, fn));
          } catch (err) {
            if (err instanceof FromCaller) throw err.err;
            if (!isRetriable(err)) throw this.failure(err, "cannot change several keys at once");
            if (attempt >= MAX_RACES) throw this.tooManyRaces(sorted.join(", ").slice(0, 100));
            await backoff(attempt);
          }
        }
      }),
    );
  }

  /** Deletes up to `limit` expired claims and counters (never other entries); resolves with how many. */
  async pruneExpired(limit = PRUNE_LIMIT): Promise<number> {
    return this.inFlight.run(async () => {
      await this.ready();
      const r = await this.q(
        this.sql.prune,
        [new Date().toISOString(), limit],
        "cannot prune expired claims",
      );
      return r.rowCount ?? 0;
    });
  }

  /** Waits for operations under way and ends the pool; later calls are refused. */
  async close(): Promise<void> {
    await this.inFlight.close();
    await this.pruning;
    await this.opening?.catch(() => undefined);
    const pool = this.pool;
    this.pool = undefined;
    await pool?.end().catch(() => undefined);
  }

  // ---------------------------------------------------------------- internals

  private async doOpen(): Promise<void> {
    if (!this.pool) {
      // Loaded here, not at the top: only a store that uses PostgreSQL needs the driver.
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      const pg = require("pg") as typeof import("pg");
      const pool = new pg.Pool(poolConfig(this.conn, this.opts));
      // An idle connection that dies (the server restarted) must not take the process with
      // it: pg.Pool drops that client and emits "error", which without a listener throws.
      pool.on("error", (err) => {
        this.lastIdleError = redact(String(err?.message ?? err), this.opts, this.conn);
      });
      this.pool = pool;
    }
    await this.createTable();
    const header = await this.readHeader();
    if (this.opts.passphrase === undefined) {
      if (header !== undefined)
        throw new StoreError(
          "WRONG_KEY",
          `the store ${this.describe()} is encrypted and this store has no encryption key`,
        );
      return;
    }
    if (header === undefined) {
      const made = await newStoreHeader(this.opts.passphrase, this.opts.scryptN);
      const meta = makeMeta({ kind: "store-header" });
      const r = await this.q(
        this.sql.insertIfAbsent,
        [HEADER_KEY, JSON.stringify(made.header), false, JSON.stringify(meta), null],
        "cannot write the store header",
      );
      if (r.rowCount === 1) {
        this.cryptoKey = made.key;
        return;
      }
    }
    // Ours lost to another instance's, or it was there: open theirs.
    const stored = header ?? (await this.readHeader());
    this.cryptoKey = await keyFromHeader(
      stored,
      this.opts.passphrase,
      `row of ${this.namespace}`,
      this.describe(),
    );
  }

  private async readHeader(): Promise<unknown> {
    const r = await this.q(this.sql.get, [HEADER_KEY], "cannot read the store header");
    return r.rows.length > 0 ? (r.rows[0] as Row).value : undefined;
  }

  private async readRow(key: string): Promise<Row | undefined> {
    const r = await this.q(this.sql.get, [key], `cannot read "${key}"`);
    return r.rows[0] as Row | undefined;
  }

  private entryOf(key: string, row: Row): StoredEntry {
    if (!isMeta(row.meta)) throw new StoreError("CORRUPT", `the entry "${key}" has damaged metadata`);
    if (!row.sealed) return toEntry(key, row.value as JsonValue, { ...row.meta });
    if (!this.cryptoKey)
      throw new StoreError(
        "WRONG_KEY",
        `the entry "${key}" is encrypted and this store has no encryption key`,
      );
    const plain = isSealedBox(row.value) ? unseal(this.cryptoKey, row.value, aadFor(key)) : undefined;
    if (!plain) throw new StoreError("CORRUPT", `the entry "${key}" fails its integrity check`);
    try {
      return toEntry(key, JSON.parse(plain.toString("utf8")) as JsonValue, { ...row.meta });
    } catch {
      throw new StoreError("CORRUPT", `the entry "${key}" does not decode`);
    }
  }

  /** $1 key, $2 value (or its SealedBox) as JSON text, $3 sealed, $4 meta, $5 expires_at. */
  private params(key: string, value: JsonValue, meta: EntryMeta): unknown[] {
    return this.paramsOfText(key, JSON.stringify(value), meta);
  }

  /** params() from the value's JSON text (updateMany's prepared changes carry it). */
  private paramsOfText(key: string, text: string, meta: EntryMeta): unknown[] {
    const sealed = this.cryptoKey !== undefined;
    const stored = sealed
      ? JSON.stringify(seal(this.cryptoKey as Buffer, Buffer.from(text), aadFor(key)))
      : text;
    return [key, stored, sealed, JSON.stringify(meta), meta.expiresAt ?? null];
  }

  /**
   * Creates the table and its index once, whichever instance comes first. `CREATE ... IF NOT
   * EXISTS` is not safe against itself: two sessions running it at once can both pass the
   * existence check and the loser fails on the catalogue (23505 on pg_type's unique index,
   * 42710 "type already exists", 42P07), which is exactly what N instances started together
   * do. A transaction-scoped advisory lock keyed on the namespace serialises the DDL; the
   * lock ends with the transaction, so a crashed instance never leaves it held.
   * https://www.postgresql.org/docs/current/explicit-locking.html#ADVISORY-LOCKS
   */
  private async createTable(): Promise<void> {
    const pool = this.pool;
    if (!pool) throw this.inFlight.refusal();
    let what = "cannot create the store table";
    let client: PoolClient | undefined;
    let broken: unknown;
    const onError = (err: unknown) => {
      broken = err;
    };
    try {
      client = await checkOut(pool, onError);
      await client.query("BEGIN");
      await client.query("SELECT pg_advisory_xact_lock(hashtext($1))", [
        `node-red-contrib-provisioning:${this.namespace}`,
      ]);
      await client.query(this.sql.create);
      what = "cannot create the store index";
      await client.query(this.sql.index);
      await client.query("COMMIT");
    } catch (err) {
      await client?.query("ROLLBACK").catch(() => undefined);
      // Belt and braces: should another program create the same table without the lock,
      // the catalogue's "already there" means the table exists, which is all open needs.
      const code = (err as { code?: unknown }).code;
      if (code !== "23505" && code !== "42P07" && code !== "42710") {
        broken ??= err;
        throw this.failure(err, what);
      }
    } finally {
      client?.off("error", onError);
      client?.release(broken instanceof Error ? broken : broken !== undefined);
    }
  }

  private async q(text: string, values: unknown[], what: string): Promise<QueryResult> {
    const pool = this.pool;
    if (!pool) throw this.inFlight.refusal();
    try {
      return await pool.query(text, values);
    } catch (err) {
      throw this.failure(err, what);
    }
  }

  private failure(err: unknown, what: string): StoreError {
    return pgFailure(err, `${what} in ${this.describe()}`, (s) => redact(s, this.opts, this.conn));
  }

  private tooManyRaces(what: string): StoreError {
    return new StoreError(
      "IO",
      `"${what}" lost ${MAX_RACES} races in a row with other writers in ${this.describe()}`,
    );
  }

  /**
   * One client for a transaction. A client that fails while we hold it is destroyed
   * (release(err)), not given back; its "error" event is listened to meanwhile, as the
   * pool does for idle ones, so a dying connection never throws out of an emitter.
   */
  private async transaction<T>(work: (c: PoolClient) => Promise<T>): Promise<T> {
    const pool = this.pool;
    if (!pool) throw this.inFlight.refusal();
    let broken: unknown;
    const onError = (err: unknown) => {
      broken = err;
    };
    let client: PoolClient;
    try {
      client = await checkOut(pool, onError);
    } catch (err) {
      throw this.failure(err, "cannot connect");
    }
    try {
      await client.query("BEGIN");
      try {
        const out = await work(client);
        await client.query("COMMIT");
        return out;
      } catch (err) {
        await client.query("ROLLBACK").catch((e: unknown) => {
          broken = e;
        });
        throw err;
      }
    } catch (err) {
      if (!(err instanceof FromCaller) && !isRetriable(err)) broken ??= err;
      throw err;
    } finally {
      client.off("error", onError);
      client.release(broken instanceof Error ? broken : broken !== undefined);
    }
  }

  private async manyOnce(
    c: PoolClient,
    sorted: string[],
    fn: ManyUpdate,
  ): Promise<Map<string, StoredEntry | undefined> | undefined> {
    const locked = await c.query(this.sql.lockMany, [sorted]);
    const rows = new Map((locked.rows as (Row & { key: string })[]).map((r) => [r.key, r]));
    const current = new Map<string, StoredEntry | undefined>();
    for (const key of sorted) {
      const row = rows.get(key);
      current.set(key, row && this.entryOf(key, row));
    }
    let changes: Map<string, PreparedChange>;
    try {
      const answer = fn(current);
      if (answer === undefined) return undefined;
      changes = prepareChanges(sorted, answer);
    } catch (err) {
      throw new FromCaller(err);
    }
    for (const [key, change] of changes) {
      if (change === null) {
        if (rows.has(key)) await c.query(this.sql.delete, [key]);
        continue;
      }
      // An absent key gets a plain INSERT: another instance's row inserted meanwhile makes it
      // fail (23505), and the transaction runs again and sees that row.
      await c.query(
        rows.has(key) ? this.sql.updateByKey : this.sql.insertStrict,
        this.paramsOfText(key, change.text, change.meta),
      );
    }
    return entriesAfter(current, changes);
  }

  /** Now and then, after a claim or a count: one bounded prune in the background. */
  private maybePrune(): void {
    const now = Date.now();
    if (this.pruning || now - this.lastPrune < PRUNE_EVERY_MS) return;
    this.lastPrune = now;
    const p = this.q(this.sql.prune, [new Date(now).toISOString(), PRUNE_LIMIT], "cannot prune")
      .then((r) => r.rowCount ?? 0)
      .catch(() => 0);
    this.pruning = p;
    void p.finally(() => {
      if (this.pruning === p) this.pruning = undefined;
    });
  }
}

/**
 * A client from the pool with `onError` listening from the moment it is ours. pg-pool
 * takes its own listener off before it hands a client out, and its promise form resolves
 * a microtask later: an ErrorMessage parsed from the same chunk as the ReadyForQuery that
 * completed the connection (a server shutting down sends "terminating connection due to
 * unexpected postmaster exit" right behind it) is emitted in between, on a client nobody
 * listens to, and an "error" event without a listener throws out of the socket's handler.
 * The callback form runs synchronously inside that same handler, so the listener is there
 * first (pool.query() attaches its own the same way).
 */
function checkOut(pool: Pool, onError: (err: unknown) => void): Promise<PoolClient> {
  return new Promise((resolve, reject) => {
    pool.connect((err, client) => {
      if (err || !client) return reject(err ?? new Error("no client"));
      client.on("error", onError);
      resolve(client);
    });
  });
}
