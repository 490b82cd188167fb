/**
 * What a failed TLS connection means, in words a person can act on. Node reports
 * certificate problems with OpenSSL's X509_V_ERR_* names as `err.code` (see Node's
 * tls docs, "X509 certificate error codes"), host-name mismatches as
 * ERR_TLS_CERT_ALTNAME_INVALID, and alerts the server sent as ERR_SSL_*_ALERT_*. Every
 * one of these is final: retrying the same handshake cannot change its outcome.
 */

export type TlsFailureKind =
  | "unknown-ca"
  | "wrong-host"
  | "expired"
  | "not-yet-valid"
  | "revoked"
  | "refused-by-server"
  | "not-tls"
  | "no-common-version"
  | "bad-local-material"
  | "handshake";

export interface TlsFailure {
  kind: TlsFailureKind;
  /** One sentence, no certificate contents. */
  text: string;
  /** The code Node gave, for logs and flows. */
  code: string;
}

const UNKNOWN_CA = new Set([
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "UNABLE_TO_GET_ISSUER_CERT",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
  "SELF_SIGNED_CERT_IN_CHAIN",
  "DEPTH_ZERO_SELF_SIGNED_CERT",
  "CERT_UNTRUSTED",
  "CERT_SIGNATURE_FAILURE",
  "CERT_REJECTED",
  "INVALID_CA",
  "PATH_LENGTH_EXCEEDED",
  "INVALID_PURPOSE",
]);

const TEXT: Record<TlsFailureKind, string> = {
  "unknown-ca":
    "the server's certificate is not signed by a CA this side trusts (set the CA in the tls-config)",
  "wrong-host": "the server's certificate is for another host name than the one connected to",
  expired: "the server's certificate has expired",
  "not-yet-valid": "the server's certificate is not valid yet (check this machine's clock)",
  revoked: "the server's certificate has been revoked",
  "refused-by-server": "the server refused this side's certificate",
  "not-tls": "the server does not speak TLS on this port",
  "no-common-version": "the server and this side have no TLS version or cipher suite in common",
  "bad-local-material": "the certificate or key in the tls-config cannot be used",
  handshake: "the TLS handshake failed",
};

function kindOf(code: string): TlsFailureKind | undefined {
  if (UNKNOWN_CA.has(code)) return "unknown-ca";
  if (code === "ERR_TLS_CERT_ALTNAME_INVALID" || code === "HOSTNAME_MISMATCH") return "wrong-host";
  if (code === "CERT_HAS_EXPIRED") return "expired";
  if (code === "CERT_NOT_YET_VALID") return "not-yet-valid";
  if (code === "CERT_REVOKED") return "revoked";
  if (/^ERR_SSL_(SSLV3|TLSV1|TLSV13)_ALERT_/.test(code)) {
    if (/PROTOCOL_VERSION|HANDSHAKE_FAILURE|INSUFFICIENT_SECURITY/.test(code)) return "no-common-version";
    return "refused-by-server";
  }
  if (code === "ERR_SSL_WRONG_VERSION_NUMBER" || code === "ERR_SSL_PACKET_LENGTH_TOO_LONG") return "not-tls";
  if (
    code === "ERR_SSL_UNSUPPORTED_PROTOCOL" ||
    code === "ERR_SSL_NO_PROTOCOLS_AVAILABLE" ||
    code === "ERR_SSL_NO_SHARED_CIPHER"
  )
    return "no-common-version";
  if (code.startsWith("ERR_OSSL_PEM") || code === "ERR_OSSL_X509_KEY_VALUES_MISMATCH")
    return "bad-local-material";
  if (code.startsWith("ERR_SSL") || code.startsWith("ERR_TLS")) return "handshake";
  return undefined;
}

/** The TLS meaning of a connection error, or undefined when it is not a TLS failure. */
export function tlsFailureOf(err: unknown): TlsFailure | undefined {
  for (let e = err as { code?: unknown; cause?: unknown } | undefined, depth = 0; e && depth < 4; depth++) {
    if (typeof e.code === "string") {
      const kind = kindOf(e.code);
      if (kind) return { kind, code: e.code, text: TEXT[kind] };
    }
    if (e.cause === e) break;
    e = e.cause as typeof e;
  }
  return undefined;
}

/** "TLS with <where> failed: <what it means> (<code>)". */
export function describeTlsFailure(failure: TlsFailure, where: string): string {
  return `TLS with ${where} failed: ${failure.text} (${failure.code})`;
}
