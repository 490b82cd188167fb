import { StoreError, type EntryMeta, type EntryMetaInput, type JsonValue, type StoredEntry } from "./backend";

/**
 * False when the string holds a lone UTF-16 surrogate. UTF-8 cannot encode one: Buffer.from
 * and TextEncoder write U+FFFD instead (WHATWG Encoding, "UTF-8 encode"), so "\ud800-x",
 * "\udc00-x" and "\ufffd-x" would share one file name or context variable. With the `u`
 * flag a surrogate pair is one code point, so only a lone surrogate is in category Cs
 * (String.prototype.isWellFormed, ES2024, says the same).
 */
export function isWellFormed(s: string): boolean {
  return !/\p{Cs}/u.test(s);
}

/**
 * The longest key. 256 rather than the 200 of earlier versions: registries moved their
 * keys from short prefixes ("tb/") to their dialect id ("thingsboard/"), and a key that was
 * valid must stay storable. Long keys get hashed file names (file-names.ts).
 */
export const MAX_KEY_LENGTH = 256;

/** Keys are short printable names: flows type them, and file backends map them to file names. */
export function checkKey(key: unknown): string {
  if (typeof key !== "string" || key.length === 0) throw new StoreError("INVALID_KEY", "a key is required");
  if (key.length > MAX_KEY_LENGTH)
    throw new StoreError("INVALID_KEY", `a key may be at most ${MAX_KEY_LENGTH} characters long`);
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(key))
    throw new StoreError("INVALID_KEY", "a key may not hold control characters");
  if (!isWellFormed(key))
    throw new StoreError("INVALID_KEY", "a key must be well-formed Unicode (it holds a lone surrogate)");
  return key;
}

/**
 * A value as the JSON text a backend writes; values must survive JSON: objects (or
 * strings), no functions, cycles, Buffers or NaN.
 */
export function valueText(value: unknown): string {
  if (value === undefined) throw new StoreError("INVALID_VALUE", "no value to store");
  let text: string;
  try {
    text = JSON.stringify(value);
  } catch {
    throw new StoreError("INVALID_VALUE", "the value cannot be stored (it has a cycle or a BigInt)");
  }
  if (text === undefined)
    throw new StoreError("INVALID_VALUE", "the value cannot be stored (a function or symbol)");
  return text;
}

/** A storable copy of a value, detached from the caller's object (see valueText). */
export function checkValue(value: unknown): JsonValue {
  return JSON.parse(valueText(value)) as JsonValue;
}

/** An entry's meta for a write at `now` (a Date, or its ISO text when several writes share it). */
export function makeMeta(input: EntryMetaInput | undefined, now: Date | string = new Date()): EntryMeta {
  const at = typeof now === "string" ? now : now.toISOString();
  const meta: EntryMeta = { obtainedAt: input?.obtainedAt ?? at, updatedAt: at };
  if (input?.protocol !== undefined) meta.protocol = String(input.protocol);
  if (input?.endpoint !== undefined) meta.endpoint = String(input.endpoint);
  if (input?.kind !== undefined) meta.kind = String(input.kind);
  if (input?.expiresAt !== undefined) {
    if (Number.isNaN(Date.parse(input.expiresAt)))
      throw new StoreError("INVALID_VALUE", "expiresAt is not a date");
    meta.expiresAt = new Date(input.expiresAt).toISOString();
  }
  return meta;
}

export function isExpired(meta: EntryMeta, now = Date.now()): boolean {
  return meta.expiresAt !== undefined && Date.parse(meta.expiresAt) <= now;
}

export function toEntry(key: string, value: JsonValue, meta: EntryMeta): StoredEntry {
  return { key, value, meta, expired: isExpired(meta) };
}
