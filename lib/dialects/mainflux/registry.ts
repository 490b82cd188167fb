/**
 * The serving side's configurations: one Records (lib/service/records.ts) over the
 * credential store, one entry per external id under `mainflux/config/<external id>` (the
 * bootstrap request looks them up by it: one read per request). Management addresses
 * them by thing id, as upstream's bootstrap service does (mainflux/mainflux,
 * bootstrap/service.go), through a unique index of thing ids kept in the store: an
 * external id and a thing id each belong to one configuration. Entries of the earlier
 * layout (`mainflux-bootstrap/<external id>`) are moved on open.
 */
import { randomUUID } from "node:crypto";
import { ProvisioningError } from "../../model/errors";
import type { StoreBackend } from "../../stores/backend";
import { Records, invalid, type RecordAddress } from "../../service/records";
import type { Channel } from "./wire";

export interface StoredConfig {
  external_id: string;
  external_key: string;
  thing_id: string;
  thing_key: string;
  name?: string;
  channels: Channel[];
  content?: string;
  client_cert?: string;
  client_key?: string;
  ca_cert?: string;
  /** 1 connected, 0 disconnected; upstream still answers bootstrap requests in either. */
  state: 0 | 1;
  created_at: string;
  updated_at: string;
  /**
   * Set when a node's dialog made this configuration (its initial configuration), so the
   * node can find and replace it when the dialog changes. Never shown to management.
   */
  owner?: string;
}

/** What a dialog's initial configuration did to the registry. */
export interface OwnedPut {
  saved: StoredConfig;
  /** Configurations the same owner had made under other external ids, now gone. */
  removed: StoredConfig[];
}

/** What listing shows: never a key. */
export interface ConfigSummary {
  external_id: string;
  thing_id: string;
  name?: string;
  state: 0 | 1;
  channels: string[];
  has_client_cert: boolean;
  updated_at: string;
}

const MAX_ID = 150;
const MAX_SECRET = 1024;
const MAX_CHANNELS = 1000;
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f]/;

function idOf(v: unknown, what: string, required: boolean): string | undefined {
  if (v === undefined || v === null || v === "") {
    if (required) throw invalid(`${what} is required`);
    return undefined;
  }
  if (typeof v !== "string") throw invalid(`${what} must be a string`);
  if (v.length > MAX_ID) throw invalid(`${what} may be at most ${MAX_ID} characters long`);
  if (CONTROL.test(v)) throw invalid(`${what} may not hold control characters`);
  if (/\p{Cs}/u.test(v)) throw invalid(`${what} must be well-formed Unicode (it holds a lone surrogate)`);
  return v;
}

function secretOf(v: unknown, what: string, required: boolean): string | undefined {
  if (v === undefined || v === null || v === "") {
    if (required) throw invalid(`${what} is required`);
    return undefined;
  }
  if (typeof v !== "string") throw invalid(`${what} must be a string`);
  if (v.length > MAX_SECRET) throw invalid(`${what} may be at most ${MAX_SECRET} characters long`);
  return v;
}

function textOf(v: unknown, what: string): string | undefined {
  if (v === undefined || v === null || v === "") return undefined;
  if (typeof v !== "string") throw invalid(`${what} must be a string`);
  return v;
}

/** `content` is a string upstream; an object given by a flow is kept as its JSON. */
function contentOf(v: unknown): string | undefined {
  if (v === undefined || v === null || v === "") return undefined;
  if (typeof v === "string") return v;
  try {
    return JSON.stringify(v);
  } catch {
    throw invalid("content cannot be written as JSON");
  }
}

export function channelsOf(v: unknown): Channel[] {
  if (v === undefined || v === null) return [];
  const list = typeof v === "string" ? v.split(/[\s,]+/).filter((s) => s.length > 0) : v;
  if (!Array.isArray(list)) throw invalid("channels must be a list");
  if (list.length > MAX_CHANNELS) throw invalid(`at most ${MAX_CHANNELS} channels`);
  return list.map((c): Channel => {
    if (typeof c === "string") return { id: idOf(c, "a channel id", true) as string };
    if (typeof c !== "object" || c === null) throw invalid("a channel must be an id or {id, name, metadata}");
    const o = c as Record<string, unknown>;
    const ch: Channel = { id: idOf(o.id, "a channel id", true) as string };
    const name = textOf(o.name, "a channel name");
    if (name) ch.name = name;
    if (o.metadata !== undefined && o.metadata !== null) ch.metadata = o.metadata;
    return ch;
  });
}

function stateOf(v: unknown, fallback: 0 | 1): 0 | 1 {
  if (v === undefined || v === null) return fallback;
  if (v === 0 || v === 1) return v;
  throw invalid("state must be 0 (disconnected) or 1 (connected)");
}

/** A new configuration from upload JSON or a message; ids of a missing thing are made up. */
export function configFromInput(input: unknown, now = new Date()): StoredConfig {
  if (typeof input !== "object" || input === null || Array.isArray(input))
    throw invalid("a configuration must be an object");
  const o = input as Record<string, unknown>;
  const at = now.toISOString();
  const cfg: StoredConfig = {
    external_id: idOf(o.external_id, "external_id", true) as string,
    external_key: secretOf(o.external_key, "external_key", true) as string,
    // Upstream creates the thing when no thing_id is given; here it is named on the spot.
    thing_id: idOf(o.thing_id, "thing_id", false) ?? randomUUID(),
    thing_key: secretOf(o.thing_key, "thing_key", false) ?? randomUUID(),
    channels: channelsOf(o.channels),
    state: stateOf(o.state, 0),
    created_at: at,
    updated_at: at,
  };
  const name = textOf(o.name, "name");
  if (name) cfg.name = name;
  const content = contentOf(o.content);
  if (content !== undefined) cfg.content = content;
  for (const k of ["client_cert", "client_key", "ca_cert"] as const) {
    const v = textOf(o[k], k);
    if (v) cfg[k] = v;
  }
  return cfg;
}

/** Fields an update may change (upstream: name and content; here also channels and certificates). */
function applyPatch(cur: StoredConfig, patch: Record<string, unknown>, now: Date): StoredConfig {
  const next: StoredConfig = { ...cur, updated_at: now.toISOString() };
  if ("name" in patch) {
    const v = textOf(patch.name, "name");
    if (v) next.name = v;
    else delete next.name;
  }
  if ("content" in patch) {
    const v = contentOf(patch.content);
    if (v !== undefined) next.content = v;
    else delete next.content;
  }
  if ("channels" in patch) next.channels = channelsOf(patch.channels);
  if ("external_key" in patch)
    next.external_key = secretOf(patch.external_key, "external_key", true) as string;
  if ("thing_key" in patch) next.thing_key = secretOf(patch.thing_key, "thing_key", true) as string;
  if ("state" in patch) next.state = stateOf(patch.state, cur.state);
  for (const k of ["client_cert", "client_key", "ca_cert"] as const) {
    if (!(k in patch)) continue;
    const v = textOf(patch[k], k);
    if (v) next[k] = v;
    else delete next[k];
  }
  return next;
}

export function summaryOf(c: StoredConfig): ConfigSummary {
  const s: ConfigSummary = {
    external_id: c.external_id,
    thing_id: c.thing_id,
    state: c.state,
    channels: c.channels.map((ch) => ch.id),
    has_client_cert: Boolean(c.client_cert),
    updated_at: c.updated_at,
  };
  if (c.name) s.name = c.name;
  return s;
}

function isConfig(v: unknown): v is StoredConfig {
  const o = v as StoredConfig | null;
  return (
    typeof o === "object" &&
    o !== null &&
    typeof o.external_id === "string" &&
    typeof o.external_key === "string" &&
    typeof o.thing_id === "string" &&
    typeof o.thing_key === "string" &&
    Array.isArray(o.channels)
  );
}

/** The dialect id: the first segment of every key. */
export const MAINFLUX_DIALECT = "mainflux";
/** The group of every configuration: keys are `mainflux/config/<external id>`. */
const GROUP = "config";
export const CONFIG_KEY_PREFIX = `${MAINFLUX_DIALECT}/${GROUP}/`;
/** Where earlier versions kept configurations (moved on open). */
export const LEGACY_PREFIX = "mainflux-bootstrap/";
const THING = "thing";
const KIND = "bootstrap-config";
/** meta.kind of a configuration a dialog made: its owner is not secret (a node id). */
const OWNED_KIND = `${KIND}/owner:`;

function conflict(message: string): ProvisioningError {
  return new ProvisioningError("CONFLICT", message);
}

function address(externalId: string): RecordAddress {
  return { group: GROUP, id: externalId };
}

export class ConfigRegistry {
  readonly records: Records<StoredConfig>;
  /**
   * External ids held, for `size` (the node's status), from entry metadata: this
   * instance's view; over a shared store another instance's additions show after a load.
   */
  private readonly ids = new Set<string>();
  private chain: Promise<unknown> = Promise.resolve();
  private loaded: Promise<void> | undefined;

  constructor(readonly backend: StoreBackend) {
    this.records = new Records<StoredConfig>(backend, {
      dialect: MAINFLUX_DIALECT,
      words: { group: "a group", id: "external_id" },
      metaOf: (c) => ({
        kind: c.owner === undefined ? KIND : OWNED_KIND + c.owner,
        obtainedAt: c.created_at,
      }),
      indexes: { [THING]: (c) => [c.thing_id] },
      isRecord: isConfig,
      legacy: [{ from: LEGACY_PREFIX, to: (rest) => CONFIG_KEY_PREFIX + rest }],
    });
  }

  /**
   * Moves entries of the earlier layout and reads which configurations exist and which a
   * dialog made, from entry metadata only; every other method waits for it. Safe to call
   * twice; after a failure the next call tries again.
   */
  load(): Promise<void> {
    this.loaded ??= (async () => {
      await this.records.open();
      for (const r of await this.records.list(GROUP)) {
        this.ids.add(r.id);
      }
    })().catch((err) => {
      this.loaded = undefined;
      throw err;
    });
    return this.loaded;
  }

  /** Runs one write after every earlier one, whatever became of them. */
  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.chain.then(
      () => fn(),
      () => fn(),
    );
    this.chain = run.catch(() => undefined);
    return run;
  }

  /** The bootstrap lookup: one read. An id that cannot be one finds nothing. */
  async get(externalId: string): Promise<StoredConfig | undefined> {
    await this.load();
    if (
      typeof externalId !== "string" ||
      externalId.length === 0 ||
      externalId.length > MAX_ID ||
      CONTROL.test(externalId) ||
      /\p{Cs}/u.test(externalId)
    )
      return undefined;
    return this.records.get(address(externalId));
  }

  async getByThing(thingId: string): Promise<StoredConfig | undefined> {
    await this.load();
    if (typeof thingId !== "string" || thingId.length === 0) return undefined;
    return (await this.records.lookup(THING, thingId))?.record;
  }

  private remember(cfg: StoredConfig): void {
    this.ids.add(cfg.external_id);
  }

  private async erase(cfg: StoredConfig): Promise<boolean> {
    const gone = await this.records.remove(address(cfg.external_id));
    this.ids.delete(cfg.external_id);
    return gone;
  }

  /**
   * Writes `cfg` in place of what its external id held, holding the claim of its thing id
   * (inside `serial`); the thing id it replaced is freed. CONFLICT when another
   * configuration holds the thing id.
   */
  private async replace(cfg: StoredConfig, conflictMessage: string): Promise<StoredConfig> {
    const addr = address(cfg.external_id);
    // The external id's record and the thing id's index entry in one step of the store.
    const out = await this.records.claim(THING, [cfg.thing_id], addr, (cur) => ({
      next: cur ? { ...cfg, created_at: cur.created_at } : cfg,
      result: cur,
    }));
    if (out.taken) throw conflict(conflictMessage);
    const before = out.result;
    if (before) cfg.created_at = before.created_at;
    // The thing id given up: its entry names us but our record no longer holds it.
    if (before && before.thing_id !== cfg.thing_id)
      await this.records.release(THING, [before.thing_id], addr);
    this.remember(cfg);
    return cfg;
  }

  /**
   * Configurations `owner` made, except the one under `keep`. Read from the store's
   * metadata (a listing, no value), not from what this instance remembers: an instance
   * over a shared store must see what the same node made at another instance.
   */
  private async ownedBy(owner: string, keep?: string): Promise<StoredConfig[]> {
    const out: StoredConfig[] = [];
    for (const r of await this.records.list(GROUP)) {
      const ext = r.id;
      const o = r.kind?.startsWith(OWNED_KIND) ? r.kind.slice(OWNED_KIND.length) : undefined;
      if (o !== owner || ext === keep) continue;
      const c = await this.get(ext);
      if (c) out.push(c);
    }
    return out;
  }

  /** Adds a configuration; CONFLICT when its external id or thing id is taken. */
  add(input: unknown, now = new Date()): Promise<StoredConfig> {
    const cfg = configFromInput(input, now);
    return this.serial(async () => {
      await this.load();
      const addr = address(cfg.external_id);
      // Two uniques in one step: the external id (create unless present) and the thing id.
      const out = await this.records.claim(THING, [cfg.thing_id], addr, (cur) =>
        cur ? { result: false } : { next: cfg, result: true },
      );
      if (out.taken || !out.result)
        throw conflict("a configuration with this external id or thing id exists");
      this.remember(cfg);
      return cfg;
    });
  }

  /**
   * Adds or replaces the configuration of one external id (a dialog's initial
   * configuration). CONFLICT when the thing id belongs to another external id.
   */
  put(input: unknown, now = new Date()): Promise<StoredConfig> {
    const cfg = configFromInput(input, now);
    return this.serial(async () => {
      await this.load();
      return this.replace(cfg, "this thing id belongs to another configuration");
    });
  }

  /**
   * Stores the one configuration a dialog holds (`owner` names the node). What the dialog
   * says wins over what it said before a restart: configurations the same owner made
   * under other external ids are removed, and the thing id moves with it. CONFLICT, saying
   * what to do, only when the thing id belongs to a configuration someone else added.
   */
  putOwned(input: unknown, owner: string, now = new Date()): Promise<OwnedPut> {
    const cfg = configFromInput(input, now);
    cfg.owner = owner;
    return this.serial(async () => {
      await this.load();
      const earlier = await this.ownedBy(owner, cfg.external_id);
      const holder = (await this.records.lookup(THING, cfg.thing_id))?.record.external_id;
      const message =
        `thing id "${cfg.thing_id}" belongs to the configuration of external id "${holder}", which was ` +
        "not made by this dialog: remove that configuration, or give the dialog another thing id";
      if (
        holder !== undefined &&
        holder !== cfg.external_id &&
        !earlier.some((c) => c.external_id === holder)
      )
        throw conflict(message);
      for (const c of earlier) await this.erase(c);
      return { saved: await this.replace(cfg, message), removed: earlier };
    });
  }

  /** Removes every configuration `owner` made (its dialog no longer holds one). */
  removeOwned(owner: string): Promise<StoredConfig[]> {
    return this.serial(async () => {
      await this.load();
      const earlier = await this.ownedBy(owner);
      for (const c of earlier) await this.erase(c);
      return earlier;
    });
  }

  /** Changes a configuration found by thing id; NOT_FOUND when there is none. */
  update(thingId: string, patch: unknown, now = new Date()): Promise<StoredConfig> {
    if (typeof patch !== "object" || patch === null || Array.isArray(patch))
      return Promise.reject(invalid("an update must be an object"));
    return this.serial(async () => {
      const cur = await this.getByThing(thingId);
      const missing = () => new ProvisioningError("NOT_FOUND", "no configuration with this thing id");
      if (!cur) throw missing();
      // The patch applies to the record as it is in the store at the write (the backend's
      // read-modify-write, checked and retried across instances on PostgreSQL), so a
      // change another instance made meanwhile is kept. The thing id does not change
      // here, so its claim stands.
      const next = await this.records.transact(address(cur.external_id), (at) =>
        at && at.thing_id === thingId
          ? (() => {
              const n = applyPatch(at, patch as Record<string, unknown>, now);
              return { next: n, result: n };
            })()
          : { result: undefined },
      );
      if (!next) throw missing();
      this.remember(next);
      return next;
    });
  }

  setState(thingId: string, state: unknown, now = new Date()): Promise<StoredConfig> {
    const s = stateOf(state, 0);
    if (state === undefined || state === null) return Promise.reject(invalid("state is required"));
    return this.update(thingId, { state: s }, now);
  }

  /** Removes by thing id; false when there was nothing to remove. */
  remove(thingId: string): Promise<boolean> {
    return this.serial(async () => {
      const cur = await this.getByThing(thingId);
      if (!cur) return false;
      return this.erase(cur);
    });
  }

  /** Thing id of an external id, for callers that only know the latter. */
  async thingIdOf(externalId: string): Promise<string | undefined> {
    return (await this.get(externalId))?.thing_id;
  }

  async list(): Promise<ConfigSummary[]> {
    await this.load();
    const out: ConfigSummary[] = [];
    for (const r of await this.records.list(GROUP)) {
      const c = await this.get(r.id);
      if (c) out.push(summaryOf(c));
    }
    return out;
  }

  /** How many configurations this registry knows of (for the node's status). */
  get size(): number {
    return this.ids.size;
  }
}
