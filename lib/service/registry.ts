/**
 * The serving side's device registry, kept in a StoreBackend so that it survives restarts
 * and redeploys. One entry per device under `<dialect>/<profile>/<device name>`; every
 * change goes through backend.update(), so two requests for one name are serialised and
 * "create unless present" cannot succeed twice.
 */

import type { Credentials } from "../model/result";
import { StoreError, type EntryMetaInput, type JsonValue, type StoreBackend } from "../stores/backend";
import { isWellFormed } from "../stores/entry";

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
}

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
