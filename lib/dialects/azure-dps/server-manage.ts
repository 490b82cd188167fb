/**
 * The Azure DPS service managed by message, as Azure's service API does it for people:
 * registrations listed, read and deleted (a deleted registration is a factory reset at
 * the service: the device's next registration is an initial assignment), enrollments
 * listed, enabled, disabled, added and removed. Enrollment changes live in the running
 * service only (the node's settings are the enrollments at the next start); registrations
 * are in the store. No answer carries a key: enrollments are shown without them.
 */
import { finalError } from "../../model/errors";
import type { RecordSummary } from "../../service/records";
import type { AzureDpsService } from "./server";
import { enrollmentError } from "./server-enrollments";
import type { AzureRegistrationRecord } from "./server-records";
import type { AzureEnrollment } from "./settings";

export type AzureManageOperation =
  "list" | "get" | "delete" | "enrollments" | "enable" | "disable" | "addEnrollment" | "removeEnrollment";

const OPERATIONS: readonly string[] = [
  "list",
  "get",
  "delete",
  "enrollments",
  "enable",
  "disable",
  "addEnrollment",
  "removeEnrollment",
];

/** An enrollment as shown: everything but its keys. */
export type EnrollmentView = Omit<AzureEnrollment, "primaryKey" | "secondaryKey" | "certificates"> & {
  certificates?: number;
};

export type AzureManageResult =
  | { operation: "list"; idScope: string; registrations: RecordSummary[] }
  | { operation: "get"; registrationId: string; registration?: AzureRegistrationRecord }
  | { operation: "delete"; registrationId: string; deleted: boolean }
  | { operation: "enrollments"; enrollments: EnrollmentView[] }
  | { operation: "enable" | "disable"; kind: "individual" | "group"; id: string; enabled: boolean }
  | { operation: "addEnrollment"; kind: "individual" | "group"; id: string; done: "added" | "replaced" }
  | { operation: "removeEnrollment"; kind: "individual" | "group"; id: string; removed: boolean };

export function viewOf(e: AzureEnrollment): EnrollmentView {
  const { primaryKey: _p, secondaryKey: _s, certificates, ...rest } = e;
  void _p;
  void _s;
  return certificates ? { ...rest, certificates: certificates.length } : rest;
}

function record(v: unknown): Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : {};
}

function registrationIdOf(p: Record<string, unknown>): string {
  if (typeof p.registrationId !== "string" || p.registrationId === "")
    throw finalError("INVALID", "payload.registrationId must be a registration id", { status: "INVALID" });
  return p.registrationId;
}

function enrollmentRef(p: Record<string, unknown>): { kind: "individual" | "group"; id: string } {
  if ((p.kind !== "individual" && p.kind !== "group") || typeof p.id !== "string" || p.id === "")
    throw finalError("INVALID", "payload.kind must be individual or group, and payload.id an enrollment id", {
      status: "INVALID",
    });
  return { kind: p.kind, id: p.id };
}

/** Runs one operation; throws a ProvisioningError with a secret-free message. */
export async function manageAzure(
  service: AzureDpsService,
  operation: unknown,
  payload: unknown,
): Promise<AzureManageResult> {
  if (typeof operation !== "string" || !OPERATIONS.includes(operation))
    throw finalError("INVALID", `operation must be one of ${OPERATIONS.join(", ")}`, {
      status: "UNKNOWN_OPERATION",
    });
  const op = operation as AzureManageOperation;
  const p = record(payload);
  const scope = service.idScope;
  switch (op) {
    case "list":
      return { operation: op, idScope: scope, registrations: await service.records.list(scope) };
    case "get": {
      const registrationId = registrationIdOf(p);
      const r = await service.records.get(service.addressOf(registrationId));
      return r ? { operation: op, registrationId, registration: r } : { operation: op, registrationId };
    }
    case "delete": {
      const registrationId = registrationIdOf(p);
      return {
        operation: op,
        registrationId,
        deleted: await service.records.remove(service.addressOf(registrationId)),
      };
    }
    case "enrollments":
      return { operation: op, enrollments: service.enrollments.all().map(viewOf) };
    case "enable":
    case "disable": {
      const ref = enrollmentRef(p);
      const e = service.enrollments.get(ref.kind, ref.id);
      if (!e) throw finalError("NOT_FOUND", "no such enrollment", { status: "NOT_FOUND" });
      service.enrollments.put({ ...e, enabled: op === "enable" });
      return { operation: op, ...ref, enabled: op === "enable" };
    }
    case "addEnrollment": {
      const e = { enabled: true, ...p } as unknown as AzureEnrollment;
      const err = enrollmentError(e, service.settings.linkedHubs);
      if (err) throw finalError("INVALID", err, { status: "INVALID" });
      if (e.allocation === "custom" && !service.decides)
        throw finalError("INVALID", "custom allocation needs the flow's decision", { status: "INVALID" });
      const before = service.enrollments.get(e.kind, e.id);
      service.enrollments.put(e);
      return { operation: op, kind: e.kind, id: e.id, done: before ? "replaced" : "added" };
    }
    case "removeEnrollment": {
      const ref = enrollmentRef(p);
      return { operation: op, ...ref, removed: service.enrollments.remove(ref.kind, ref.id) };
    }
  }
}
