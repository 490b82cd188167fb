/**
 * The one error vocabulary of the package. Every failure a node reports, whatever the
 * protocol, is a ProvisioningError: a neutral `code` (copied to msg.error.code, so a flow
 * that switches protocol keeps its Switch and Catch nodes), whether retrying can help
 * (`final`), and, where the peer said something in its own words, that word in `status`
 * (ThingsBoard's "FAILURE", an HTTP 403, a CoAP "4.03"). The README's error table lists
 * the codes; `ERROR_CODES` is that table in code, and a test keeps the two equal.
 */

export type ErrorCode =
  | "CONFIG"
  | "NOT_FOUND"
  | "DENIED"
  | "REFUSED"
  | "CONFLICT"
  | "INVALID"
  | "BUSY"
  | "UNAVAILABLE"
  | "TIMEOUT"
  | "CONNECT"
  | "TLS"
  | "INVALID_ANSWER"
  | "TOO_LARGE"
  | "CANCELLED"
  | "STORE"
  | "INTERNAL";

export interface ErrorCodeInfo {
  /** The default of `final` for errors of this code. */
  final: boolean;
  /** What the code means, in the README's words. */
  meaning: string;
}

export const ERROR_CODES: Readonly<Record<ErrorCode, ErrorCodeInfo>> = Object.freeze({
  CONFIG: { final: true, meaning: "this side's settings cannot work (a missing key, a bad address)" },
  NOT_FOUND: { final: true, meaning: "the service does not know this device, key or configuration" },
  DENIED: { final: true, meaning: "the service refused the proof: a wrong secret, key or certificate" },
  REFUSED: { final: true, meaning: "the service refused the request for another reason" },
  CONFLICT: { final: true, meaning: "the name, id or credentials are held by another device" },
  INVALID: { final: true, meaning: "a request or a record is malformed" },
  BUSY: { final: false, meaning: "the service is throttling or full; retried after the wait it asked for" },
  UNAVAILABLE: { final: false, meaning: "the service answered that it cannot serve now (5xx, 5.03)" },
  TIMEOUT: { final: false, meaning: "no answer within the attempt's time" },
  CONNECT: { final: false, meaning: "the service could not be reached, or the connection was lost" },
  TLS: { final: true, meaning: "TLS failed: a certificate that does not verify, or unusable TLS settings" },
  INVALID_ANSWER: { final: true, meaning: "the answer is not the protocol's (unreadable, undecryptable)" },
  TOO_LARGE: { final: true, meaning: "a message or body exceeds a limit" },
  CANCELLED: { final: true, meaning: "stopped by this side (redeploy, close, msg.reset)" },
  STORE: { final: false, meaning: "the credential store or registry could not be read or written" },
  INTERNAL: { final: true, meaning: "a defect in this package; the log has the details" },
});

export function isErrorCode(v: unknown): v is ErrorCode {
  return typeof v === "string" && Object.prototype.hasOwnProperty.call(ERROR_CODES, v);
}

export interface ProvisioningErrorOptions {
  /** Overrides the code's default. */
  final?: boolean;
  /** The peer's own word for the outcome: "FAILURE", 403, "4.03". */
  status?: string | number;
  /** How long the peer asked us to wait before the next attempt. */
  retryAfterMs?: number;
  cause?: unknown;
}

export class ProvisioningError extends Error {
  readonly code: ErrorCode;
  readonly final: boolean;
  readonly status?: string | number;
  readonly retryAfterMs?: number;

  constructor(code: ErrorCode, message: string, opts: ProvisioningErrorOptions = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = "ProvisioningError";
    this.code = code;
    this.final = opts.final ?? ERROR_CODES[code].final;
    if (opts.status !== undefined) this.status = opts.status;
    if (opts.retryAfterMs !== undefined) this.retryAfterMs = opts.retryAfterMs;
  }
}

/** Shorthands that read as the sentence they make: `finalError("CONFIG", "no host")`. */
export function finalError(code: ErrorCode, message: string, opts: ProvisioningErrorOptions = {}) {
  return new ProvisioningError(code, message, { ...opts, final: true });
}

export function transientError(code: ErrorCode, message: string, opts: ProvisioningErrorOptions = {}) {
  return new ProvisioningError(code, message, { ...opts, final: false });
}

/** Whether an error says retrying cannot help. */
export function isFinal(err: unknown): boolean {
  return typeof err === "object" && err !== null && (err as { final?: unknown }).final === true;
}

/** The code of any thrown value: its own when it is one of ours, INTERNAL otherwise. */
export function codeOf(err: unknown): ErrorCode {
  const c = typeof err === "object" && err !== null ? (err as { code?: unknown }).code : undefined;
  return isErrorCode(c) ? c : "INTERNAL";
}

/**
 * What a node puts into msg.error / done(err): always a ProvisioningError. Values that are
 * not ours (a defect, a library's error) become INTERNAL with their message kept, since
 * those messages come from code, not from a peer.
 */
export function asProvisioningError(err: unknown): ProvisioningError {
  if (err instanceof ProvisioningError) return err;
  const message = err instanceof Error ? err.message : String(err);
  const code = codeOf(err);
  return new ProvisioningError(code, message, { cause: err, final: isFinal(err) || undefined });
}
