/**
 * Everyware / Kura provisioning's device side as a DeviceDialect (lib/client/dialect.ts):
 * one attempt is ./device.ts's provisionKuraDevice; the conductor does identity, reuse,
 * retry and save. The identity is the client id (msg.clientId, else the dialog's, else
 * the node gives the main network interface's MAC as Kura does: defaultKuraClientId); the
 * user name defaults to Everyware's "<client id>-<serial number>" (defaultKuraUsername).
 *
 * Retries follow ESF's provisioning settings: "retry-interval: the period of time after a
 * timeout, or after which a failure has occurred in the provisioning process, for the
 * device to retry", "retry-max-attempts: if set to -1, the device tries until it
 * succeeds". A provision broker refuses the CONNECT of a device whose provision request
 * does not exist yet, and Everyware's documentation has the device connect "once the
 * request is created": with `retryRefused` (the node sets it when the user asks for
 * retries) a refused CONNECT and a service's 404 are retried like a timeout, so a device
 * waits for its request to appear. Anything else final stays final (a wrong activation
 * key, an answer ca-authentication refuses, settings that cannot work).
 */
import type { DeviceDialect } from "../../client/dialect";
import { codeOf, isFinal } from "../../model/errors";
import type { ProvisioningResult } from "../../model/result";
import {
  checkKuraDeviceSettings,
  defaultKuraUsername,
  provisionBrokerOf,
  provisionKuraDevice,
  type KuraDeviceSettings,
} from "./device";
import type { KuraDeviceIdentity, KuraTopics } from "./namespace";

export interface KuraDialectSettings {
  /** broker-url: mqtts://host (8883 by default), mqtt://host (1883 only when written so), ssl://, tcp://. */
  brokerUrl: string;
  /** account-name: the provision account. */
  accountName: string;
  /** username; empty: "<client id>-<serial number>", or the client id without a serial number. */
  username?: string;
  password: string;
  activationKey?: string;
  /** What the provision message carries under Kura's BIRTH metric names. */
  identity?: KuraDeviceIdentity;
  caAuthentication?: boolean;
  /** PEMs of the roots ca-authentication trusts (the tls-config's CA). */
  trustedCas?: string[];
  topics?: KuraTopics;
  /** Retry a refused CONNECT and a 404 as well: the provision request may be created later. */
  retryRefused?: boolean;
  /** Largest answer read, in bytes (default 1 MiB). */
  maxAnswerBytes?: number;
}

export type KuraPrepared = KuraDeviceSettings & { maxAnswerBytes?: number };

/** True for "no provision request (yet)": a CONNECT refused by the provision broker, or the service's 404. */
export function isMissingRequest(err: unknown): boolean {
  const code = codeOf(err);
  const status = (err as { status?: unknown }).status;
  return (
    (code === "DENIED" && typeof status === "string" && status.startsWith("CONNACK")) ||
    (code === "NOT_FOUND" && status === 404)
  );
}

export const kuraDialect: DeviceDialect<KuraDialectSettings, KuraPrepared> = {
  id: "kura",
  identity: { messageProperty: "clientId" },
  endpointOf(settings) {
    return provisionBrokerOf(settings.brokerUrl).where;
  },
  prepare(settings, identity) {
    const prepared: KuraPrepared = {
      brokerUrl: settings.brokerUrl,
      accountName: settings.accountName,
      clientId: identity,
      username: settings.username || defaultKuraUsername(identity, settings.identity?.serialNumber),
      password: settings.password,
      activationKey: settings.activationKey || undefined,
      identity: settings.identity,
      caAuthentication: settings.caAuthentication === true,
      trustedCas: settings.trustedCas,
      topics: settings.topics,
      maxAnswerBytes: settings.maxAnswerBytes,
    };
    try {
      checkKuraDeviceSettings(prepared);
      return Promise.resolve(prepared);
    } catch (err) {
      return Promise.reject(err as Error);
    }
  },
  attempt(prepared, opts): Promise<ProvisioningResult> {
    return provisionKuraDevice(prepared, {
      timeoutMs: opts.timeoutMs,
      signal: opts.signal,
      tls: opts.tls,
      onRequesting: opts.onRequesting,
      maxAnswerBytes: prepared.maxAnswerBytes,
    });
  },
  shouldRetry(error, settings) {
    return !isFinal(error) || (settings.retryRefused === true && isMissingRequest(error));
  },
};
