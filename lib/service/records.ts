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
 * Exactly once, across every process over one store (N Node-RED instances on PostgreSQL,
 * or two registries over one backend in a redeploy): create-unless-present is one
 * backend.update() of the record's key, and a claim of index values is one
 * backend.updateMany() over the record, the index entries and the records that hold them
 * now, so the check "is the value held by a record that still holds it" and the writes of
 * the claims and of the record are one step (one PostgreSQL transaction over rows locked
 * in key order; the per-key locks of this process elsewhere). Two devices racing for one
 * value: one commits, the other sees the value held and is refused (taken).
 *
 * The crash order on backends that write the changes of one updateMany() one after the
 * other (the file backend, a file per key; the journal writes one batch, PostgreSQL one
 * transaction): the claims are written first, then the record, then the claims given up.
 * A crash in between leaves at worst an index entry whose owner does not hold the value:
 * stale, no one's for lookup(), and taken over by the next claim, which checks the
 * owner's record inside its own step. Never a record without its claims.
 *
 * Every failure is a ProvisioningError: INVALID (a malformed address or record),
 * CONFLICT (a value held by another record), NOT_FOUND, STORE (the backend failed).
 */

import { ProvisioningError } from "../model/errors";
import {
  StoreError,
  type EntryChange,
  type EntryMeta,
  type EntryMetaInput,
  type JsonValue,
  type StoreBackend,
  type StoredEntry,
} from "../stores/backend";
import { isWellFormed } from "../stores/entry";
import { sha256Hex } from "../util/sha256";

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

/** Lost races of one claim (the index changed between the read and the step) before STORE. */
const MAX_INDEX_RACES = 16;

function raced(): ProvisioningError {
  return new ProvisioningError("STORE", "the registry's index kept changing: too many writers at once");
}

/** The owner an index entry names; undefined for none or a malformed one. */
function ownerOf(e: StoredEntry | undefined): IndexOwner | undefined {
  const o = e?.value as Partial<IndexOwner> | null | undefined;
  return o && typeof o.group === "string" && typeof o.id === "string"
    ? { group: o.group, id: o.id }
    : undefined;
}

function sameOwner(a: IndexOwner | undefined, b: IndexOwner | undefined): boolean {
  return a === undefined || b === undefined ? a === b : a.group === b.group && a.id === b.id;
}

/** What claim() answers: a value held by another record (its holder), or fn's result. */
export type ClaimOutcome<T> = { taken: true; holder: RecordAddress } | { taken: false; result: T };

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
    return `${this.dialect}/#${index}/${sha256Hex(value)}`;
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
      // The first record keeps a value; a record that gave it up meanwhile keeps nothing.
      await this.claimOpen(index, valuesOf(rec), addr, (cur) =>
        cur !== undefined && JSON.stringify(cur) === JSON.stringify(rec)
          ? { next: cur, result: undefined }
          : { result: undefined },
      );
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
    await wrap(() => this.backend.update(key, update));
    if (!decided) throw new ProvisioningError("STORE", "the registry did not run the update");
    return result as T;
  }

  /** Create unless present: false (and nothing written) when the address holds a record. */
  async create(addr: RecordAddress, record: R): Promise<boolean> {
    return this.transact(addr, (cur) => (cur ? { result: false } : { next: record, result: true }));
  }

  /**
   * Removes a record and frees the index values it held, in one step: the record and its
   * index entries are one updateMany() (the record first, then the claims: a crash in
   * between leaves stale claims, which the next claim takes over). False when there was none.
   */
  async remove(addr: RecordAddress): Promise<boolean> {
    const key = this.key(addr);
    await this.open();
    for (let race = 0; race < MAX_INDEX_RACES; race++) {
      const before = await wrap(() => this.read(key));
      const held = before === undefined ? [] : this.indexKeysOf(before);
      let outcome: "gone" | "absent" | "changed" = "absent";
      await wrap(() =>
        this.backend.updateMany([key, ...held.map((h) => h.key)], (cur) => {
          const e = cur.get(key);
          if (!e) return ((outcome = "absent"), undefined);
          const now = this.recordOf(e);
          // The record changed since it was read: its index values may be others.
          if (JSON.stringify(now) !== JSON.stringify(before)) return ((outcome = "changed"), undefined);
          outcome = "gone";
          const changes = new Map<string, EntryChange>([[key, null]]);
          for (const h of held) if (sameOwner(ownerOf(cur.get(h.key)), addr)) changes.set(h.key, null);
          return changes;
        }),
      );
      const done = outcome as "gone" | "absent" | "changed";
      if (done !== "changed") return done === "gone";
    }
    throw raced();
  }

  /** The index entries a record holds by its indexes' own rules (not the caller-kept ones). */
  private indexKeysOf(rec: R): { index: string; value: string; key: string }[] {
    const out: { index: string; value: string; key: string }[] = [];
    for (const [index, valuesOf] of Object.entries(this.opts.indexes ?? {}))
      if (valuesOf)
        for (const value of new Set(valuesOf(rec)))
          out.push({ index, value, key: this.indexKey(index, value) });
    return out;
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
    return ownerOf(await this.backend.get(key));
  }

  /** Whether `rec` holds `value` in `index`: the caller's `holds`, else the index's own rule. */
  private holdsValue(
    index: string,
    rec: R | undefined,
    value: string,
    holds?: (record: R, value: string) => boolean,
  ): boolean {
    if (rec === undefined) return false; // an owner that cannot be read holds nothing
    if (holds) return holds(rec, value);
    const valuesOf = this.indexOf(index);
    // With no way to tell, a readable owner keeps its claim.
    return valuesOf ? valuesOf(rec).includes(value) : true;
  }

  /** The store key of an owner an index entry names; undefined when it cannot be one. */
  private ownerKey(o: IndexOwner): string | undefined {
    try {
      return this.key(o);
    } catch {
      return undefined;
    }
  }

  /**
   * A read-modify-write of the record at `owner` (as transact()) that holds the values
   * `values` in `index`, so no two records hold one value: one updateMany() over the
   * record, the index entries and the records that hold them now. When another record
   * holds one of the values (its index entry names it and its record still holds the
   * value, by `holds` when given: ThingsBoard checks each credential kind) the answer is
   * `taken`, with the holder, and `fn` is not called; otherwise `fn` sees the current
   * record, and when it returns `next` the claims and the record are written together,
   * claims first. `fn` may be called again after a lost race (PostgreSQL), so it must not
   * act outside its answer.
   */
  async claim<T>(
    index: string,
    values: string[],
    owner: RecordAddress,
    fn: (current: R | undefined) => { next?: R; result: T },
    holds?: (record: R, value: string) => boolean,
  ): Promise<ClaimOutcome<T>> {
    this.indexOf(index);
    this.key(owner);
    await this.open();
    return this.claimOpen(index, values, owner, fn, holds);
  }

  /** claim() once the registry is open (the migration claims through it while opening). */
  private async claimOpen<T>(
    index: string,
    values: string[],
    owner: RecordAddress,
    fn: (current: R | undefined) => { next?: R; result: T },
    holds?: (record: R, value: string) => boolean,
  ): Promise<ClaimOutcome<T>> {
    const recordKey = this.key(owner);
    const claims = [...new Set(values)].sort().map((value) => ({ value, key: this.indexKey(index, value) }));
    type Outcome =
      { kind: "changed" } | { kind: "taken"; holder: RecordAddress } | { kind: "done"; result: T };
    for (let race = 0; race < MAX_INDEX_RACES; race++) {
      // Who holds each value now: their records are read in the same step as the claim.
      const seen = new Map<string, IndexOwner | undefined>();
      for (const c of claims) seen.set(c.key, await wrap(() => this.ownerAt(c.key)));
      const holderKeys = new Set<string>();
      for (const o of seen.values()) {
        const k = o && !sameOwner(o, owner) ? this.ownerKey(o) : undefined;
        if (k !== undefined && k !== recordKey) holderKeys.add(k);
      }
      let outcome: Outcome = { kind: "changed" };
      await wrap(() =>
        this.backend.updateMany([recordKey, ...claims.map((c) => c.key), ...holderKeys], (cur) => {
          for (const c of claims)
            if (!sameOwner(ownerOf(cur.get(c.key)), seen.get(c.key))) {
              outcome = { kind: "changed" }; // claimed by another since it was read: again
              return undefined;
            }
          for (const c of claims) {
            const o = seen.get(c.key);
            if (!o || sameOwner(o, owner)) continue;
            const k = this.ownerKey(o);
            const e = k === undefined ? undefined : cur.get(k);
            if (this.holdsValue(index, e ? this.recordOf(e) : undefined, c.value, holds)) {
              outcome = { kind: "taken", holder: { group: o.group, id: o.id } };
              return undefined;
            }
          }
          const e = cur.get(recordKey);
          const out = fn(e ? this.recordOf(e) : undefined);
          outcome = { kind: "done", result: out.result };
          if (!out.next) return undefined;
          // Claims first, then the record: the crash order (see the file comment).
          const changes = new Map<string, EntryChange>();
          for (const c of claims)
            if (!sameOwner(seen.get(c.key), owner))
              changes.set(c.key, {
                value: { group: owner.group, id: owner.id },
                meta: this.indexMeta(index),
              });
          changes.set(recordKey, { value: out.next as unknown as JsonValue, meta: this.metaOf(out.next) });
          return changes;
        }),
      );
      const done = outcome as Outcome;
      if (done.kind === "taken") return { taken: true, holder: done.holder };
      if (done.kind === "done") return { taken: false, result: done.result };
    }
    throw raced();
  }

  /**
   * Forgets claims of `values` that `owner` holds (a record that gave them up): each
   * index entry is deleted only if it names `owner` and, for an index with its own rule,
   * only if the owner's record (read in the same step) no longer holds the value.
   */
  async release(index: string, values: string[], owner: RecordAddress): Promise<void> {
    const valuesOf = this.indexOf(index);
    const recordKey = this.key(owner);
    await this.open();
    for (const v of new Set(values)) {
      const key = this.indexKey(index, v);
      await wrap(() =>
        this.backend.updateMany([key, recordKey], (cur) => {
          if (!sameOwner(ownerOf(cur.get(key)), owner)) return undefined;
          const e = cur.get(recordKey);
          const rec = e ? this.recordOf(e) : undefined;
          if (valuesOf && rec !== undefined && valuesOf(rec).includes(v)) return undefined;
          return new Map([[key, null]]);
        }),
      );
    }
  }

  private indexMeta(index: string): EntryMetaInput {
    return { kind: `index:${index}`, protocol: this.protocol };
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
