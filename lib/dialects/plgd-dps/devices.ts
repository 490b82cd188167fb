/**
 * The devices a plgd DPS service knows: which device id a manufacturer certificate
 * identified with (in the cloud-configuration or credentials step), so that the ACL step
 * is answered only for a device that identified itself. One registry of the shared kind
 * (lib/service/records.ts), kept in the credential store, so a restart remembers them:
 * a record per device at `plgd-dps/devices/<device id>` (a plgd device id is unique), and
 * a unique index of manufacturer certificates (one certificate, one device). A
 * certificate that identifies with a new id (after a factory reset) gives up its old one;
 * another certificate claiming an id that is held is a conflict.
 */
import { ProvisioningError } from "../../model/errors";
import { Records } from "../../service/records";
import type { StoreBackend } from "../../stores/backend";
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

/** The registry of plgd devices in `store`; its failures are ProvisioningErrors (STORE). */
export class StoredDpsDevices implements DpsDevices {
  private readonly records: Records<DpsDeviceRecord>;

  constructor(
    store: StoreBackend,
    private readonly now: () => number = Date.now,
  ) {
    this.records = new Records<DpsDeviceRecord>(store, {
      dialect: "plgd-dps",
      isRecord,
      indexes: { [INDEX]: (r) => [r.fingerprint] },
      metaOf: (r) => ({ kind: "identified", obtainedAt: r.identifiedAt }),
      words: { group: "a registry", id: "a device id" },
    });
  }

  async deviceOf(fingerprint: string): Promise<string | undefined> {
    return (await this.records.lookup(INDEX, fingerprint))?.record.deviceId;
  }

  async identify(fingerprint: string, deviceId: string, group?: string): Promise<IdentifyOutcome> {
    const di = deviceId.toLowerCase();
    const addr = { group: GROUP, id: di };
    const before = await this.records.lookup(INDEX, fingerprint);
    if (before?.address.id === di) return "identified";
    // The certificate identified with another id before (a factory reset): that id is free now.
    if (before) await this.records.remove(before.address);
    const rec: DpsDeviceRecord = {
      deviceId: di,
      fingerprint,
      identifiedAt: new Date(this.now()).toISOString(),
    };
    if (group !== undefined) rec.group = group;
    // Create unless present, in one step with the certificate's claim: an id another
    // certificate holds stays with it.
    const out = await this.records.claim<IdentifyOutcome>(INDEX, [fingerprint], addr, (cur) =>
      cur
        ? { result: cur.fingerprint === fingerprint ? "identified" : "conflict" }
        : { next: rec, result: "identified" },
    );
    // Taken: the same certificate identified under another id at the same moment.
    if (out.taken)
      throw new ProvisioningError("CONFLICT", "the manufacturer certificate identified twice at once");
    return out.result;
  }
}
