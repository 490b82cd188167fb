import { CoapFormatError } from "./errors";
import { decodeUint, encodeUint, type CoapOption } from "./options";

/** A Block1/Block2 option value (RFC 7959 §2.2). */
export interface Block {
  num: number;
  more: boolean;
  /** Block size exponent: size = 2^(szx + 4). 7 is BERT (RFC 8323 §6), not supported here. */
  szx: number;
}

export function blockSizeOf(szx: number): number {
  return 1 << (szx + 4);
}

/** 16..1024, power of two -> szx 0..6. */
export function szxFor(size: number): number {
  const szx = Math.log2(size) - 4;
  if (!Number.isInteger(szx) || szx < 0 || szx > 6) {
    throw new RangeError(`block size ${size} must be a power of two between 16 and 1024`);
  }
  return szx;
}

export function encodeBlock(b: Block): Buffer {
  if (b.num > 0xfffff) throw new RangeError(`block number ${b.num} does not fit in 20 bits`);
  return encodeUint(b.num * 16 + (b.more ? 8 : 0) + b.szx);
}

export function decodeBlock(value: Buffer): Block {
  if (value.length > 3) throw new CoapFormatError(`block option of ${value.length} bytes is longer than 3`);
  const v = decodeUint(value);
  return { num: Math.floor(v / 16), more: (v & 8) !== 0, szx: v & 7 };
}

export function blockOption(number: number, b: Block): CoapOption {
  return { number, value: encodeBlock(b) };
}

export function findBlock(options: readonly CoapOption[], number: number): Block | undefined {
  const o = options.find((x) => x.number === number);
  return o ? decodeBlock(o.value) : undefined;
}

/** The slice of `body` that block `num` of size 2^(szx+4) carries, and whether more follow. */
export function sliceBlock(
  body: Buffer,
  num: number,
  szx: number,
): { chunk: Buffer; more: boolean } | undefined {
  const size = blockSizeOf(szx);
  const start = num * size;
  if (start >= body.length && !(start === 0 && body.length === 0)) return undefined;
  const end = Math.min(start + size, body.length);
  return { chunk: body.subarray(start, end), more: end < body.length };
}

/** Bytes per block number: BERT (szx 7, RFC 8323 §6) counts in 1024-byte units. */
export function blockUnit(szx: number): number {
  return szx === 7 ? 1024 : blockSizeOf(szx);
}
