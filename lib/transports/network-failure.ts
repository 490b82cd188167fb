/**
 * The one reading of a failed connection, for every transport and every protocol: the
 * same socket error is final in all of them or retried in all of them.
 *
 * - A TLS failure (a certificate that does not verify, no common version, unusable local
 *   key) is final: the same handshake gives the same outcome, and a retry loop would hide
 *   the reason (see tls-failure.ts).
 * - A timeout is TIMEOUT, transient.
 * - Everything else that went wrong on the way (refused, reset, unreachable, a name that
 *   does not resolve yet, a connection that closed before the answer) is CONNECT,
 *   transient: gateways boot before their network, and services restart.
 * CoAP over TCP reports its own codes (coap-tcp/errors.ts); they are read here too.
 */
import { ProvisioningError, type ErrorCode } from "../model/errors";
import { describeTlsFailure, tlsFailureOf } from "./tls-failure";

/** Node's errno codes that mean "no answer in time". */
const TIMEOUT_CODES = new Set(["ETIMEDOUT", "ESOCKETTIMEDOUT", "UND_ERR_CONNECT_TIMEOUT", "COAP_TIMEOUT"]);

/** CoAP over TCP's codes that are not a plain connection failure. */
const COAP_CODES: Record<string, ErrorCode> = {
  COAP_TLS: "TLS",
  COAP_TIMEOUT: "TIMEOUT",
  COAP_CANCELLED: "CANCELLED",
  COAP_BUSY: "BUSY",
  COAP_TOO_LARGE: "TOO_LARGE",
  COAP_PROTOCOL: "INVALID_ANSWER",
  COAP_BAD_REQUEST: "CONFIG",
};

function codeChain(err: unknown): string[] {
  const codes: string[] = [];
  let e = err as { code?: unknown; cause?: unknown } | undefined;
  for (let depth = 0; e && typeof e === "object" && depth < 4; depth++) {
    if (typeof e.code === "string") codes.push(e.code);
    if (e.cause === e) break;
    e = e.cause as typeof e;
  }
  return codes;
}

/**
 * The ProvisioningError for a failure to reach or talk to `where` (a host and port as a
 * person reads it; never a URI with credentials). An error that already is ours passes
 * through unchanged.
 */
export function classifyNetworkFailure(err: unknown, where: string): ProvisioningError {
  if (err instanceof ProvisioningError) return err;
  const tls = tlsFailureOf(err);
  if (tls) return new ProvisioningError("TLS", describeTlsFailure(tls, where), { cause: err });
  const codes = codeChain(err);
  const detail =
    codes[0] ?? (err instanceof Error && err.message ? err.message : typeof err === "string" ? err : "error");
  if (codes.some((c) => TIMEOUT_CODES.has(c)))
    return new ProvisioningError("TIMEOUT", `no answer from ${where} in time (${detail})`, { cause: err });
  const coap = codes.map((c) => COAP_CODES[c]).find((c) => c !== undefined);
  if (coap === "TLS")
    return new ProvisioningError("TLS", `TLS with ${where} failed (${detail})`, { cause: err });
  if (coap) return new ProvisioningError(coap, `${where}: ${messageOf(err)} (${detail})`, { cause: err });
  return new ProvisioningError("CONNECT", `cannot reach ${where}: ${detail}`, { cause: err });
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
