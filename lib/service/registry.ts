/**
 * The serving side's ThingsBoard device registry, one Records (lib/service/records.ts)
 * over the credential store: one entry per device under `thingsboard/<profile>/<device
 * name>` (a device name is unique per profile, as ThingsBoard keeps it), and a unique
 * index of credential ids (ThingsBoard keeps credentials_id unique across devices).
 * Entries of the earlier layout (`tb/<profile>/<name>`, `tb-credentials/<hash>`) are
 * moved on open.
 */

import type { Credentials, DialectId } from "../model/result";
import type { JsonValue, StoreBackend } from "../stores/backend";
import { Records, type LegacyLayout } from "./records";

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

/** Who holds a credential, in the words of ThingsBoard's registry. */
interface CredentialOwner {
  profile: string;
  name: string;
}

/** What listing shows: names and dates, never credentials. */
export interface DeviceSummary {
  profile: string;
  name: string;
  state: DeviceState | string;
  createdAt: string;
  updatedAt: string;
}

/** The ThingsBoard layout before one dialect id named the store prefix. */
export const TB_LEGACY_LAYOUT: LegacyLayout[] = [
  { from: "tb/" },
  {
    // The index keys kept their hash (SHA-256 of the credential id); the owner is renamed.
    from: "tb-credentials/",
    to: (rest) => `thingsboard/#credentials/${rest}`,
    value: (v) => {
      const o = v as { profile?: unknown; name?: unknown } | null;
      return o && typeof o.profile === "string" && typeof o.name === "string"
        ? { group: o.profile, id: o.name }
        : undefined;
    },
  },
];

const CREDENTIALS = "credentials";

/** The record of a device added before it asks (management's add). */
export function preProvisioned(
  profile: string,
  device: { name: string; credentials?: Credentials; attributes?: Record<string, JsonValue> },
  now = new Date(),
): RegisteredDevice {
  const next: RegisteredDevice = {
    name: device.name,
    profile,
    state: "pre-provisioned",
    createdAt: now.toISOString(),
    provisionings: 0,
  };
  if (device.credentials) next.credentials = device.credentials;
  if (device.attributes) next.attributes = device.attributes;
  return next;
}

export class DeviceRegistry {
  readonly records: Records<RegisteredDevice>;

  /**
   * ThingsBoard's registry over `backend`; what the store holds under ThingsBoard's earlier
   * layout (`tb/<profile>/<name>`, `tb-credentials/<hash>`) is moved on open.
   */
  constructor(
    readonly backend: StoreBackend,
    id: DialectId = "thingsboard",
  ) {
    const legacy = id === "thingsboard" ? TB_LEGACY_LAYOUT : [];
    this.records = new Records<RegisteredDevice>(backend, {
      dialect: id,
      words: { group: "a profile name", id: "a device name" },
      metaOf: (d) => ({ kind: d.state, obtainedAt: d.createdAt }),
      // Which credential ids a device holds is ThingsBoard's rule (server-credentials.ts):
      // callers pass them, and a `holds` check, to withCredentials().
      indexes: { [CREDENTIALS]: null },
      legacy,
    });
  }

  /** Moves entries of the earlier layout; every other method waits for it. */
  open(): Promise<void> {
    return this.records.open();
  }

  /**
   * The store key of one device; throws INVALID for a name or profile that cannot be one.
   * The profile name is percent-encoded so that it never holds the separator; the device
   * name stays as typed (it is everything after the second slash).
   */
  key(profile: string, name: string): string {
    return this.records.key({ group: profile, id: name });
  }

  /**
   * A read-modify-write of one device (as transact()) that holds the credential ids
   * `ids`, so that no two devices hold the same credentials (ThingsBoard keeps
   * credentials_id unique): the claims and the device's write are one step of the store,
   * across every instance over it (Records.claim()). Resolves "taken" when another device
   * holds one, and `fn` is then not called.
   */
  async withCredentials<T>(
    ids: string[],
    owner: CredentialOwner,
    holds: (device: RegisteredDevice, id: string) => boolean,
    fn: (current: RegisteredDevice | undefined) => { next?: RegisteredDevice; result: T },
  ): Promise<{ taken: true } | { taken: false; result: T }> {
    const out = await this.records.claim<T>(
      CREDENTIALS,
      ids,
      { group: owner.profile, id: owner.name },
      fn,
      holds,
    );
    return out.taken ? { taken: true } : out;
  }

  /** Forgets the claim of credential ids a device gave up (revoked, re-provisioned). */
  releaseCredentials(ids: string[], owner: CredentialOwner): Promise<void> {
    return this.records.release(CREDENTIALS, ids, { group: owner.profile, id: owner.name });
  }

  get(profile: string, name: string): Promise<RegisteredDevice | undefined> {
    return this.records.get({ group: profile, id: name });
  }

  /**
   * Read-modify-write of one device, serialised per key by the backend. `fn` sees the
   * current record and returns the new one (or none to leave it) plus a result to hand back.
   */
  transact<T>(
    profile: string,
    name: string,
    fn: (current: RegisteredDevice | undefined) => { next?: RegisteredDevice; result: T },
  ): Promise<T> {
    return this.records.transact({ group: profile, id: name }, fn);
  }

  /** Adds a pre-provisioned device; false when the name is already taken in that profile. */
  add(
    profile: string,
    device: { name: string; credentials?: Credentials; attributes?: Record<string, JsonValue> },
    now = new Date(),
  ): Promise<boolean> {
    return this.records.create({ group: profile, id: device.name }, preProvisioned(profile, device, now));
  }

  /** Removes a device; its credential claims are freed by releaseCredentials(). */
  revoke(profile: string, name: string): Promise<boolean> {
    return this.records.remove({ group: profile, id: name });
  }

  /** Lists devices from entry metadata only: no value (and so no credential) is read. */
  async list(profile?: string): Promise<DeviceSummary[]> {
    return (await this.records.list(profile)).map((r) => ({
      profile: r.group,
      name: r.id,
      state: r.kind ?? "unknown",
      createdAt: r.obtainedAt,
      updatedAt: r.updatedAt,
    }));
  }
}
