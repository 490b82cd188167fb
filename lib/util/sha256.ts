import * as crypto from "node:crypto";

/**
 * SHA-256 in one call. crypto.hash() (Node 20.12 and 21.7 on) hashes without making a Hash
 * object, about three times faster for the short inputs a request hashes (a provision
 * key, a secret, an index value); older Node versions take createHash().
 */
const oneShot = (crypto as { hash?: (alg: string, data: string | Buffer, enc: string) => string | Buffer })
  .hash;

export function sha256(data: string | Buffer): Buffer {
  if (oneShot) return oneShot("sha256", data, "buffer") as Buffer;
  return crypto.createHash("sha256").update(data).digest();
}

export function sha256Hex(data: string | Buffer): string {
  if (oneShot) return oneShot("sha256", data, "hex") as string;
  return crypto.createHash("sha256").update(data).digest("hex");
}
