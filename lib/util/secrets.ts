import { createHash, randomBytes, timingSafeEqual } from "node:crypto";

/** Constant-time comparison of two secrets of any lengths (compares SHA-256 digests). */
export function secretsEqual(a: string | Buffer, b: string | Buffer): boolean {
  const da = createHash("sha256").update(a).digest();
  const db = createHash("sha256").update(b).digest();
  return timingSafeEqual(da, db);
}

const ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/** Uniform alphanumeric string from a cryptographic source (rejection sampling). */
export function randomAlphanumeric(length: number): string {
  let out = "";
  while (out.length < length) {
    for (const byte of randomBytes(length * 2)) {
      if (byte < 248 && out.length < length) out += ALNUM[byte % 62];
    }
  }
  return out;
}

/** For messages: says a secret is there without showing any of it. */
export function redact(value: unknown): string {
  return value === undefined || value === null || value === "" ? "(none)" : "(hidden)";
}
