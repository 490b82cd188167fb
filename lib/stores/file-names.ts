import { createHash } from "node:crypto";

/** The header of a store directory (KDF salt, key check); never holds a secret. */
export const HEADER_FILE = "store.json";

const SUFFIX = ".json";
/** Longest encoded part that keeps the whole name under the common 255-byte limit. */
const MAX_HEX = 240;

/**
 * One file per key. Hex rather than base64url so the name is the same on
 * case-insensitive file systems (macOS, Windows) and never holds a reserved character.
 * Keys too long for that get a SHA-256 name; the record inside names its key, so both
 * forms can be listed.
 */
export function fileNameFor(key: string): string {
  const hex = Buffer.from(key, "utf8").toString("hex");
  if (hex.length <= MAX_HEX) return `k-${hex}${SUFFIX}`;
  return `h-${createHash("sha256").update(key, "utf8").digest("hex")}${SUFFIX}`;
}

/** True for a name this backend writes for an entry (not the header, not a temp file). */
export function isEntryFileName(name: string): boolean {
  return /^(k-(?:[0-9a-f]{2})+|h-[0-9a-f]{64})\.json$/.test(name);
}

/**
 * The key an entry file name spells, when the name spells it (hex names); undefined for
 * a hashed name, whose key only the record inside tells.
 */
export function keyOfFileName(name: string): string | undefined {
  const m = /^k-((?:[0-9a-f]{2})+)\.json$/.exec(name);
  return m ? Buffer.from(m[1], "hex").toString("utf8") : undefined;
}
