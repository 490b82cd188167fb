/**
 * The neutral vocabulary: what every dialect produces on the device side and what the
 * credential store keeps. A flow that switches protocol reads the same fields.
 */

/**
 * One word per protocol: its folder under lib/dialects/, the first segment of its store
 * keys, `result.dialect` and `audit.dialect`.
 */
export type DialectId = "thingsboard" | "mainflux" | "plgd-dps" | "kura" | "azure-dps";

/** How the device proved it may be provisioned. */
export type Proof =
  | "provision-key" // ThingsBoard provisionDeviceKey + secret
  | "external-key" // Mainflux external key
  | "manufacturer-certificate" // plgd DPS mutual TLS
  | "provision-request" // Everyware / Kura: a provision request's client id, user name and password
  | "symmetric-key" // Azure DPS: a SAS token signed with the device's key (its own or derived from its group's)
  | "x509-certificate"; // Azure DPS: the device's client certificate

export type CredentialsType =
  | "ACCESS_TOKEN"
  | "MQTT_BASIC"
  | "X509_CERTIFICATE"
  | "THING_KEY" // Mainflux thing key (with optional client certificate)
  | "IDENTITY_CERTIFICATE" // plgd identity certificate (with access token)
  | "SYMMETRIC_KEY"; // Azure IoT Hub: the device key it signs SAS tokens with

/** Flat on purpose: a flow reads `msg.payload.credentials.token` whatever the dialect. */
export interface Credentials {
  type: CredentialsType;
  token?: string;
  clientId?: string;
  username?: string;
  password?: string;
  /** PEM of the device's certificate. */
  certificate?: string;
  /** PEM of the device's private key, when the device holds one. */
  privateKey?: string;
  /** Base64 symmetric key the device signs its hub's SAS tokens with (Azure). */
  key?: string;
  /** Azure IoT Hub's device connection string (`HostName=...;DeviceId=...;SharedAccessKey=...`). */
  connectionString?: string;
  /** PEMs of the CAs to trust for the service the credentials are for. */
  caCertificates?: string[];
}

export interface Endpoint {
  uri: string;
  id?: string;
}

export interface Configuration {
  /** Where to go with the credentials (hub, cloud, broker). */
  servers?: Endpoint[];
  hubId?: string;
  authorizationProvider?: string;
  owner?: string;
  channels?: Array<{ id: string; name?: string; metadata?: unknown }>;
  /** Free-form service configuration (Mainflux `content`), parsed when it was JSON. */
  content?: unknown;
  acls?: unknown;
  gateway?: boolean;
  [extra: string]: unknown;
}

export interface Device {
  name?: string;
  id?: string;
}

export interface ProvisioningResult {
  dialect: DialectId;
  /** The service asked, as a URI (mqtts://host:8883, https://host/api/v1/provision, ...). */
  endpoint: string;
  device: Device;
  proof: Proof;
  credentials: Credentials;
  configuration: Configuration;
  /** ISO 8601. */
  obtainedAt: string;
  /** ISO 8601, where known (certificate notAfter, token expiry). */
  expiresAt?: string;
  /** True when taken from the credential store instead of asked for. */
  reused: boolean;
}
