/** Stable codes that callers and flows can switch on (copied to msg.error.code by nodes). */
export type CoapTcpErrorCode =
  | "COAP_CONNECT" // could not open the TCP/TLS connection
  | "COAP_TLS" // TLS handshake or certificate failure
  | "COAP_TIMEOUT" // no answer in time
  | "COAP_CANCELLED" // the caller's AbortSignal fired
  | "COAP_CLOSED" // the connection ended before the answer
  | "COAP_RELEASED" // the peer sent Release (7.04)
  | "COAP_ABORTED" // the peer sent Abort (7.05)
  | "COAP_PROTOCOL" // the peer broke RFC 8323 / 7252 / 7959
  | "COAP_TOO_LARGE" // a message or body exceeds a Max-Message-Size
  | "COAP_BUSY" // a connection limit of the server was reached
  | "COAP_PROXY" // PROXY protocol on, and a connection brought no valid header in time
  | "COAP_BAD_REQUEST"; // the caller's request cannot be encoded

export class CoapTcpError extends Error {
  readonly code: CoapTcpErrorCode;

  constructor(code: CoapTcpErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "CoapTcpError";
    this.code = code;
  }
}

/** A frame or option that cannot be decoded: the connection must be aborted (RFC 8323 §5.6). */
export class CoapFormatError extends Error {
  /** true when the declared length exceeded the limit before anything was buffered. */
  readonly tooLarge: boolean;

  constructor(message: string, tooLarge = false) {
    super(message);
    this.name = "CoapFormatError";
    this.tooLarge = tooLarge;
  }
}

export function errorText(err: unknown): string {
  if (err instanceof Error) {
    // OpenSSL errors arrive as "<id>:error:<n>:SSL routines:<fn>:<reason>:<file>:<line>:..."
    const ssl = /SSL routines:[^:]*:([^:]+):/.exec(err.message);
    if (ssl) return `${ssl[1]} (${(err as NodeJS.ErrnoException).code ?? "TLS"})`;
    const code = (err as NodeJS.ErrnoException).code;
    return code && !err.message.includes(code) ? `${err.message} (${code})` : err.message;
  }
  return String(err);
}
