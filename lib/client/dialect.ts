/**
 * The device side's one seam. Every device dialect (ThingsBoard, Mainflux bootstrap, plgd
 * DPS, and those to come) implements DeviceDialect; the conductor (conductor.ts) does
 * everything around it the same way for all of them: identity, reuse from the store,
 * retry under the shared policy, save. A new protocol is a folder under lib/dialects/
 * with one DeviceDialect, listed in lib/dialects/index.ts.
 */
import type { ConnectionOptions } from "node:tls";
import type { DialectId, ProvisioningResult } from "../model/result";
import type { EnvLookup } from "./env-ref";

/** Where a dialect's device identity comes from when neither the message nor the dialog gives one. */
export interface IdentityRules {
  /** The message property that overrides the dialog ("deviceName", "externalId", "deviceId"). */
  messageProperty: string;
  /** Environment variable consulted after the dialog (ThingsBoard: THINGSBOARD_DEVICE_NAME). */
  envVar?: string;
  /** Fall back to the machine's host name. */
  hostname?: boolean;
  /** Fall back to `<prefix>` + 7 random digits (ThingsBoard's reference script: "teg-"). */
  randomPrefix?: string;
}

/** What one attempt gets from the conductor. */
export interface AttemptOptions {
  /** Aborts the attempt (close, redeploy); it then rejects soon, with any error. */
  signal: AbortSignal;
  /** Time for the whole attempt: connect, request, answer. */
  timeoutMs: number;
  /** TLS options from the node's tls-config; verification on unless explicitly false. */
  tls?: ConnectionOptions;
  /** Told when the connection is up and the request goes out. */
  onRequesting?: () => void;
}

/**
 * One device dialect. `Settings` is what a node reads from its dialog and the message
 * (already merged: a message property overrides the dialog); `Prepared` is a request
 * validated and built once, so every retry sends the same key and certificate.
 */
export interface DeviceDialect<Settings, Prepared> {
  /** Folder name, store-key prefix and `result.dialect`, all the same word. */
  readonly id: DialectId;
  readonly identity: IdentityRules;
  /**
   * Validates the settings for the resolved identity and builds the request; throws a
   * final ProvisioningError ("CONFIG") for anything that cannot work, before any byte is sent.
   */
  prepare(settings: Settings, identity: string, env: EnvLookup): Promise<Prepared>;
  /** The URI results name as their endpoint, known before any attempt; throws CONFIG. */
  endpointOf(settings: Settings, env: EnvLookup): string;
  /** One attempt; rejects with a ProvisioningError whose `final` says whether to go on. */
  attempt(prepared: Prepared, opts: AttemptOptions): Promise<ProvisioningResult>;
  /**
   * Whether a failure should be retried, where the dialect lets the user choose
   * (ThingsBoard "retry on FAILURE", Mainflux "wait while unknown"); default: not `final`.
   */
  shouldRetry?(error: unknown, settings: Settings): boolean;
  /** Store keys this dialect used before (read when the current key holds nothing). */
  legacyStoreKeys?(identity: string): string[];
}
