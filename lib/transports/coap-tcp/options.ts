import { CoapFormatError } from "./errors";

export interface CoapOption {
  number: number;
  value: Buffer;
}

/** Minimal big-endian encoding: zero is the empty string (RFC 7252 §3.2). */
export function encodeUint(value: number): Buffer {
  if (!Number.isInteger(value) || value < 0 || value > 0xffffffff) {
    throw new RangeError(`option value ${value} is not a 32-bit unsigned integer`);
  }
  if (value === 0) return Buffer.alloc(0);
  const bytes = value < 0x100 ? 1 : value < 0x10000 ? 2 : value < 0x1000000 ? 3 : 4;
  const out = Buffer.alloc(bytes);
  out.writeUIntBE(value, 0, bytes);
  return out;
}

export function decodeUint(value: Buffer): number {
  if (value.length > 4) throw new CoapFormatError(`uint option of ${value.length} bytes is longer than 4`);
  return value.length === 0 ? 0 : value.readUIntBE(0, value.length);
}

export function uintOption(number: number, value: number): CoapOption {
  return { number, value: encodeUint(value) };
}

export function stringOption(number: number, value: string): CoapOption {
  return { number, value: Buffer.from(value, "utf8") };
}

export function findOption(options: readonly CoapOption[], number: number): CoapOption | undefined {
  return options.find((o) => o.number === number);
}

export function findUint(options: readonly CoapOption[], number: number): number | undefined {
  const o = findOption(options, number);
  return o ? decodeUint(o.value) : undefined;
}

export function findStrings(options: readonly CoapOption[], number: number): string[] {
  return options.filter((o) => o.number === number).map((o) => o.value.toString("utf8"));
}

function nibble(value: number): { nib: number; ext: number; extLen: number } {
  if (value < 13) return { nib: value, ext: 0, extLen: 0 };
  if (value < 269) return { nib: 13, ext: value - 13, extLen: 1 };
  if (value < 65805) return { nib: 14, ext: value - 269, extLen: 2 };
  throw new RangeError(`option delta or length ${value} is too large`);
}

function writeExt(out: Buffer, at: number, ext: number, extLen: number): number {
  if (extLen === 1) out.writeUInt8(ext, at);
  else if (extLen === 2) out.writeUInt16BE(ext, at);
  return at + extLen;
}

/** Options sorted by number (stable: repeated options keep their order), as deltas. */
export function encodeOptions(options: readonly CoapOption[]): Buffer {
  const sorted = options
    .map((o, i) => ({ o, i }))
    .sort((a, b) => a.o.number - b.o.number || a.i - b.i)
    .map((x) => x.o);
  let size = 0;
  let prev = 0;
  for (const o of sorted) {
    size += 1 + nibble(o.number - prev).extLen + nibble(o.value.length).extLen + o.value.length;
    prev = o.number;
  }
  const out = Buffer.allocUnsafe(size);
  let at = 0;
  prev = 0;
  for (const o of sorted) {
    const d = nibble(o.number - prev);
    const l = nibble(o.value.length);
    out[at++] = (d.nib << 4) | l.nib;
    at = writeExt(out, at, d.ext, d.extLen);
    at = writeExt(out, at, l.ext, l.extLen);
    o.value.copy(out, at);
    at += o.value.length;
    prev = o.number;
  }
  return out;
}

function readExt(buf: Buffer, at: number, nib: number, what: string): { value: number; at: number } {
  if (nib < 13) return { value: nib, at };
  if (nib === 13) {
    if (at + 1 > buf.length) throw new CoapFormatError(`option ${what} extension runs past the message end`);
    return { value: buf.readUInt8(at) + 13, at: at + 1 };
  }
  if (nib === 14) {
    if (at + 2 > buf.length) throw new CoapFormatError(`option ${what} extension runs past the message end`);
    return { value: buf.readUInt16BE(at) + 269, at: at + 2 };
  }
  throw new CoapFormatError(`option ${what} nibble 15 is reserved`);
}

/**
 * Decodes options from `start` up to the payload marker or the end. A marker with no
 * payload after it is a format error (RFC 7252 §3).
 */
export function decodeOptions(buf: Buffer, start: number): { options: CoapOption[]; payload: Buffer } {
  const options: CoapOption[] = [];
  let at = start;
  let number = 0;
  while (at < buf.length) {
    const byte = buf[at++];
    if (byte === 0xff) {
      if (at >= buf.length) throw new CoapFormatError("payload marker followed by an empty payload");
      return { options, payload: buf.subarray(at) };
    }
    const d = readExt(buf, at, byte >> 4, "delta");
    const l = readExt(buf, d.at, byte & 0x0f, "length");
    at = l.at;
    if (at + l.value > buf.length) throw new CoapFormatError("option value runs past the message end");
    number += d.value;
    options.push({ number, value: buf.subarray(at, at + l.value) });
    at += l.value;
  }
  return { options, payload: Buffer.alloc(0) };
}
