import type { Dialect } from "../model/result";
import type { AuditEvent, RefusalReason } from "../model/service";

/** An audit event with a short human detail; built only from fields that are never secret. */
export interface ServiceAuditEvent extends AuditEvent {
  /** Why, in a few words ("request is not JSON", "decision timed out"). Never a secret. */
  detail?: string;
  /** True when an existing device got new credentials under a re-provision policy. */
  reprovisioned?: boolean;
}

export interface AuditInput {
  dialect: Dialect;
  transport: string;
  outcome: AuditEvent["outcome"];
  reason?: RefusalReason | string;
  detail?: string;
  deviceName?: string;
  deviceId?: string;
  profile?: string;
  credentialsType?: string;
  remote?: string;
  reprovisioned?: boolean;
}

/** Copies only the listed fields, so a caller cannot smuggle a request (and its secret) in. */
export function auditEvent(input: AuditInput, now = new Date()): ServiceAuditEvent {
  const e: ServiceAuditEvent = {
    at: now.toISOString(),
    dialect: input.dialect,
    transport: input.transport,
    outcome: input.outcome,
  };
  const optional = [
    "reason",
    "detail",
    "deviceName",
    "deviceId",
    "profile",
    "credentialsType",
    "remote",
    "reprovisioned",
  ] as const;
  for (const k of optional) {
    if (input[k] !== undefined) (e as unknown as Record<string, unknown>)[k] = input[k];
  }
  return e;
}
