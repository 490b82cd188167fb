/**
 * JSON from a peer, bounded before it is parsed: `JSON.parse` itself copes with deep
 * nesting, but everything after it that walks the value (JSON.stringify, structured
 * clone into a Node-RED message, our own validators) recurses and throws RangeError
 * somewhere around 10,000 levels. A linear scan of the text refuses such input first.
 */

export interface JsonLimits {
  /** Largest body in bytes. */
  maxBytes: number;
  /** Deepest nesting of arrays and objects (default 32: provisioning bodies need 3 or 4). */
  maxDepth?: number;
}

export const DEFAULT_JSON_DEPTH = 32;

export type JsonParse = { ok: true; value: unknown } | { ok: false; error: string };

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OPEN_ARRAY = 0x5b;
const OPEN_OBJECT = 0x7b;
const CLOSE_ARRAY = 0x5d;
const CLOSE_OBJECT = 0x7d;

/** Deepest array/object nesting of a JSON text, stopping as soon as `limit` is passed. */
export function jsonDepthExceeds(text: string, limit: number): boolean {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === BACKSLASH) i++;
      else if (c === QUOTE) inString = false;
    } else if (c === QUOTE) inString = true;
    else if (c === OPEN_ARRAY || c === OPEN_OBJECT) {
      if (++depth > limit) return true;
    } else if (c === CLOSE_ARRAY || c === CLOSE_OBJECT) depth--;
  }
  return false;
}

/** Parses a peer's JSON body within limits; the error names the limit, never the bytes. */
export function parseJsonBounded(body: Buffer | string, limits: JsonLimits): JsonParse {
  const size = typeof body === "string" ? Buffer.byteLength(body) : body.length;
  if (size > limits.maxBytes) return { ok: false, error: `body larger than ${limits.maxBytes} bytes` };
  const text = typeof body === "string" ? body : body.toString("utf8");
  const maxDepth = limits.maxDepth ?? DEFAULT_JSON_DEPTH;
  if (jsonDepthExceeds(text, maxDepth))
    return { ok: false, error: `JSON nested deeper than ${maxDepth} levels` };
  try {
    return { ok: true, value: JSON.parse(text) as unknown };
  } catch {
    return { ok: false, error: "body is not JSON" };
  }
}
