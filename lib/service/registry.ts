/**
 * The serving side's device registry, kept in a StoreBackend so that it survives restarts
 * and redeploys. One entry per device under `<dialect>/<profile>/<device name>`; every
 * change goes through backend.update(), so two requests for one name are serialised and
 * "create unless present" cannot succeed twice.
 */

import { createHash } from "node:crypto";
import type { Credentials } from "../model/result";
import { StoreError, type EntryMetaInput, type JsonValue, type StoreBackend } from "../stores/backend";
import { isWellFormed } from "../stores/entry";
import { KeyLock } from "../stores/key-lock";

export type DeviceState = "pre-provisioned" | "provisioned";

export interface RegisteredDevice {
  name: string;
  profile: string;
  state: DeviceState;
  /** Absent for a pre-provisioned device whose credentials are issued on first request. */
  credentials?: Credentials;
  attributes?: Record<string, JsonValue>;
  /** ISO 8601. */
  createdAt: string;
  /** ISO 8601, last time credentials were handed out. */
  provisionedAt?: string;
  /** How many times credentials were handed out (re-provisioning counts). */
  provisionings: number;
  /**
   * A keyed digest of the request that provisioned the device (never the request), so an
   * identical repeat within the service's repeat window can get the same answer.
   */
  requestDigest?: string;
}

/** Who holds a credential: the index entry's value. */
interface CredentialOwner {
  profile: string;
  name: string;
}

/**
 * One lock per backend, so that every registry over one store (two serving nodes, or a
 * node redeployed while its old instance finishes) serialises claims of one credential.
 */
const claimLocks = new WeakMap<StoreBackend, KeyLock>();

/** What listing shows: names and dates, never credentials. */
export interface DeviceSummary {
  profile: string;
  name: string;
  state: DeviceState | string;
  createdAt: string;
  updatedAt: string;
}

export class RegistryError extends Error {
  constructor(
    readonly code: "INVALID_NAME" | "INVALID_PROFILE" | "STORE",
    message: string,
  ) {
    super(message);
    this.name = "RegistryError";
  }
}

const MAX_KEY = 200;

export class DeviceRegistry {
  constructor(
    readonly backend: StoreBackend,
    /** First key segment: the dialect ("tb"). */
    private readonly prefix: string,
    /** Written into entry metadata, for people browsing the store. */
    private readonly protocol: string = prefix,
  ) {}

  /**
   * The profile name is percent-encoded so that it can never contain the separator; the
   * device name stays as typed (it is everything after the second slash).
   */
  key(profile: string, name: string): string {
    if (profile.length === 0) throw new RegistryError("INVALID_PROFILE", "a profile name is required");
    if (name.length === 0) throw new RegistryError("INVALID_NAME", "a device name is required");
    // A lone surrogate cannot be stored apart from U+FFFD (see isWellFormed), so it is refused.
    if (!isWellFormed(profile))
      throw new RegistryError("INVALID_PROFILE", "a profile name must be well-formed Unicode");
    if (!isWellFormed(name))
      throw new RegistryError(
        "INVALID_NAME",
        "a device name must be well-formed Unicode (it holds a lone surrogate)",
      );
    // eslint-disable-next-line no-control-regex
    if (/[\u0000-\u001f\u007f]/.test(name))
      throw new RegistryError("INVALID_NAME", "a device name may not hold control characters");
    const key = `${this.profilePrefix(profile)}${name}`;
    if (key.length > MAX_KEY) throw new RegistryError("INVALID_NAME", "the device name is too long");
    return key;
  }

  /**
   * The index entry of one credential id. Hashed: store keys show in file names and
   * listings, and a credential id can be an access token.
   */
  private indexKey(credentialId: string): string {
    return `${this.prefix}-credentials/${createHash("sha256").update(credentialId, "utf8").digest("hex")}`;
  }

  /**
   * Runs `fn` holding the claim of the credential ids for one device, so that no two
   * devices hold the same credentials (ThingsBoard keeps credentials_id unique). Claims of
   * one id are serialised; the claim is written before `fn` commits the device (a crash
   * in between leaves an index entry whose owner does not hold the credentials: stale,
   * and taken over by the next claim). `fn` returns `keep: false` when it stored nothing,
   * and the claims made for it are undone. Resolves "taken" when another device holds one.
   */
  async withCredentials<T>(
    ids: string[],
    owner: CredentialOwner,
    holds: (device: RegisteredDevice, id: string) => boolean,
    fn: () => Promise<{ keep: boolean; result: T }>,
  ): Promise<{ taken: true } | { taken: false; result: T }> {
    const unique = [...new Set(ids)].sort();
    let lock = claimLocks.get(this.backend);
    if (!lock) claimLocks.set(this.backend, (lock = new KeyLock()));
    const l = lock;
    type Inner = { taken: true } | { taken: false; result: T; keep: boolean };
    const run = async (i: number): Promise<Inner> => {
      if (i === unique.length) return { taken: false, ...(await fn()) };
      const key = this.indexKey(unique[i]);
      return l.run(key, async (): Promise<Inner> => {
        const cur = await this.wrap(() => this.backend.get(key));
        const o = cur?.value as unknown as CredentialOwner | undefined;
        const mine = o !== undefined && o.profile === owner.profile && o.name === owner.name;
        if (o && !mine) {
          let dev: RegisteredDevice | undefined;
          try {
            dev = await this.get(o.profile, o.name);
          } catch {
            dev = undefined;
          }
          if (dev && holds(dev, unique[i])) return { taken: true };
        }
        if (!mine) {
          const value = { profile: owner.profile, name: owner.name };
          await this.wrap(() => this.backend.set(key, value, this.indexMeta()));
        }
        let inner: Inner;
        try {
          inner = await run(i + 1);
        } catch (err) {
          if (!mine) await this.undoClaim(key, cur);
          throw err;
        }
        if (!mine && (inner.taken || !inner.keep)) await this.undoClaim(key, cur);
        return inner;
      });
    };
    const out = await run(0);
    return out.taken ? out : { taken: false, result: out.result };
  }

  private indexMeta(): EntryMetaInput {
    return { kind: "credential", protocol: this.protocol };
  }

  private async undoClaim(key: string, before: { value: JsonValue } | undefined): Promise<void> {
    await this.wrap(async () => {
      if (before) await this.backend.set(key, before.value, this.indexMeta());
      else await this.backend.delete(key);
    }).catch(() => undefined);
  }

  /** Forgets the claim of credential ids a device gave up (revoked, re-provisioned). */
  async releaseCredentials(ids: string[], owner: CredentialOwner): Promise<void> {
    let lock = claimLocks.get(this.backend);
    if (!lock) claimLocks.set(this.backend, (lock = new KeyLock()));
    for (const id of new Set(ids)) {
      const key = this.indexKey(id);
      await lock.run(key, async () => {
        const cur = await this.wrap(() => this.backend.get(key));
        const o = cur?.value as unknown as CredentialOwner | undefined;
        if (o && o.profile === owner.profile && o.name === owner.name)
          await this.wrap(() => this.backend.delete(key));
      });
    }
  }

  private profilePrefix(profile: string): string {
    return `${this.prefix}/${encodeURIComponent(profile)}/`;
  }

  async get(profile: string, name: string): Promise<RegisteredDevice | undefined> {
    const key = this.key(profile, name);
    const entry = await this.wrap(() => this.backend.get(key));
    return entry ? (entry.value as unknown as RegisteredDevice) : undefined;
  }

  /**
   * Read-modify-write of one device, serialised per key by the backend. `fn` sees the
   * current record and returns the new one (or none to leave it) plus a result to hand back.
   */
  async transact<T>(
    profile: string,
    name: string,
    fn: (current: RegisteredDevice | undefined) => { next?: RegisteredDevice; result: T },
  ): Promise<T> {
    const key = this.key(profile, name);
    let result: T | undefined;
    let decided = false;
    await this.wrap(() =>
      this.backend.update(key, (cur) => {
        const out = fn(cur ? (cur.value as unknown as RegisteredDevice) : undefined);
        result = out.result;
        decided = true;
        return out.next
          ? { value: out.next as unknown as JsonValue, meta: this.metaOf(out.next) }
          : undefined;
      }),
    );
    if (!decided) throw new RegistryError("STORE", "the registry did not run the update");
    return result as T;
  }

  /** Adds a pre-provisioned device; false when the name is already taken in that profile. */
  async add(
    profile: string,
    device: { name: string; credentials?: Credentials; attributes?: Record<string, JsonValue> },
    now = new Date(),
  ): Promise<boolean> {
    return this.transact(profile, device.name, (cur) => {
      if (cur) return { result: false };
      const next: RegisteredDevice = {
        name: device.name,
        profile,
        state: "pre-provisioned",
        createdAt: now.toISOString(),
        provisionings: 0,
      };
      if (device.credentials) next.credentials = device.credentials;
      if (device.attributes) next.attributes = device.attributes;
      return { next, result: true };
    });
  }

  async revoke(profile: string, name: string): Promise<boolean> {
    const key = this.key(profile, name);
    return this.wrap(() => this.backend.delete(key));
  }

  /** Lists devices from entry metadata only: no value (and so no credential) is read. */
  async list(profile?: string): Promise<DeviceSummary[]> {
    const all = await this.wrap(() => this.backend.list());
    const head = profile === undefined ? `${this.prefix}/` : this.profilePrefix(profile);
    const out: DeviceSummary[] = [];
    for (const e of all) {
      if (!e.key.startsWith(head)) continue;
      const rest = e.key.slice(this.prefix.length + 1);
      const slash = rest.indexOf("/");
      if (slash < 0) continue;
      let p: string;
      try {
        p = decodeURIComponent(rest.slice(0, slash));
      } catch {
        continue;
      }
      out.push({
        profile: p,
        name: rest.slice(slash + 1),
        state: e.meta.kind ?? "unknown",
        createdAt: e.meta.obtainedAt,
        updatedAt: e.meta.updatedAt,
      });
    }
    return out.sort((a, b) => (a.profile + "/" + a.name).localeCompare(b.profile + "/" + b.name));
  }

  private metaOf(d: RegisteredDevice): EntryMetaInput {
    return { obtainedAt: d.createdAt, protocol: this.protocol, kind: d.state };
  }

  private async wrap<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      if (err instanceof RegistryError) throw err;
      if (err instanceof StoreError && err.code === "INVALID_KEY")
        throw new RegistryError("INVALID_NAME", err.message);
      throw new RegistryError("STORE", err instanceof Error ? err.message : String(err));
    }
  }
}
