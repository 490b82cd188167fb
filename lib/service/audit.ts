import type { DialectId } from "../model/result";
import type { AuditEvent, RefusalReason } from "../model/service";

/** An audit event with a short human detail; built only from fields that are never secret. */
export interface ServiceAuditEvent extends AuditEvent {
  /** Why, in a few words ("request is not JSON", "decision timed out"). Never a secret. */
  detail?: string;
  /** True when an existing device got new credentials under a re-provision policy. */
  reprovisioned?: boolean;
  /** True when an identical repeated request got the credentials issued before. */
  repeated?: boolean;
  /** How long the answer was held back after earlier failures (brute-force slowing). */
  delayedMs?: number;
  /** For "locked" and "throttled": when a retry may succeed, in seconds. */
  retryAfterS?: number;
}

export interface AuditInput {
  dialect: DialectId;
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
  repeated?: boolean;
  delayedMs?: number;
  retryAfterS?: number;
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
    "repeated",
    "delayedMs",
    "retryAfterS",
  ] as const;
  for (const k of optional) {
    if (input[k] !== undefined) (e as unknown as Record<string, unknown>)[k] = input[k];
  }
  return e;
}

/** The audit event of a subject becoming locked (from FailureLimiter's onLock). */
export function lockAuditEvent(
  dialect: DialectId,
  lock: { subject: "address" | "account"; id: string; failures: number; untilMs: number },
  /** Where the account id goes: a ThingsBoard profile name, a Mainflux external id, a plgd device id. */
  accountField: "profile" | "deviceName" | "deviceId",
  now = new Date(),
): ServiceAuditEvent {
  const e = auditEvent(
    {
      dialect,
      transport: "any",
      outcome: "locked",
      reason: "locked",
      detail: `${lock.subject} locked after ${lock.failures} failed attempts`,
      retryAfterS: Math.max(1, Math.ceil((lock.untilMs - now.getTime()) / 1000)),
    },
    now,
  );
  if (lock.subject === "address") e.remote = lock.id;
  else e[accountField] = lock.id;
  return e;
}
