/**
 * Mainflux bootstrap's device side as a DeviceDialect (lib/client/dialect.ts): the
 * conductor does identity, reuse, retry and save. The identity is the external id (the
 * message's msg.externalId, else the dialog's); Mainflux has no environment or host-name
 * fallback for it, so a device without one fails with CONFIG before any byte is sent.
 * "Wait while unknown" keeps retrying a 404: a device may ask before its configuration
 * was uploaded (Mainflux's bootstrap service answers 404 until then).
 */
import type { ConnectionOptions } from "node:tls";
import type { DeviceDialect } from "../../client/dialect";
import { conduct } from "../../client/conductor";
import { codeOf, isFinal } from "../../model/errors";
import type { ProvisioningResult } from "../../model/result";
import {
  attemptPrepared,
  DEFAULT_TIMEOUT_MS,
  prepare,
  type BootstrapMode,
  type BootstrapOptions,
  type BootstrapRequest,
  type Prepared,
} from "./client";

export interface MainfluxDeviceSettings {
  /** Base URL of the bootstrap service (http(s)://host:port[/prefix]). */
  url: string;
  externalKey: string;
  mode?: BootstrapMode;
  encryptionKey?: string;
  keyId?: string;
  /** Keep retrying while the service says 404 (the configuration is not uploaded yet). */
  waitWhileUnknown?: boolean;
  maxResponseBytes?: number;
  /** The clock for GCM's `iat`; injectable for tests. */
  now?: () => number;
}

/** True for the service's "no configuration for this external id" (HTTP 404). */
export function isUnknown(err: unknown): boolean {
  return codeOf(err) === "NOT_FOUND" && (err as { status?: unknown }).status === 404;
}

export const mainfluxDialect: DeviceDialect<MainfluxDeviceSettings, Prepared> = {
  id: "mainflux",
  identity: { messageProperty: "externalId" },
  endpointOf(settings) {
    // Checks the URL (CONFIG) the way prepare does; stored results name the base URL.
    prepare({ url: settings.url, externalId: "-", externalKey: "-", mode: "plain" });
    return settings.url.trim();
  },
  prepare(settings, identity) {
    return Promise.resolve({
      ...prepare(
        {
          url: settings.url,
          externalId: identity,
          externalKey: settings.externalKey,
          mode: settings.mode,
          encryptionKey: settings.encryptionKey,
          keyId: settings.keyId,
        },
        settings.now,
      ),
      maxResponseBytes: settings.maxResponseBytes,
    });
  },
  attempt(prepared, opts): Promise<ProvisioningResult> {
    return attemptPrepared(prepared, opts);
  },
  shouldRetry(error, settings) {
    return !isFinal(error) || (settings.waitWhileUnknown === true && isUnknown(error));
  },
};

/**
 * Bootstraps under the retry policy, without a store: the conductor with this dialect,
 * for callers that hold every setting themselves (tests, benchmarks).
 */
export async function bootstrap(
  req: BootstrapRequest,
  opts: BootstrapOptions & { tls?: ConnectionOptions; random?: () => number } = {},
): Promise<ProvisioningResult> {
  const { result } = await conduct(
    mainfluxDialect,
    {
      url: req.url,
      externalKey: req.externalKey,
      mode: req.mode,
      encryptionKey: req.encryptionKey,
      keyId: req.keyId,
      waitWhileUnknown: opts.waitWhileUnknown,
      maxResponseBytes: opts.maxResponseBytes,
      now: opts.now,
    },
    {
      identity: { setting: req.externalId },
      env: () => undefined,
      policy: opts.policy,
      timeoutMs: opts.timeoutMs ?? DEFAULT_TIMEOUT_MS,
      tls: opts.tls,
      signal: opts.signal ?? new AbortController().signal,
      random: opts.random,
      hooks: { onAttempt: opts.onAttempt, onRetry: opts.onRetry },
    },
  );
  return result;
}
