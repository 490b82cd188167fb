/**
 * The devices a plgd DPS service knows: which device id a manufacturer certificate
 * identified with (in the cloud-configuration or credentials step), so that the ACL step
 * is answered only for a device that identified itself. Kept in the credential store, so
 * a restart remembers them. A plgd device id is unique: one manufacturer certificate holds
 * it; a certificate that identifies with a new id (after a factory reset) gives up its old
 * one.
 *
 * The layout is the shared registry's (lib/service/records.ts): a record per device at
 * `plgd-dps/devices/<device id>`, and a unique index of certificates at
 * `plgd-dps/#manufacturer/<SHA-256 of the fingerprint>` naming the record that holds it.
 * The record is written first and the index after it, and a lookup believes the index
 * only when the record it names holds that fingerprint, so a crash in between is harmless.
 */
import { createHash } from "node:crypto";
import { ProvisioningError } from "../../model/errors";
import type { JsonValue, StoreBackend } from "../../stores/backend";
import { UUID_RE } from "./ocf";

export interface DpsDeviceRecord {
  deviceId: string;
  /** SHA-256 fingerprint of the manufacturer certificate (Node's fingerprint256). */
  fingerprint: string;
  /** The enrollment group it matched. */
  group?: string;
  identifiedAt: string;
}

export type IdentifyOutcome = "identified" | "conflict";

export interface DpsDevices {
  /** The device id a manufacturer certificate identified with, if it did. */
  deviceOf(fingerprint: string): Promise<string | undefined>;
  /** Binds the device id to the certificate; "conflict" when another certificate holds it. */
  identify(fingerprint: string, deviceId: string, group?: string): Promise<IdentifyOutcome>;
}

const GROUP = "devices";
const INDEX = "manufacturer";

function isRecord(v: unknown): v is DpsDeviceRecord {
  const r = v as Partial<DpsDeviceRecord> | null;
  return (
    typeof r === "object" &&
    r !== null &&
    typeof r.deviceId === "string" &&
    UUID_RE.test(r.deviceId) &&
    typeof r.fingerprint === "string"
  );
}

function storeFailure(err: unknown): ProvisioningError {
  if (err instanceof ProvisioningError) return err;
  return new ProvisioningError("STORE", err instanceof Error ? err.message : String(err), { cause: err });
}

/** The registry of plgd devices in `store` (fails with STORE when the store does). */
export class StoredDpsDevices implements DpsDevices {
  constructor(
    private readonly store: StoreBackend,
    private readonly now: () => number = Date.now,
  ) {}

  private recordKey(deviceId: string): string {
    return `plgd-dps/${GROUP}/${deviceId}`;
  }

  private indexKey(fingerprint: string): string {
    return `plgd-dps/#${INDEX}/${createHash("sha256").update(fingerprint, "utf8").digest("hex")}`;
  }

  private async record(deviceId: string): Promise<DpsDeviceRecord | undefined> {
    const e = await this.store.get(this.recordKey(deviceId));
    return e && isRecord(e.value) ? e.value : undefined;
  }

  async deviceOf(fingerprint: string): Promise<string | undefined> {
    try {
      const owner = (await this.store.get(this.indexKey(fingerprint)))?.value as { id?: unknown } | undefined;
      if (typeof owner?.id !== "string" || !UUID_RE.test(owner.id)) return undefined;
      const rec = await this.record(owner.id);
      return rec?.fingerprint === fingerprint ? rec.deviceId : undefined;
    } catch (err) {
      throw storeFailure(err);
    }
  }

  async identify(fingerprint: string, deviceId: string, group?: string): Promise<IdentifyOutcome> {
    const di = deviceId.toLowerCase();
    try {
      let outcome = "identified" as IdentifyOutcome;
      // Create unless present, in one read-modify-write of the record's key.
      await this.store.update(this.recordKey(di), (cur) => {
        if (cur && isRecord(cur.value)) {
          if (cur.value.fingerprint !== fingerprint) outcome = "conflict";
          return undefined;
        }
        const rec: DpsDeviceRecord = {
          deviceId: di,
          fingerprint,
          identifiedAt: new Date(this.now()).toISOString(),
        };
        if (group !== undefined) rec.group = group;
        return {
          value: rec as unknown as JsonValue,
          meta: { protocol: "plgd-dps", kind: "identified", obtainedAt: rec.identifiedAt },
        };
      });
      if (outcome === "conflict") return outcome;
      const indexKey = this.indexKey(fingerprint);
      const owner = (await this.store.get(indexKey))?.value as { id?: unknown } | undefined;
      if (owner?.id === di) return outcome;
      // The certificate identified with another id before (a factory reset): that id is free now.
      if (typeof owner?.id === "string" && UUID_RE.test(owner.id)) {
        const old = await this.record(owner.id);
        if (old?.fingerprint === fingerprint) await this.store.delete(this.recordKey(owner.id));
      }
      await this.store.set(indexKey, { group: GROUP, id: di }, { protocol: "plgd-dps", kind: "index" });
      return outcome;
    } catch (err) {
      throw storeFailure(err);
    }
  }
}
