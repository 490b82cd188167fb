/** Certificate validity as plgd's DPS client judges it (plgd_dps_pki.c). */

export type CertificateState = "valid" | "not-yet-valid" | "expiring" | "expired";

/** plgd's default: a certificate expiring within an hour is requested again. */
export const DEFAULT_EXPIRING_LIMIT_S = 3600;

export function certificateState(
  notBefore: Date,
  notAfter: Date,
  nowMs: number,
  expiringLimitS = DEFAULT_EXPIRING_LIMIT_S,
): CertificateState {
  if (nowMs < notBefore.getTime()) return "not-yet-valid";
  if (nowMs + expiringLimitS * 1000 > notAfter.getTime())
    return nowMs > notAfter.getTime() ? "expired" : "expiring";
  return "valid";
}

/**
 * Milliseconds until the certificate should be renewed: after 2/3 of its remaining
 * validity, with plgd's shorter rechecks close to the end; 0 when already expiring.
 */
export function renewalDelayMs(
  notAfter: Date,
  nowMs: number,
  expiringLimitS = DEFAULT_EXPIRING_LIMIT_S,
): number {
  const remainingS = Math.floor((notAfter.getTime() - nowMs) / 1000);
  if (remainingS < expiringLimitS) return 0;
  if (remainingS < 60) return 10_000;
  if (remainingS < 180) return 60_000;
  if (remainingS < 360) return 120_000;
  return Math.floor((2 * remainingS) / 3) * 1000;
}
