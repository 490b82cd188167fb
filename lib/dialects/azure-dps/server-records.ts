/**
 * The service's registrations (Azure: "device registration records") in the shared
 * registry (lib/service/records.ts), so that they survive restarts: one record per
 * registration id under the id scope, with the place it was given and Azure's status.
 */
import { Records } from "../../service/records";
import type { StoreBackend } from "../../stores/backend";
import type { Placement } from "./server-allocate";
import type { RegistrationState } from "./wire";

export interface AzureRegistrationRecord extends Placement {
  registrationId: string;
  enrollment: { kind: "individual" | "group"; id: string };
  attestation: "symmetric-key" | "x509";
  status: "assigned";
  createdDateTimeUtc: string;
  lastUpdatedDateTimeUtc: string;
  etag: string;
  /** The custom allocation's payload for the device, and the initial twin (for the flow). */
  payload?: unknown;
  initialTwin?: unknown;
  x509?: { subjectName: string; sha1Thumbprint: string; sha256Thumbprint: string };
}

function isRecord(v: unknown): v is AzureRegistrationRecord {
  const r = v as Partial<AzureRegistrationRecord> | null;
  return (
    typeof r === "object" &&
    r !== null &&
    typeof r.registrationId === "string" &&
    typeof r.assignedHub === "string" &&
    typeof r.deviceId === "string" &&
    typeof r.createdDateTimeUtc === "string"
  );
}

export function azureRegistrations(store: StoreBackend): Records<AzureRegistrationRecord> {
  return new Records<AzureRegistrationRecord>(store, {
    dialect: "azure-dps",
    protocol: "azure-dps",
    metaOf: (r) => ({ kind: r.status, obtainedAt: r.createdDateTimeUtc }),
    isRecord,
    words: { group: "an id scope", id: "a registration id" },
    maxAddressLength: 197,
  });
}

/** Azure's registrationState of a stored registration. */
export function stateOf(r: AzureRegistrationRecord): RegistrationState {
  const s: RegistrationState = {
    registrationId: r.registrationId,
    createdDateTimeUtc: r.createdDateTimeUtc,
    assignedHub: r.assignedHub,
    deviceId: r.deviceId,
    status: "assigned",
    substatus: r.substatus,
    lastUpdatedDateTimeUtc: r.lastUpdatedDateTimeUtc,
    etag: r.etag,
  };
  if (r.payload !== undefined) s.payload = r.payload;
  if (r.attestation === "x509")
    s.x509 = {
      ...(r.enrollment.kind === "group" ? { enrollmentGroupId: r.enrollment.id } : {}),
      clientCertificateInfo: r.x509 ? { ...r.x509 } : undefined,
    };
  else
    s.symmetricKey =
      r.enrollment.kind === "group"
        ? { enrollmentGroupId: r.enrollment.id }
        : { registrationId: r.registrationId };
  return s;
}
