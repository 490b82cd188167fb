/**
 * The settings of both Azure DPS dialects, as the nodes hand them over (already merged:
 * message over dialog over defaults, `${NAME}` resolved, secrets from credentials).
 */
import type { TlsOptions } from "node:tls";
import type { ConnectionLimits } from "../../transports/embedded-broker";

/** How a device proves itself: its own key, a key derived from its group's, or its certificate. */
export type AzureAttestation = "symmetric-key" | "group-key" | "x509";

export interface AzureDeviceSettings {
  /**
   * The service: Azure's global endpoint (global.azure-devices-provisioning.net, the
   * default), or `host:port` of another DPS-compatible service.
   */
  host: string;
  transport: "mqtt" | "https";
  idScope: string;
  attestation: AzureAttestation;
  /**
   * Base64: the device's own key ("symmetric-key"), or the enrollment group's key
   * ("group-key"), from which the device key is derived for the registration id.
   */
  key?: string;
  /**
   * "x509": PEM of the device's certificate (the tls-config's), so that a registration id
   * other than its subject's CN is refused before anything is sent.
   */
  clientCertificate?: string;
  /** The custom payload sent with the registration (Azure's `payload`). */
  payload?: unknown;
  apiVersion?: string;
  /** Largest answer read, in bytes (default 64 KiB). */
  maxAnswerBytes?: number;
}

/** Azure's allocation policies this service offers ("geoLatency" has no meaning on one machine). */
export type AzureAllocation = "hashed" | "static" | "custom";
/** Azure's re-provisioning policies: update the hub and migrate data (Azure's default), reset, never. */
export type AzureReprovision = "migrate" | "reset" | "never";

export interface AzureEnrollment {
  kind: "individual" | "group";
  /** Individual: the registration id. Group: the enrollment group id. */
  id: string;
  attestation: "symmetric-key" | "x509";
  /** Base64 keys (symmetric-key), from the node's credentials; never shown. */
  primaryKey?: string;
  secondaryKey?: string;
  /**
   * X.509, PEMs: individual, the device's own certificate (or its thumbprint's owner);
   * group, the CA or intermediate certificates a device's chain must reach.
   */
  certificates?: string[];
  enabled: boolean;
  /** Default: the service's. */
  allocation?: AzureAllocation;
  /** Host names of the linked hubs this enrollment may assign to; default all. */
  iotHubs?: string[];
  reprovision?: AzureReprovision;
  /** Individual: the device id to assign (default the registration id). */
  deviceId?: string;
  /** The initial twin state given to the hub (kept in the registration, for the flow). */
  initialTwin?: unknown;
}

export interface AzureServiceSettings {
  idScope: string;
  /** Host names of the IoT hubs devices are assigned to (Azure's linked hubs). */
  linkedHubs: string[];
  /** Optional per-hub weights for "hashed" (Azure: allocation weight), by host name. */
  hubWeights?: Record<string, number>;
  enrollments: AzureEnrollment[];
  /** Default allocation of enrollments that name none (Azure's default: "hashed"). */
  allocation?: AzureAllocation;
  /** What 202 answers tell a device to wait before polling (default 3 s, as DPS). */
  retryAfterS?: number;
  /** Per-device status polls allowed in a window (Azure: 5 per 10 s). */
  pollLimit?: { count: number; windowMs: number };
  /** Registrations accepted per minute by this service (Azure: 1,000). */
  registrationsPerMinute?: number;
  /** How long the flow has to answer a custom allocation (ms). */
  decisionTimeoutMs?: number;
}

export interface AzureServeSettings extends AzureServiceSettings {
  /** MQTT over TLS (Azure: 8883 only); absent, no MQTT listener. */
  /** proxyProtocol: every connection begins with a PROXY protocol header (behind HAProxy). */
  mqtt?: { host: string; port: number; tls: TlsOptions; limits?: ConnectionLimits; proxyProtocol?: boolean };
  /** HTTPS (Azure: 443); absent, no HTTPS listener. */
  https?: { host: string; port: number; tls: TlsOptions; proxyProtocol?: boolean };
}
