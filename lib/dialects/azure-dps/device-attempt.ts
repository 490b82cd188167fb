/**
 * Azure DPS device side: one attempt (DeviceDialect.attempt). Signs a fresh SAS token,
 * opens the transport's session, runs the registration (device-flow.ts) within the
 * attempt's time, and gives the result in the neutral shape. The attempt's timer and the
 * caller's abort end it the same way, through one signal; the conductor retries.
 */
import type { AttemptOptions } from "../../client/dialect";
import { finalError, transientError } from "../../model/errors";
import type { ProvisioningResult } from "../../model/result";
import { AbortedError } from "../../retry/run";
import { runRegistration, type DpsSession, type SessionOptions } from "./device-flow";
import { openHttpsSession } from "./device-https";
import { openMqttSession } from "./device-mqtt";
import { checkCertificateIdentity, type AzurePrepared } from "./device-prepare";
import { azureResultOf } from "./device-result";
import { dpsResource, signSas, TOKEN_LIFETIME_S } from "./sas";

/** The SAS token for this attempt (symmetric keys), valid TOKEN_LIFETIME_S from now, rounded up as the Node SDK's anHourFromNow (azure-iot-common authorization.ts). */
export function attemptToken(p: AzurePrepared, nowMs: number): string | undefined {
  if (p.deviceKey === undefined) return undefined;
  return signSas(
    dpsResource(p.idScope, p.registrationId),
    p.deviceKey,
    Math.ceil(nowMs / 1000 + TOKEN_LIFETIME_S),
  );
}

/** X.509: the TLS options must carry the client certificate, whose CN is the registration id. */
function checkClientCertificate(p: AzurePrepared, opts: AttemptOptions): void {
  if (p.attestation !== "x509") return;
  const cert = opts.tls?.cert;
  const first = Array.isArray(cert) ? cert[0] : cert;
  if (!first || !opts.tls?.key)
    throw finalError("CONFIG", "X.509 attestation needs a client certificate and key (a TLS configuration)");
  checkCertificateIdentity(first, p.registrationId);
}

export async function attemptAzureDps(p: AzurePrepared, opts: AttemptOptions): Promise<ProvisioningResult> {
  if (opts.signal.aborted) throw new AbortedError();
  checkClientCertificate(p, opts);
  const where = p.target.endpoint;
  const started = Date.now();
  const inner = new AbortController();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    inner.abort();
  }, opts.timeoutMs);
  const onAbort = () => inner.abort();
  opts.signal.addEventListener("abort", onAbort, { once: true });
  const so: SessionOptions = {
    password: attemptToken(p, started),
    tls: opts.tls,
    signal: inner.signal,
    timeoutMs: opts.timeoutMs,
    onRequesting: opts.onRequesting,
  };
  let session: DpsSession | undefined;
  try {
    session = p.target.transport === "mqtt" ? openMqttSession(p, so) : openHttpsSession(p, so);
    const state = await runRegistration(session, {
      where,
      deadline: started + opts.timeoutMs,
      signal: inner.signal,
      maxAnswerBytes: p.maxAnswerBytes,
    });
    return azureResultOf(p, state, new Date());
  } catch (err) {
    if (opts.signal.aborted) throw new AbortedError();
    if (timedOut) throw transientError("TIMEOUT", `no answer from ${where} within ${opts.timeoutMs} ms`);
    throw err;
  } finally {
    clearTimeout(timer);
    opts.signal.removeEventListener("abort", onAbort);
    await session?.close();
  }
}
