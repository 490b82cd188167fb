/**
 * X.509 attestation as Azure DPS does it ("X.509 certificate attestation", Azure docs):
 * the TLS handshake proves the device holds the leaf's key; the leaf's subject CN is the
 * registration id; an individual enrollment names the device's own certificate, a group
 * names a CA or intermediate certificate that the chain the device sent must reach. The
 * chain is checked here (issuer names, signatures, validity) rather than by OpenSSL,
 * because an enrollment may trust an intermediate (OpenSSL wants a self-signed anchor) and
 * the same TLS listener also serves symmetric-key devices that send no certificate.
 */
import { constants, X509Certificate } from "node:crypto";
import type { DetailedPeerCertificate, TLSSocket, TlsOptions } from "node:tls";

/** Longest chain followed: leaf, a few intermediates, a root. */
const MAX_CHAIN = 8;

/**
 * A listener's TLS options for X.509 attestation: the client certificate asked for, never
 * required by TLS itself (symmetric-key devices send none), and no session resumption. A
 * resumed session carries the peer's leaf but not the chain it sent (OpenSSL,
 * SSL_get_peer_cert_chain: "If the session is resumed peers do not send certificates"),
 * and Node's https.Agent resumes by default: a device's poll would lose its intermediate.
 */
export function clientCertificateTls(tls: TlsOptions): TlsOptions {
  return {
    ...tls,
    requestCert: true,
    rejectUnauthorized: false,
    secureOptions: (tls.secureOptions ?? 0) | constants.SSL_OP_NO_TICKET,
  };
}

/** The certificates a TLS peer sent, leaf first; empty when it sent none. */
export function peerChain(socket: TLSSocket): X509Certificate[] {
  let cert: DetailedPeerCertificate | undefined;
  try {
    cert = socket.getPeerCertificate(true);
  } catch {
    return [];
  }
  const out: X509Certificate[] = [];
  const seen = new Set<string>();
  while (cert && cert.raw && out.length < MAX_CHAIN) {
    const fp = cert.fingerprint256;
    if (seen.has(fp)) break;
    seen.add(fp);
    try {
      out.push(new X509Certificate(cert.raw));
    } catch {
      break;
    }
    cert = cert.issuerCertificate;
  }
  return out;
}

/** The subject's common name, or undefined. */
export function commonName(cert: X509Certificate): string | undefined {
  for (const line of cert.subject.split("\n")) if (line.startsWith("CN=")) return line.slice(3);
  return undefined;
}

export function parseCertificates(pems: readonly string[] | undefined): X509Certificate[] {
  const out: X509Certificate[] = [];
  for (const pem of pems ?? []) {
    const blocks = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/gu) ?? [];
    for (const b of blocks) out.push(new X509Certificate(b));
  }
  return out;
}

function valid(c: X509Certificate, nowMs: number): boolean {
  return Date.parse(c.validFrom) <= nowMs && nowMs <= Date.parse(c.validTo);
}

function issuedBy(child: X509Certificate, issuer: X509Certificate): boolean {
  try {
    return child.checkIssued(issuer) && child.verify(issuer.publicKey);
  } catch {
    return false;
  }
}

/** Whether the leaf is one of `trusted` itself (an individual enrollment's certificate). */
export function leafIs(
  chain: readonly X509Certificate[],
  trusted: readonly X509Certificate[],
  nowMs: number,
) {
  const leaf = chain[0];
  return !!leaf && valid(leaf, nowMs) && trusted.some((t) => t.fingerprint256 === leaf.fingerprint256);
}

/**
 * Whether the chain, from its leaf, reaches one of `trusted` (a group's CA or
 * intermediate): every link issued and signed by the next, every certificate in its
 * validity, and the certificates above the leaf CAs.
 */
export function chainReaches(
  chain: readonly X509Certificate[],
  trusted: readonly X509Certificate[],
  nowMs: number,
): boolean {
  for (let i = 0; i < chain.length; i++) {
    const c = chain[i];
    if (!valid(c, nowMs) || (i > 0 && !c.ca)) return false;
    if (i > 0 && trusted.some((t) => t.fingerprint256 === c.fingerprint256)) return true;
    for (const t of trusted) if (t.ca && valid(t, nowMs) && issuedBy(c, t)) return true;
    const next = chain[i + 1];
    if (!next || !issuedBy(c, next)) return false;
  }
  return false;
}
