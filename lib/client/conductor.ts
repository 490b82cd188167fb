/**
 * The conductor: what every device node does around its dialect, in one place. Resolve
 * the device's identity (message, dialog, the dialect's environment variable, host name,
 * random), reuse a stored, unexpired result unless told to ask again, otherwise prepare
 * once and attempt under the shared retry policy, then save what was obtained. A store
 * that fails to save does not fail the request: the credentials were obtained, and the
 * failure is reported beside the result.
 */
import type { ConnectionOptions } from "node:tls";
import type { ProvisioningResult } from "../model/result";
import { asProvisioningError, finalError, isFinal } from "../model/errors";
import { validateRetryPolicy, type RetryPolicy } from "../retry/policy";
import { runWithRetry } from "../retry/run";
import type { StoreBackend } from "../stores/backend";
import type { DeviceDialect } from "./dialect";
import type { EnvLookup } from "./env-ref";
import { resolveIdentity } from "./identity";
import { findReusable, saveResult, storeKeyFor } from "./reuse";

export interface ConductOptions {
  /** The message's identity (msg.deviceName, msg.externalId, ...), and the dialog's. */
  identity: { message?: unknown; setting?: string };
  env: EnvLookup;
  store?: StoreBackend;
  /** An exact key (msg.storeKey), or a template with `{deviceName}` from the dialog. */
  storeKey?: string;
  storeKeyTemplate?: string;
  /** Ask the service even when a stored result exists (msg.reprovision, msg.rebootstrap). */
  force?: boolean;
  policy?: Partial<RetryPolicy>;
  timeoutMs: number;
  tls?: ConnectionOptions;
  signal: AbortSignal;
  hooks?: ConductHooks;
}

export interface ConductHooks {
  onReused?: () => void;
  onAttempt?: (n: number) => void;
  onRequesting?: () => void;
  onRetry?: (info: { attempt: number; delayMs: number; error: unknown }) => void;
}

export interface Conducted {
  result: ProvisioningResult;
  identity: string;
  storeKey: string;
  /** Set when the result was obtained but could not be saved. */
  storeError?: { code: string; message: string };
}

export async function conduct<S, P>(
  dialect: DeviceDialect<S, P>,
  settings: S,
  opts: ConductOptions,
): Promise<Conducted> {
  const { name: identity } = resolveIdentity(dialect.identity, { ...opts.identity, env: opts.env });
  const storeKey = opts.storeKey || storeKeyFor(dialect.id, identity, opts.storeKeyTemplate);
  let policy: RetryPolicy;
  try {
    policy = validateRetryPolicy(opts.policy);
  } catch (err) {
    throw finalError("CONFIG", (err as Error).message);
  }
  const endpoint = dialect.endpointOf(settings, opts.env);

  if (opts.store && !opts.force) {
    const keys = [storeKey, ...(opts.storeKey ? [] : (dialect.legacyStoreKeys?.(identity) ?? []))];
    for (const key of keys) {
      const stored = await findReusable(opts.store, key, {
        dialect: dialect.id,
        endpoint,
        deviceName: identity,
      });
      if (stored) {
        opts.hooks?.onReused?.();
        return { result: stored, identity, storeKey };
      }
    }
  }

  // Prepared after the reuse check: preparing may make a key pair, which a reuse never needs.
  const prepared = await dialect.prepare(settings, identity, opts.env);
  const result = await runWithRetry(
    policy,
    (n) => {
      opts.hooks?.onAttempt?.(n);
      return dialect.attempt(prepared, {
        signal: opts.signal,
        timeoutMs: opts.timeoutMs,
        tls: opts.tls,
        onRequesting: opts.hooks?.onRequesting,
      });
    },
    {
      signal: opts.signal,
      onRetry: opts.hooks?.onRetry,
      shouldRetry: (e) => (dialect.shouldRetry ? dialect.shouldRetry(e, settings) : !isFinal(e)),
    },
  );

  const out: Conducted = { result, identity, storeKey };
  if (opts.store) {
    try {
      await saveResult(opts.store, storeKey, result);
    } catch (err) {
      const e = asProvisioningError(err);
      out.storeError = { code: (err as { code?: string }).code ?? e.code, message: e.message };
    }
  }
  return out;
}
