import type { Credentials, DialectId, Proof } from "./result";

/** What a device asks a provisioning service for, once a dialect has parsed it. */
export interface ProvisioningRequest {
  dialect: DialectId;
  /** Transport it came over, for audit: "mqtt", "http", "coap", "coap+tcp". */
  transport: string;
  deviceName?: string;
  deviceId?: string;
  proof: Proof;
  /** Which profile/group/config matched; never the secret itself. */
  profile?: string;
  requestedCredentials?: Partial<Credentials>;
  attributes?: Record<string, unknown>;
  /** Peer address, for audit and throttling. */
  remote?: string;
}

export type RefusalReason =
  "not-found" | "already-provisioned" | "invalid" | "throttled" | "denied" | "locked";

/** Emitted for every outcome on the serving side; never carries a secret. */
export interface AuditEvent {
  at: string;
  dialect: DialectId;
  transport: string;
  /** "locked": refused unread after too many failures; "throttled": too many waiting. */
  outcome: "provisioned" | "refused" | "error" | "locked" | "throttled";
  reason?: RefusalReason | string;
  deviceName?: string;
  deviceId?: string;
  profile?: string;
  credentialsType?: string;
  remote?: string;
}
