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
import { asProvisioningError, finalError, isFinal, ProvisioningError } from "../model/errors";
import { validateRetryPolicy, type RetryPolicy } from "../retry/policy";
import { AbortedError, runWithRetry } from "../retry/run";
import { classifyNetworkFailure } from "../transports/network-failure";
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
  /** The retry policy's jitter source; injectable for tests. */
  random?: () => number;
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

/**
 * What an attempt's failure is in the shared vocabulary: a ProvisioningError as thrown;
 * a value with an errno-like code (a socket, a TLS handshake, CoAP over TCP) as the one
 * reading of network failures gives it; anything else is a defect (INTERNAL, final), so
 * a bug is reported rather than retried forever.
 */
/** A store that cannot be read: STORE, with the store's own code (IO, WRONG_KEY) as `status`. */
function storeFailure(err: unknown, what: "read"): ProvisioningError {
  if (err instanceof ProvisioningError) return err;
  const own = (err as { code?: unknown }).code;
  return new ProvisioningError(
    "STORE",
    `the credential store could not be ${what}: ${asProvisioningError(err).message}`,
    {
      status: typeof own === "string" ? own : undefined,
      cause: err,
    },
  );
}

function failureOf(err: unknown, where: string): unknown {
  if (err instanceof ProvisioningError || err instanceof AbortedError) return err;
  const code = typeof err === "object" && err !== null ? (err as { code?: unknown }).code : undefined;
  if (typeof code === "string") return classifyNetworkFailure(err, where);
  return asProvisioningError(err);
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
      }).catch((err: unknown) => {
        throw storeFailure(err, "read");
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
      return dialect
        .attempt(prepared, {
          signal: opts.signal,
          timeoutMs: opts.timeoutMs,
          tls: opts.tls,
          onRequesting: opts.hooks?.onRequesting,
        })
        .catch((err: unknown) => {
          throw opts.signal.aborted ? new AbortedError() : failureOf(err, endpoint);
        });
    },
    {
      signal: opts.signal,
      random: opts.random,
      onRetry: opts.hooks?.onRetry,
      shouldRetry: (e) => (dialect.shouldRetry ? dialect.shouldRetry(e, settings) : !isFinal(e)),
    },
  );

  const out: Conducted = { result, identity, storeKey };
  if (opts.store) {
    try {
      await saveResult(opts.store, storeKey, result);
    } catch (err) {
      // The store's own code (IO, WRONG_KEY, ...) says more than STORE; a store error
      // without one is reported as STORE.
      const own = (err as { code?: unknown }).code;
      out.storeError = {
        code: typeof own === "string" ? own : "STORE",
        message: asProvisioningError(err).message,
      };
    }
  }
  return out;
}
