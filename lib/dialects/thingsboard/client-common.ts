/**
 * What the ThingsBoard device-side transports share: the options of one exchange and the
 * errors it can end in. Every error carries a stable `code`; final ones are FinalErrors so
 * the retry policy stops, transient ones are plain Errors and get retried.
 */
import { FinalError } from "../../retry/run";
import { describeTlsFailure, tlsFailureOf } from "../../transports/tls-failure";

export type TbErrorCode =
  | "NOT_FOUND" // the server does not know the key/secret pair
  | "FAILURE" // the server refused (device exists, name blank, ...)
  | "TIMEOUT" // no answer within the attempt's time
  | "CONNECT" // could not reach or lost the server
  | "TLS" // the server's certificate did not verify, or a TLS setting is unusable
  | "REFUSED" // the server refused the session or the subscription
  | "BUSY" // the server is throttling or full: CONNACK 3 / 0x89 / 0x97, HTTP 429 or 503; retried
  | "STATUS" // an HTTP or CoAP status that is not ThingsBoard's answer
  | "INVALID_ANSWER" // an answer that is not ThingsBoard's JSON
  | "CONFIG"; // this side's configuration cannot work

export interface TbError extends Error {
  code: TbErrorCode;
}

export class TbFinalError extends FinalError implements TbError {
  constructor(
    readonly code: TbErrorCode,
    message: string,
  ) {
    super(message);
    this.name = "TbFinalError";
  }
}

export class TbTransientError extends Error implements TbError {
  constructor(
    readonly code: TbErrorCode,
    message: string,
    /** How long the server asked us to wait before the next attempt (HTTP Retry-After). */
    readonly retryAfterMs?: number,
  ) {
    super(message);
    this.name = "TbTransientError";
  }
}

export interface TbTlsOptions {
  ca?: string | Buffer | Array<string | Buffer>;
  cert?: string | Buffer;
  key?: string | Buffer;
  passphrase?: string;
  servername?: string;
  /** Verify the server's certificate. Only an explicit false turns it off. */
  rejectUnauthorized?: boolean;
}

/** Socket options for a TLS transport: verification stays on unless explicitly false. */
export function tlsSocketOptions(tls: TbTlsOptions = {}): TbTlsOptions {
  return {
    ca: tls.ca,
    cert: tls.cert,
    key: tls.key,
    passphrase: tls.passphrase,
    servername: tls.servername,
    rejectUnauthorized: tls.rejectUnauthorized !== false,
  };
}

export interface TbExchangeOptions {
  /** Time for the whole attempt: connect, request, answer. */
  timeoutMs: number;
  tls?: TbTlsOptions;
  signal?: AbortSignal;
  /** Told when the transport is connected and the request goes out. */
  onRequesting?: () => void;
}

/** Sends one request body to `uri` and resolves with the raw answer body. */
export type TbExchange = (uri: URL, body: string, opts: TbExchangeOptions) => Promise<Buffer>;

/**
 * Maps a socket or TLS error to a TbError. A certificate that does not verify is final:
 * retrying cannot fix it, and a retry loop would hide the reason.
 */
export function classifyNetworkError(err: unknown, where: string): TbError {
  const e = err as { code?: unknown; message?: unknown; cause?: unknown };
  const code = typeof e?.code === "string" ? e.code : undefined;
  const tls = tlsFailureOf(err);
  if (tls) return new TbFinalError("TLS", describeTlsFailure(tls, where));
  if (e?.cause && e.cause !== err) return classifyNetworkError(e.cause, where);
  const detail = code ?? (typeof e?.message === "string" ? e.message : "error");
  return new TbTransientError("CONNECT", `cannot reach ${where}: ${detail}`);
}

/** Host and port of a URI as a person reads it (no credentials: the URIs here carry none). */
export function describeUri(uri: URL): string {
  return `${uri.protocol}//${uri.host}`;
}
