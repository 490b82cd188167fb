/**
 * plgd DPS as a device dialect (lib/client/dialect.ts): one attempt is one full
 * provisioning run (run.ts) against one endpoint, and its result is built the one way
 * (result.ts). The conductor does identity, reuse, retry and save around it, as for every
 * dialect; the long-running dps-client node (client.ts) runs the same provisioning run
 * under plgd's own retry, renewal and reset rules.
 */
import type { ConnectionOptions } from "node:tls";
import type { DeviceDialect } from "../../client/dialect";
import { finalError } from "../../model/errors";
import { DEFAULT_EXPIRING_LIMIT_S } from "../../pki/validity";
import { parseCoapUri } from "../../transports/coap-tcp";
import { systemTimerClock, type TimerClock } from "../../util/long-timer";
import { UUID_RE } from "./ocf";
import { buildResult } from "./result";
import { missingSteps, provisionOnce, RunAborted, type DpsAnswers } from "./run";
import { coapTcpConnector, type DpsConnector } from "./transport";

export interface PlgdDpsSettings {
  /** The DPS service's coaps+tcp:// URI. */
  endpoint: string;
  deviceName?: string;
  /** Default: coaps+tcp with the attempt's TLS options (the manufacturer certificate and key). */
  connect?: DpsConnector;
  /** A certificate expiring within this many seconds is refused. Default 3600. */
  expiringLimitS?: number;
  clock?: TimerClock;
}

export interface PlgdDpsPrepared {
  endpoint: string;
  deviceId: string;
  deviceName?: string;
  connect?: DpsConnector;
  expiringLimitS: number;
  clock: TimerClock;
}

function checkedEndpoint(uri: string): string {
  const endpoint = (uri ?? "").trim();
  let secure: boolean;
  try {
    secure = parseCoapUri(endpoint).secure;
  } catch (err) {
    throw finalError(
      "CONFIG",
      `the DPS endpoint ${JSON.stringify(endpoint)} is not a CoAP URI: ${(err as Error).message}`,
    );
  }
  if (!secure)
    throw finalError(
      "CONFIG",
      `${endpoint}: plgd DPS needs coaps+tcp:// (TLS with the manufacturer certificate)`,
    );
  return endpoint;
}

export const plgdDpsDialect: DeviceDialect<PlgdDpsSettings, PlgdDpsPrepared> = {
  id: "plgd-dps",
  // The plgd device id: msg.deviceId or the dialog, a UUID; no other fallback.
  identity: { messageProperty: "deviceId" },

  endpointOf(settings) {
    return checkedEndpoint(settings.endpoint);
  },

  async prepare(settings, identity) {
    if (!UUID_RE.test(identity)) throw finalError("CONFIG", "the plgd device id must be a UUID");
    return {
      endpoint: checkedEndpoint(settings.endpoint),
      deviceId: identity.toLowerCase(),
      deviceName: settings.deviceName,
      connect: settings.connect,
      expiringLimitS: settings.expiringLimitS ?? DEFAULT_EXPIRING_LIMIT_S,
      clock: settings.clock ?? systemTimerClock,
    };
  },

  async attempt(p, opts) {
    const connect = p.connect ?? connectorOf(opts.tls);
    const answers: DpsAnswers = {};
    // The attempt's time is shared by its steps: each gets what is left of it.
    const until = p.clock.now() + opts.timeoutMs;
    let told = false;
    try {
      await provisionOnce({
        connect,
        endpoint: p.endpoint,
        deviceId: p.deviceId,
        steps: missingSteps(answers),
        answers,
        signal: opts.signal,
        stepTimeoutMs: () => Math.max(1, until - p.clock.now()),
        expiringLimitS: p.expiringLimitS,
        clock: p.clock,
        onStep: (_step, phase) => {
          if (phase === "get" && !told) {
            told = true;
            opts.onRequesting?.();
          }
        },
      });
    } catch (err) {
      if (err instanceof RunAborted) throw finalError("CANCELLED", "provisioning was stopped");
      throw err;
    }
    return buildResult(answers, {
      endpoint: p.endpoint,
      deviceId: p.deviceId,
      deviceName: p.deviceName,
      obtainedAt: p.clock.now(),
    });
  },
};

function connectorOf(tls: ConnectionOptions | undefined): DpsConnector {
  if (!tls?.cert || !tls.key)
    throw finalError("CONFIG", "plgd DPS needs the manufacturer certificate and key (a tls-config)");
  return coapTcpConnector(tls);
}
