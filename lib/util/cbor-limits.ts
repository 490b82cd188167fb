/**
 * CBOR from a peer, bounded before it is decoded. The `cbor` package decodes nested
 * arrays, maps and tags by recursion and builds every item, so a 250 kB body of `[[[[...`
 * costs half a second of event loop and much memory. A linear, allocation-free walk over
 * the item headers (RFC 8949 §3: major type, argument, definite or indefinite length)
 * refuses too deep nesting, too many items and truncated input first; only then is the
 * body handed to the decoder.
 */
import { cborLib } from "./protocol-libs";

export interface CborLimits {
  /** Largest body in bytes. */
  maxBytes: number;
  /** Deepest nesting of arrays, maps and tags (default 32: provisioning bodies need 4 or 5). */
  maxDepth?: number;
  /** Most data items in the body, nested ones included (default 10000). */
  maxItems?: number;
}

export const DEFAULT_CBOR_DEPTH = 32;
export const DEFAULT_CBOR_ITEMS = 10000;

export type CborDecode = { ok: true; items: unknown[] } | { ok: false; error: string };

const BREAK = 0xff;

interface Frame {
  /** Items still expected; -1 while an indefinite-length array or map is open. */
  left: number;
  /** Set for an indefinite-length byte or text string: the major type of its chunks. */
  chunks?: number;
  /** Counted as nesting (arrays, maps, tags). */
  nests: boolean;
}

/**
 * Checks the structure of a CBOR sequence (one or more items) against the limits.
 * Returns why it is refused, or undefined when the decoder may have it. The message names
 * the limit or the flaw, never the bytes.
 */
export function cborLimitError(buf: Uint8Array, limits: CborLimits): string | undefined {
  if (buf.length > limits.maxBytes) return `body larger than ${limits.maxBytes} bytes`;
  const maxDepth = limits.maxDepth ?? DEFAULT_CBOR_DEPTH;
  const maxItems = limits.maxItems ?? DEFAULT_CBOR_ITEMS;
  const stack: Frame[] = [];
  let depth = 0;
  let items = 0;
  let pos = 0;
  const len = buf.length;

  /** One item is complete: count it in its container, closing containers that are full. */
  const done = () => {
    for (let top = stack[stack.length - 1]; top && top.left > 0; top = stack[stack.length - 1]) {
      if (--top.left > 0) return;
      stack.pop();
      if (top.nests) depth--;
    }
  };

  while (pos < len || stack.length > 0) {
    if (pos >= len) return "the CBOR ends in the middle of an item";
    const ib = buf[pos++];
    const major = ib >> 5;
    const ai = ib & 0x1f;
    const top = stack[stack.length - 1];

    if (ib === BREAK) {
      if (!top || top.left !== -1) return "unexpected CBOR break";
      stack.pop();
      if (top.nests) depth--;
      done();
      continue;
    }
    if (top?.chunks !== undefined && (major !== top.chunks || ai === 31))
      return "an indefinite-length CBOR string holds something other than definite chunks of its type";

    if (++items > maxItems) return `CBOR with more than ${maxItems} items`;

    // The argument (RFC 8949 §3): immediate, or 1, 2, 4 or 8 bytes that follow.
    let arg = ai;
    if (ai >= 24 && ai <= 27) {
      const n = 1 << (ai - 24);
      if (pos + n > len) return "the CBOR ends in the middle of an item";
      arg = 0;
      for (let i = 0; i < n; i++) arg = arg * 256 + buf[pos + i];
      pos += n;
    } else if (ai >= 28 && ai <= 30) {
      return "reserved CBOR additional information";
    }
    const indefinite = ai === 31;
    if (indefinite && (major < 2 || major === 6)) return "indefinite length on a CBOR type that has none";

    switch (major) {
      case 0:
      case 1:
      case 7:
        done();
        break;
      case 2:
      case 3:
        if (indefinite) {
          stack.push({ left: -1, chunks: major, nests: false });
        } else {
          if (arg > len - pos) return "a CBOR string runs past the end of the body";
          pos += arg;
          done();
        }
        break;
      case 4:
      case 5: {
        if (indefinite) {
          if (++depth > maxDepth) return `CBOR nested deeper than ${maxDepth} levels`;
          stack.push({ left: -1, nests: true });
          break;
        }
        const count = major === 5 ? arg * 2 : arg;
        if (count === 0) {
          done();
          break;
        }
        // Every item takes at least one byte: a count beyond what is left is a lie.
        if (count > len - pos) return "a CBOR array or map claims more items than the body holds";
        if (++depth > maxDepth) return `CBOR nested deeper than ${maxDepth} levels`;
        stack.push({ left: count, nests: true });
        break;
      }
      case 6:
        if (++depth > maxDepth) return `CBOR nested deeper than ${maxDepth} levels`;
        stack.push({ left: 1, nests: true });
        break;
    }
  }
  return undefined;
}

/** Decodes a peer's CBOR sequence within limits (structure checked first, then `cbor`). */
export function decodeCborBounded(buf: Buffer, limits: CborLimits): CborDecode {
  const error = cborLimitError(buf, limits);
  if (error) return { ok: false, error };
  const { decodeAllSync } = cborLib();
  try {
    return { ok: true, items: decodeAllSync(buf) as unknown[] };
  } catch {
    return { ok: false, error: "body is not CBOR" };
  }
}
