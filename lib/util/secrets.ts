import { randomBytes, timingSafeEqual } from "node:crypto";
import { sha256 } from "./sha256";

/** Constant-time comparison of two secrets of any lengths (compares SHA-256 digests). */
export function secretsEqual(a: string | Buffer, b: string | Buffer): boolean {
  return timingSafeEqual(sha256(a), sha256(b));
}

/** SHA-256 of a secret: a value that secretsEqual() would hash at every request, hashed once. */
export function secretDigest(s: string | Buffer): Buffer {
  return sha256(s);
}

/** secretsEqual(a, b) where `digest` is secretDigest(a). */
export function matchesDigest(digest: Buffer, b: string | Buffer): boolean {
  return timingSafeEqual(digest, secretDigest(b));
}

const ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/**
 * Bytes from the CSPRNG drawn 4 KiB at a time (one call for a few hundred tokens, as
 * Node's randomUUID() keeps its own cache of random data); each is zeroed once taken.
 */
let pool = Buffer.alloc(0);
let poolAt = 0;
function randomByte(): number {
  if (poolAt === pool.length) {
    pool = randomBytes(4096);
    poolAt = 0;
  }
  const b = pool[poolAt];
  pool[poolAt++] = 0;
  return b;
}

/** Uniform alphanumeric string from a cryptographic source (rejection sampling). */
export function randomAlphanumeric(length: number): string {
  let out = "";
  while (out.length < length) {
    const byte = randomByte();
    // 248 = 4 x 62: bytes above it would favour the first characters.
    if (byte < 248) out += ALNUM[byte % 62];
  }
  return out;
}

/** For messages: says a secret is there without showing any of it. */
export function redact(value: unknown): string {
  return value === undefined || value === null || value === "" ? "(none)" : "(hidden)";
}
