/**
 * ThingsBoard's device side as a DeviceDialect (lib/client/dialect.ts): the conductor does
 * identity, reuse, retry and save; this file says what is ThingsBoard's own. Identity and
 * the provision key and secret fall back to the environment names of ThingsBoard's
 * reference self-provisioning script (THINGSBOARD_DEVICE_NAME, then the host name, then
 * `teg-` + 7 random digits; THINGSBOARD_PROVISION_DEVICE_KEY / _SECRET). The request is
 * prepared once, so an X.509 key and certificate made here are the same on every retry.
 */
import type { DeviceDialect } from "../../client/dialect";
import { conduct } from "../../client/conductor";
import type { EnvLookup } from "../../client/env-ref";
import { finalError, isFinal } from "../../model/errors";
import type { ProvisioningResult } from "../../model/result";
import {
  exchangeFor,
  isRefusal,
  prepareRequest,
  provisionOnce,
  resultEndpoint,
  DEFAULT_TIMEOUT_MS,
  type PrepareDeps,
  type PreparedRequest,
  type TbCredentialsRequest,
  type TbExchange,
  type TbProvisionInput,
  type TbProvisionOptions,
} from "./client";

export const TB_KEY_ENV = "THINGSBOARD_PROVISION_DEVICE_KEY";
export const TB_SECRET_ENV = "THINGSBOARD_PROVISION_DEVICE_SECRET";
export const TB_NAME_ENV = "THINGSBOARD_DEVICE_NAME";

export interface TbDeviceSettings {
  /** mqtts://host:8883, mqtt://, https://host[/base], http://, coap://host:5683 */
  endpoint: string;
  /** Empty: the environment's THINGSBOARD_PROVISION_DEVICE_KEY. */
  provisionDeviceKey?: string;
  /** Empty: the environment's THINGSBOARD_PROVISION_DEVICE_SECRET. */
  provisionDeviceSecret?: string;
  credentials?: TbCredentialsRequest;
  gateway?: boolean;
  /** Retry NOT_FOUND and FAILURE as well (a profile that is being set up). */
  retryRefusals?: boolean;
}

export interface TbDeviceDeps extends PrepareDeps {
  /** Replaces the transport chosen by scheme (tests, or a transport of the caller's). */
  exchange?: TbExchange;
}

function endpointUrl(endpoint: string): URL {
  try {
    return new URL(endpoint);
  } catch {
    throw finalError("CONFIG", "the server address is not a valid URI");
  }
}

/** ThingsBoard's DeviceDialect; `deps` replaces the certificate maker or the transport. */
export function thingsboardDevice(deps: TbDeviceDeps = {}): DeviceDialect<TbDeviceSettings, PreparedRequest> {
  return {
    id: "thingsboard",
    identity: {
      messageProperty: "deviceName",
      envVar: TB_NAME_ENV,
      hostname: true,
      randomPrefix: "teg-",
    },
    endpointOf(settings) {
      const uri = endpointUrl(settings.endpoint);
      exchangeFor(uri);
      return resultEndpoint(uri);
    },
    prepare(settings, identity, env: EnvLookup) {
      return prepareRequest(
        {
          endpoint: settings.endpoint,
          provisionDeviceKey: settings.provisionDeviceKey || (env(TB_KEY_ENV) ?? ""),
          provisionDeviceSecret: settings.provisionDeviceSecret || (env(TB_SECRET_ENV) ?? ""),
          deviceName: identity,
          credentials: settings.credentials,
          gateway: settings.gateway,
        },
        deps,
      );
    },
    attempt(prepared, opts): Promise<ProvisioningResult> {
      return provisionOnce(prepared, { ...opts, exchange: deps.exchange });
    },
    shouldRetry(error, settings) {
      return !isFinal(error) || (settings.retryRefusals === true && isRefusal(error));
    },
  };
}

/** The dialect with the real transports, as the registry and the nodes use it. */
export const thingsboardDialect = thingsboardDevice();

const noEnv: EnvLookup = () => undefined;

/**
 * Provisions with retries, without a store: the conductor with this dialect, for callers
 * that hold every setting themselves (tests, benchmarks, the serving side's own checks).
 * Nothing falls back to the environment here; a blank name is a CONFIG error.
 */
export async function provision(
  input: TbProvisionInput,
  options: TbProvisionOptions = {},
): Promise<ProvisioningResult> {
  if (!input.deviceName.trim()) throw finalError("CONFIG", "the device name is blank");
  const dialect = thingsboardDevice({
    createCertificate: options.createCertificate,
    exchange: options.exchange,
  });
  const { result } = await conduct(
    dialect,
    {
      endpoint: input.endpoint,
      provisionDeviceKey: input.provisionDeviceKey,
      provisionDeviceSecret: input.provisionDeviceSecret,
      credentials: input.credentials,
      gateway: input.gateway,
      retryRefusals: options.retryRefusals,
    },
    {
      identity: { setting: input.deviceName },
      env: noEnv,
      policy: options.policy,
      timeoutMs: options.timeoutMs ?? DEFAULT_TIMEOUT_MS,
      tls: options.tls,
      signal: options.signal ?? new AbortController().signal,
      random: options.random,
      hooks: {
        onAttempt: options.onAttempt,
        onRequesting: options.onRequesting,
        onRetry: options.onRetry,
      },
    },
  );
  return result;
}
