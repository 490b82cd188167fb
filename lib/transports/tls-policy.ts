/**
 * What every TLS listener of the package offers, in one place: TLS 1.2 and later,
 * AEAD cipher suites only (RFC 9325 §4.2: AES-GCM and ChaCha20-Poly1305 with ECDHE), and
 * no renegotiation (RFC 9325 §3.5; renegotiation costs the server a full handshake per
 * request, the basis of renegotiation floods).
 */
import { constants } from "node:crypto";
import type { TLSSocket, TlsOptions } from "node:tls";

export const SERVER_MIN_TLS_VERSION = "TLSv1.2" as const;

/**
 * OpenSSL names. Node takes TLS 1.3 suites (TLS_*) and TLS 1.2 ciphers from the same
 * string (https://nodejs.org/api/tls.html#modifying-the-default-tls-cipher-suite); all
 * TLS 1.3 suites are AEAD. The TLS 1.2 ones are ECDHE with AES-GCM or ChaCha20-Poly1305,
 * for ECDSA and RSA server keys.
 */
export const SERVER_CIPHERS = [
  "TLS_AES_128_GCM_SHA256",
  "TLS_AES_256_GCM_SHA384",
  "TLS_CHACHA20_POLY1305_SHA256",
  "ECDHE-ECDSA-AES128-GCM-SHA256",
  "ECDHE-ECDSA-AES256-GCM-SHA384",
  "ECDHE-ECDSA-CHACHA20-POLY1305",
  "ECDHE-RSA-AES128-GCM-SHA256",
  "ECDHE-RSA-AES256-GCM-SHA384",
  "ECDHE-RSA-CHACHA20-POLY1305",
].join(":");

/**
 * OpenSSL's SSL_OP_NO_RENEGOTIATION: a TLS 1.2 client's renegotiation request is answered
 * with a no_renegotiation alert (TLS 1.3 has no renegotiation at all).
 */
export const SERVER_SECURE_OPTIONS = constants.SSL_OP_NO_RENEGOTIATION;

/**
 * The server defaults merged under `opts`: minVersion and ciphers may be tightened by the
 * caller (a higher minVersion is kept, a lower one is raised); secureOptions always keep
 * the no-renegotiation bit.
 */
export function serverTlsOptions<T extends TlsOptions>(opts: T): T {
  const out: T = { ...opts };
  out.minVersion =
    opts.minVersion && opts.minVersion !== "TLSv1" && opts.minVersion !== "TLSv1.1"
      ? opts.minVersion
      : SERVER_MIN_TLS_VERSION;
  out.ciphers = opts.ciphers ?? SERVER_CIPHERS;
  out.secureOptions = (opts.secureOptions ?? 0) | SERVER_SECURE_OPTIONS;
  return out;
}

/**
 * Node counts renegotiations itself (tls.CLIENT_RENEG_LIMIT within CLIENT_RENEG_WINDOW)
 * and then emits ERR_TLS_SESSION_ATTACK on the socket, but leaves the connection open
 * (https://nodejs.org/api/tls.html#client-initiated-renegotiation-attack-mitigation).
 * This destroys the socket instead; returns true when `err` was that error.
 */
export function destroyOnSessionAttack(socket: TLSSocket, err: unknown): boolean {
  if ((err as NodeJS.ErrnoException | undefined)?.code !== "ERR_TLS_SESSION_ATTACK") return false;
  socket.destroy();
  return true;
}
