import type { X509Certificate } from "node:crypto";
import { EKU_CLIENT_AUTH } from "./signer";

export type ChainResult =
  | { ok: true; path: X509Certificate[] }
  | { ok: false; code: "CHAIN_UNTRUSTED" | "CHAIN_EXPIRED" | "EKU_MISSING" | "CERT_INVALID"; reason: string };

export interface ChainOptions {
  /** Validate at this time (plgd: the leaf's midpoint when expired certificates are allowed). */
  at: Date;
  /** Require EKU clientAuth on the leaf (plgd DPS does). */
  requireClientAuth?: boolean;
}

const MAX_DEPTH = 8;

function validAt(c: X509Certificate, at: Date): boolean {
  return new Date(c.validFrom).getTime() <= at.getTime() && at.getTime() <= new Date(c.validTo).getTime();
}

function signedBy(child: X509Certificate, issuer: X509Certificate): boolean {
  try {
    return child.checkIssued(issuer) && child.verify(issuer.publicKey);
  } catch {
    return false;
  }
}

/** The middle of a certificate's validity: plgd validates there when expired leaves are allowed. */
export function validityMidpoint(c: X509Certificate): Date {
  const from = new Date(c.validFrom).getTime();
  const to = new Date(c.validTo).getTime();
  return new Date(from + Math.floor((to - from) / 2));
}

/**
 * Verifies `presented` (leaf first, then any intermediates the peer sent) against the
 * configured `trusted` certificates. Reaching any trusted certificate ends the path
 * successfully: the configured chain is trusted as configured (partial chains allowed).
 * Every certificate on the path must be valid at `opts.at`; issuers must be CAs.
 */
export function verifyChain(
  presented: X509Certificate[],
  trusted: X509Certificate[],
  opts: ChainOptions,
): ChainResult {
  const leaf = presented[0];
  if (!leaf) return { ok: false, code: "CERT_INVALID", reason: "no certificate was presented" };
  if (!validAt(leaf, opts.at)) {
    const expired = new Date(leaf.validTo).getTime() < opts.at.getTime();
    return {
      ok: false,
      code: "CHAIN_EXPIRED",
      reason: expired
        ? `the certificate expired on ${new Date(leaf.validTo).toISOString()}`
        : "the certificate is not valid yet",
    };
  }
  if (opts.requireClientAuth) {
    const eku = leaf.keyUsage;
    if (!Array.isArray(eku) || !eku.includes(EKU_CLIENT_AUTH)) {
      return {
        ok: false,
        code: "EKU_MISSING",
        reason: "the certificate lacks extended key usage clientAuth",
      };
    }
  }
  let expiredIssuer = false;
  const walk = (cur: X509Certificate, path: X509Certificate[]): X509Certificate[] | undefined => {
    if (path.length > MAX_DEPTH) return undefined;
    for (const t of trusted) {
      if (t.fingerprint256 === cur.fingerprint256) return path;
    }
    for (const t of trusted) {
      if (t.ca && signedBy(cur, t)) {
        if (validAt(t, opts.at)) return [...path, t];
        expiredIssuer = true;
      }
    }
    for (const p of presented) {
      if (path.some((q) => q.fingerprint256 === p.fingerprint256)) continue;
      if (p.ca && signedBy(cur, p)) {
        if (!validAt(p, opts.at)) {
          expiredIssuer = true;
          continue;
        }
        const found = walk(p, [...path, p]);
        if (found) return found;
      }
    }
    return undefined;
  };
  const path = walk(leaf, [leaf]);
  if (path) return { ok: true, path };
  return expiredIssuer
    ? {
        ok: false,
        code: "CHAIN_EXPIRED",
        reason: "an issuing certificate is not valid at the time of validation",
      }
    : {
        ok: false,
        code: "CHAIN_UNTRUSTED",
        reason: "the certificate chain does not lead to a trusted certificate",
      };
}
