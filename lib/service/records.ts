/**
 * One registry of records of one serving dialect, kept in a StoreBackend so that it
 * survives restarts and redeploys. ThingsBoard's devices (lib/service/registry.ts),
 * Mainflux's bootstrap configurations (lib/dialects/mainflux/registry.ts) and plgd's
 * devices are each one `Records` with their own uniqueness rules:
 *
 * - a record has an address: a group (a ThingsBoard profile, "config" for Mainflux) and
 *   an id unique in that group (a device name, an external id). Its store key is
 *   `<dialect id>/<group, percent-encoded>/<id as given>`, so one key holds one record and
 *   "create unless present" is one backend.update() (the per-key read-modify-write);
 * - a unique secondary index (ThingsBoard's credentials, Mainflux's thing id) keeps one
 *   entry per value under `<dialect id>/#<index>/<SHA-256 of the value>`: hashed, because
 *   the value can be a secret (an access token) and keys show in file names and listings.
 *   A percent-encoded group never holds "#", so index entries and records never meet;
 * - listing reads entry metadata only (never a value, so never a secret).
 *
 * Claims of one index value are serialised across every Records over one backend (two
 * serving nodes, or a node redeployed while its old instance finishes), and follow the
 * order that keeps a crash harmless: the claim is written first, then the record is
 * committed; a claim whose owner does not hold the value (a crash in between, a record
 * changed since) is stale and taken over by the next claim.
 *
 * Every failure is a ProvisioningError: INVALID (a malformed address or record),
 * CONFLICT (a value held by another record), NOT_FOUND, STORE (the backend failed).
 */

import { createHash } from "node:crypto";
import { ProvisioningError } from "../model/errors";
import {
  StoreError,
  type EntryMeta,
  type EntryMetaInput,
  type JsonValue,
  type StoreBackend,
  type StoredEntry,
} from "../stores/backend";
import { isWellFormed } from "../stores/entry";
import { KeyLock } from "../stores/key-lock";

export interface RecordAddress {
  group: string;
  id: string;
}

/** What listing shows: the address and the entry's metadata, never the value. */
export interface RecordSummary {
  group: string;
  id: string;
  /** meta.kind: the record's state in the dialect's words ("provisioned"). */
  kind?: string;
  obtainedAt: string;
  updatedAt: string;
  expired: boolean;
}

/**
 * An older key layout to move from when the registry opens: every key `from + rest`
 * moves to `to(rest)` (default `<dialect id>/` + rest: the group and id kept as they were
 * written), its value through `value` (default unchanged; undefined drops the entry).
 */
export interface LegacyLayout {
  from: string;
  to?: (rest: string) => string;
  value?: (old: JsonValue) => JsonValue | undefined;
}

export interface RecordsOptions<R> {
  /** The dialect id, first segment of every key: "thingsboard", "mainflux", "plgd-dps". */
  dialect: string;
  /** Written into entry metadata, for people browsing the store; default the dialect id. */
  protocol?: string;
  /** meta.kind and meta.obtainedAt of a record, shown by list(). */
  metaOf?: (record: R) => { kind?: string; obtainedAt?: string; expiresAt?: string };
  /**
   * Unique secondary indexes: index name -> the values a record holds in it; null when
   * only the caller knows them (then claim() takes `holds`, and remove() does not free
   * them: the caller calls release()).
   */
  indexes?: Record<string, ((record: R) => string[]) | null>;
  /** Checks a record read from the store; a record that fails is treated as absent. */
  isRecord?: (v: unknown) => v is R;
  /** Words for error messages: "a profile name", "a device name". */
  words?: { group: string; id: string };
  /**
   * Longest `<encoded group>/<id>`. 197 by default: what fitted under ThingsBoard's old
   * `tb/` prefix in a 200-character store key still fits.
   */
  maxAddressLength?: number;
  legacy?: LegacyLayout[];
}

/** Who holds an index value: the index entry's value. */
interface IndexOwner {
  group: string;
  id: string;
}

const CONTROL = /[\u0000-\u001f\u007f]/; // eslint-disable-line no-control-regex

/** One lock per backend for index claims, shared by every Records over it. */
const claimLocks = new WeakMap<StoreBackend, KeyLock>();
function claimLock(backend: StoreBackend): KeyLock {
  let lock = claimLocks.get(backend);
  if (!lock) claimLocks.set(backend, (lock = new KeyLock()));
  return lock;
}

/**
 * A claim not written yet: a backend with updateWith() writes it with its owner's record,
 * ahead of it in one batch (claim first, as the crash order wants, and one fsync for both).
 */
interface DeferredClaim {
  key: string;
  value: JsonValue;
  meta: EntryMetaInput;
  /** Set once a write of the owner's record carried it to the store. */
  written: boolean;
}

/** Claims waiting for their owner's record, per backend and record key, shared by every Records over it. */
const deferredClaims = new WeakMap<StoreBackend, Map<string, DeferredClaim[]>>();
function deferredOf(backend: StoreBackend): Map<string, DeferredClaim[]> {
  let m = deferredClaims.get(backend);
  if (!m) deferredClaims.set(backend, (m = new Map()));
  return m;
}

/**
 * One migration per backend and dialect at a time, and once per backend: two registries
 * opened over one store (a redeploy) must not move the same keys twice at once.
 */
const migrations = new WeakMap<StoreBackend, Map<string, Promise<void>>>();

export function invalid(message: string): ProvisioningError {
  return new ProvisioningError("INVALID", message);
}

/** A store failure as STORE (INVALID for a key the store refuses); ours pass through. */
export function storeFailure(err: unknown): ProvisioningError {
  if (err instanceof ProvisioningError) return err;
  if (err instanceof StoreError && err.code === "INVALID_KEY") return invalid(err.message);
  const code = (err as { code?: unknown } | null)?.code;
  const msg = err instanceof Error ? err.message : String(err);
  return new ProvisioningError("STORE", msg, {
    cause: err,
    status: typeof code === "string" ? code : undefined,
  });
}

async function wrap<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw storeFailure(err);
  }
}

export class Records<R> {
  readonly dialect: string;
  private readonly protocol: string;
  private readonly words: { group: string; id: string };
  private readonly maxAddress: number;
  private opened: Promise<void> | undefined;

  constructor(
    readonly backend: StoreBackend,
    private readonly opts: RecordsOptions<R>,
  ) {
    if (!/^[a-z0-9][a-z0-9-]*$/.test(opts.dialect)) throw invalid(`"${opts.dialect}" is not a dialect id`);
    this.dialect = opts.dialect;
    this.protocol = opts.protocol ?? opts.dialect;
    this.words = opts.words ?? { group: "a group", id: "an id" };
    this.maxAddress = opts.maxAddressLength ?? 197;
  }

  /** The store key of one record; throws INVALID for an address that cannot be one. */
  key(addr: RecordAddress): string {
    const { group, id } = addr;
    const w = this.words;
    if (typeof group !== "string" || group.length === 0) throw invalid(`${w.group} is required`);
    if (typeof id !== "string" || id.length === 0) throw invalid(`${w.id} is required`);
    // A lone surrogate cannot be stored apart from U+FFFD (see isWellFormed), so it is refused.
    if (!isWellFormed(group))
      throw invalid(`${w.group} must be well-formed Unicode (it holds a lone surrogate)`);
    if (!isWellFormed(id)) throw invalid(`${w.id} must be well-formed Unicode (it holds a lone surrogate)`);
    if (CONTROL.test(id)) throw invalid(`${w.id} may not hold control characters`);
    const address = `${encodeURIComponent(group)}/${id}`;
    if (address.length > this.maxAddress) throw invalid(`${w.id} is too long`);
    return `${this.dialect}/${address}`;
  }

  /** The head of every key of one group, or of the whole registry. */
  private head(group?: string): string {
    return group === undefined ? `${this.dialect}/` : `${this.dialect}/${encodeURIComponent(group)}/`;
  }

  /** The address a record key names; undefined for an index entry or a foreign key. */
  addressOf(key: string): RecordAddress | undefined {
    if (!key.startsWith(`${this.dialect}/`)) return undefined;
    const rest = key.slice(this.dialect.length + 1);
    if (rest.startsWith("#")) return undefined;
    const slash = rest.indexOf("/");
    if (slash <= 0 || slash === rest.length - 1) return undefined;
    try {
      return { group: decodeURIComponent(rest.slice(0, slash)), id: rest.slice(slash + 1) };
    } catch {
      return undefined;
    }
  }

  indexKey(index: string, value: string): string {
    return `${this.dialect}/#${index}/${createHash("sha256").update(value, "utf8").digest("hex")}`;
  }

  /**
   * Moves entries of older layouts to this one (see LegacyLayout). Every operation waits
   * for it; safe to call again. Idempotent and resumable: each record is copied unless its
   * new key holds one already, every record is indexed, and only then are the old keys
   * removed, so a crash at any point leaves old keys that the next open moves again.
   */
  open(): Promise<void> {
    this.opened ??= this.migrate().catch((err) => {
      this.opened = undefined; // the next operation tries again
      throw storeFailure(err);
    });
    return this.opened;
  }

  private migrate(): Promise<void> {
    const legacy = this.opts.legacy ?? [];
    if (legacy.length === 0) return Promise.resolve();
    let perBackend = migrations.get(this.backend);
    if (!perBackend) migrations.set(this.backend, (perBackend = new Map()));
    const running = perBackend.get(this.dialect);
    if (running) return running;
    const job = this.runMigration(legacy).finally(() => {
      if (perBackend.get(this.dialect) === job) perBackend.delete(this.dialect);
    });
    perBackend.set(this.dialect, job);
    return job;
  }

  private async runMigration(legacy: LegacyLayout[]): Promise<void> {
    const moves: { from: string; to: string; layout: LegacyLayout }[] = [];
    // Only the old layouts' keys are read: a store of the current layout opens without
    // reading its records.
    for (const layout of legacy)
      for (const e of await this.backend.list(layout.from)) {
        if (legacy.find((l) => e.key.startsWith(l.from)) !== layout) continue;
        const rest = e.key.slice(layout.from.length);
        moves.push({ from: e.key, to: layout.to ? layout.to(rest) : `${this.dialect}/${rest}`, layout });
      }
    if (moves.length === 0) return;
    for (const m of moves) {
      const old = await this.backend.get(m.from);
      if (!old) continue;
      const value = m.layout.value ? m.layout.value(old.value) : old.value;
      if (value === undefined) continue;
      // A record gets the metadata this registry writes (list() reads it); others keep theirs.
      let meta = metaInputOf(old.meta);
      const rec = this.addressOf(m.to) ? this.recordOf({ ...old, value }) : undefined;
      if (rec !== undefined) meta = { ...meta, ...this.metaOf(rec) };
      await this.backend.update(m.to, (cur) => (cur ? undefined : { value, meta }));
    }
    // Indexes the old layout did not keep are built from the records before anything old goes.
    if (Object.values(this.opts.indexes ?? {}).some((f) => f))
      for (const e of await this.backend.list(`${this.dialect}/`)) {
        const addr = this.addressOf(e.key);
        if (!addr) continue;
        const rec = await this.read(e.key);
        if (rec !== undefined) await this.indexRecord(addr, rec);
      }
    for (const m of moves) await this.backend.delete(m.from);
  }

  /** Claims, during migration, every index value a record holds that no one else holds. */
  private async indexRecord(addr: RecordAddress, rec: R): Promise<void> {
    for (const [index, valuesOf] of Object.entries(this.opts.indexes ?? {})) {
      if (!valuesOf) continue;
      for (const v of new Set(valuesOf(rec))) {
        const key = this.indexKey(index, v);
        await claimLock(this.backend).run(key, async () => {
          const owner = await this.ownerAt(key);
          if (
            owner &&
            !(owner.group === addr.group && owner.id === addr.id) &&
            (await this.holds(index, owner, v))
          )
            return; // the first record keeps it
          if (!owner || owner.group !== addr.group || owner.id !== addr.id)
            await this.backend.set(key, { group: addr.group, id: addr.id }, this.indexMeta(index));
        });
      }
    }
  }

  private async read(key: string): Promise<R | undefined> {
    const e = await this.backend.get(key);
    return e ? this.recordOf(e) : undefined;
  }

  private recordOf(e: StoredEntry): R | undefined {
    const v = e.value as unknown;
    if (this.opts.isRecord && !this.opts.isRecord(v)) return undefined;
    return v as R;
  }

  async get(addr: RecordAddress): Promise<R | undefined> {
    const key = this.key(addr);
    await this.open();
    return wrap(() => this.read(key));
  }

  /**
   * Read-modify-write of one record, serialised per key by the backend. `fn` sees the
   * current record and returns the new one (or none to leave it) and a result to hand
   * back. It must not write index entries itself: claim() around it does.
   */
  async transact<T>(
    addr: RecordAddress,
    fn: (current: R | undefined) => { next?: R; result: T },
  ): Promise<T> {
    const key = this.key(addr);
    await this.open();
    let result: T | undefined;
    let decided = false;
    const update = (cur: StoredEntry | undefined) => {
      const out = fn(cur ? this.recordOf(cur) : undefined);
      result = out.result;
      decided = true;
      return out.next ? { value: out.next as unknown as JsonValue, meta: this.metaOf(out.next) } : undefined;
    };
    const deferred = deferredOf(this.backend);
    if (this.backend.updateWith && deferred.has(key)) {
      // Claims made for this record go to the store with it, ahead of it.
      let carried: DeferredClaim[] = [];
      const take = () => {
        carried = (deferred.get(key) ?? []).filter((c) => !c.written);
        deferred.delete(key);
        return carried.map((c) => ({ key: c.key, value: c.value, meta: c.meta }));
      };
      try {
        await wrap(() =>
          (this.backend.updateWith as NonNullable<StoreBackend["updateWith"]>)(key, update, take),
        );
      } catch (err) {
        // Not written: they wait for the next write of this record (or their claim's end).
        if (carried.length > 0) deferred.set(key, [...carried, ...(deferred.get(key) ?? [])]);
        throw err;
      }
      for (const c of carried) c.written = true;
    } else await wrap(() => this.backend.update(key, update));
    if (!decided) throw new ProvisioningError("STORE", "the registry did not run the update");
    return result as T;
  }

  /** Create unless present: false (and nothing written) when the address holds a record. */
  async create(addr: RecordAddress, record: R): Promise<boolean> {
    return this.transact(addr, (cur) => (cur ? { result: false } : { next: record, result: true }));
  }

  /** Removes a record and frees the index values it held; false when there was none. */
  async remove(addr: RecordAddress): Promise<boolean> {
    const key = this.key(addr);
    await this.open();
    const before = await wrap(() => this.read(key));
    const gone = await wrap(() => this.backend.delete(key));
    if (before !== undefined)
      for (const [index, valuesOf] of Object.entries(this.opts.indexes ?? {}))
        if (valuesOf) await this.release(index, valuesOf(before), addr);
    return gone;
  }

  /** Lists records from entry metadata only: no value (and so no secret) is read. */
  async list(group?: string): Promise<RecordSummary[]> {
    await this.open();
    const head = this.head(group);
    const all = await wrap(() => this.backend.list(head));
    const out: RecordSummary[] = [];
    for (const e of all) {
      if (!e.key.startsWith(head)) continue;
      const addr = this.addressOf(e.key);
      if (!addr) continue;
      const s: RecordSummary = {
        group: addr.group,
        id: addr.id,
        obtainedAt: e.meta.obtainedAt,
        updatedAt: e.meta.updatedAt,
        expired: e.expired,
      };
      if (e.meta.kind !== undefined) s.kind = e.meta.kind;
      out.push(s);
    }
    return out.sort((a, b) => (a.group + "/" + a.id).localeCompare(b.group + "/" + b.id));
  }

  /** The record that holds `value` in `index`, if one does (a stale entry is no one's). */
  async lookup(index: string, value: string): Promise<{ address: RecordAddress; record: R } | undefined> {
    this.indexOf(index);
    await this.open();
    const owner = await wrap(() => this.ownerAt(this.indexKey(index, value)));
    if (!owner) return undefined;
    const record = await this.get(owner).catch(() => undefined);
    const valuesOf = this.indexOf(index);
    if (record === undefined || (valuesOf && !valuesOf(record).includes(value))) return undefined;
    return { address: owner, record };
  }

  private indexOf(index: string): ((record: R) => string[]) | null {
    const f = this.opts.indexes?.[index];
    if (f === undefined) throw new ProvisioningError("INTERNAL", `the registry has no index "${index}"`);
    return f;
  }

  private async ownerAt(key: string): Promise<IndexOwner | undefined> {
    const e = await this.backend.get(key);
    const o = e?.value as Partial<IndexOwner> | undefined;
    return o && typeof o.group === "string" && typeof o.id === "string"
      ? { group: o.group, id: o.id }
      : undefined;
  }

  private async holds(
    index: string,
    owner: RecordAddress,
    value: string,
    holds?: (record: R, value: string) => boolean,
  ): Promise<boolean> {
    let rec: R | undefined;
    try {
      rec = await this.read(this.key(owner));
    } catch {
      rec = undefined; // an owner that cannot be read does not hold anything
    }
    if (rec === undefined) return false;
    if (holds) return holds(rec, value);
    const valuesOf = this.indexOf(index);
    // With no way to tell, a readable owner keeps its claim.
    return valuesOf ? valuesOf(rec).includes(value) : true;
  }

  /**
   * Runs `fn` holding the claims of `values` in `index` for the record at `owner`, so no
   * two records hold one value. Claims of one value are serialised across every Records
   * over this backend; each claim is written before `fn` commits the record; `fn` returns
   * `keep: false` when it stored nothing, and the claims made for it are undone. Resolves
   * `taken` (with the holder) when another record holds one of the values. `holds`
   * overrides what the index says a record holds (ThingsBoard checks each credential kind).
   */
  async claim<T>(
    index: string,
    values: string[],
    owner: RecordAddress,
    fn: () => Promise<{ keep: boolean; result: T }>,
    holds?: (record: R, value: string) => boolean,
  ): Promise<{ taken: true; holder: RecordAddress } | { taken: false; result: T }> {
    this.indexOf(index);
    this.key(owner);
    await this.open();
    const unique = [...new Set(values)].sort();
    const lock = claimLock(this.backend);
    // With updateWith() the claims wait for the owner's record and are written with it,
    // ahead of it (fn writes it through transact()); otherwise each is written first.
    const ownerKey = this.key(owner);
    const defer = this.backend.updateWith !== undefined;
    const deferred = deferredOf(this.backend);
    const mineDeferred: DeferredClaim[] = [];
    const forget = (c: DeferredClaim) => {
      const list = deferred.get(ownerKey);
      const at = list ? list.indexOf(c) : -1;
      if (!list || at < 0) return;
      list.splice(at, 1);
      if (list.length === 0) deferred.delete(ownerKey);
    };
    type Inner = { taken: true; holder: RecordAddress } | { taken: false; result: T; keep: boolean };
    const run = async (i: number): Promise<Inner> => {
      if (i === unique.length) {
        const done = await fn();
        // A record written some other way than transact(): its claims are written now.
        if (done.keep)
          for (const c of mineDeferred)
            if (!c.written) {
              forget(c);
              await wrap(() => this.backend.set(c.key, c.value, c.meta));
              c.written = true;
            }
        return { taken: false, ...done };
      }
      const key = this.indexKey(index, unique[i]);
      return lock.run(key, async (): Promise<Inner> => {
        const cur = await wrap(() => this.backend.get(key));
        const o = cur ? await wrap(() => this.ownerAt(key)) : undefined;
        const mine = o !== undefined && o.group === owner.group && o.id === owner.id;
        if (o && !mine && (await this.holds(index, o, unique[i], holds))) return { taken: true, holder: o };
        let later: DeferredClaim | undefined;
        if (!mine) {
          const value = { group: owner.group, id: owner.id };
          if (defer) {
            later = { key, value, meta: this.indexMeta(index), written: false };
            mineDeferred.push(later);
            const list = deferred.get(ownerKey);
            if (list) list.push(later);
            else deferred.set(ownerKey, [later]);
          } else await wrap(() => this.backend.set(key, value, this.indexMeta(index)));
        }
        // Undone only once written: a claim still waiting is simply dropped.
        const undo = async () => {
          if (later && !later.written) forget(later);
          else await this.undoClaim(index, key, cur);
        };
        let inner: Inner;
        try {
          inner = await run(i + 1);
        } catch (err) {
          if (!mine) await undo();
          throw err;
        }
        if (!mine && (inner.taken || !inner.keep)) await undo();
        return inner;
      });
    };
    const out = await run(0);
    return out.taken ? out : { taken: false, result: out.result };
  }

  /** Forgets claims of `values` that `owner` holds (a record that gave them up). */
  async release(index: string, values: string[], owner: RecordAddress): Promise<void> {
    this.indexOf(index);
    await this.open();
    const lock = claimLock(this.backend);
    for (const v of new Set(values)) {
      const key = this.indexKey(index, v);
      await lock.run(key, async () => {
        const o = await wrap(() => this.ownerAt(key));
        if (o && o.group === owner.group && o.id === owner.id) await wrap(() => this.backend.delete(key));
      });
    }
  }

  private indexMeta(index: string): EntryMetaInput {
    return { kind: `index:${index}`, protocol: this.protocol };
  }

  private async undoClaim(
    index: string,
    key: string,
    before: { value: JsonValue } | undefined,
  ): Promise<void> {
    await wrap(async () => {
      if (before) await this.backend.set(key, before.value, this.indexMeta(index));
      else await this.backend.delete(key);
    }).catch(() => undefined);
  }

  private metaOf(record: R): EntryMetaInput {
    const m = this.opts.metaOf?.(record) ?? {};
    const out: EntryMetaInput = { protocol: this.protocol };
    if (m.kind !== undefined) out.kind = m.kind;
    if (m.obtainedAt !== undefined) out.obtainedAt = m.obtainedAt;
    if (m.expiresAt !== undefined) out.expiresAt = m.expiresAt;
    return out;
  }
}

function metaInputOf(meta: EntryMeta): EntryMetaInput {
  const out: EntryMetaInput = { obtainedAt: meta.obtainedAt };
  if (meta.protocol !== undefined) out.protocol = meta.protocol;
  if (meta.endpoint !== undefined) out.endpoint = meta.endpoint;
  if (meta.expiresAt !== undefined) out.expiresAt = meta.expiresAt;
  if (meta.kind !== undefined) out.kind = meta.kind;
  return out;
}
