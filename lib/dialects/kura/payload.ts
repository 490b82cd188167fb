/**
 * KuraPayload, the protobuf 2 message every Eclipse Kura / Kapua / Everyware Cloud peer
 * puts in an MQTT publish: the schema is eclipse/kura's and eclipse/kapua's
 * kurapayload.proto (package kuradatatypes), kept beside this file as kurapayload.proto.
 *
 *   KuraPayload:  timestamp = 1 (int64, ms), position = 2 (KuraPosition),
 *                 extensions 3 to 4999, metric = 5000 (repeated KuraMetric), body = 5001 (bytes)
 *   KuraMetric:   name = 1 and type = 2 (both required), then one value field by type:
 *                 double 3, float 4, int64 5, int32 6, bool 7, string 8, bytes 9
 *   KuraPosition: latitude = 1 and longitude = 2 (required), altitude 3, precision 4,
 *                 heading 5, speed 6 (double), timestamp 7 (int64), satellites 8, status 9 (int32)
 *
 * A peer may gzip the encoded message (Kura's GZipUtil compresses it and every reader
 * detects it by the gzip magic bytes 1f 8b; a plain KuraPayload cannot start with 0x1f,
 * which would be field 3 with the invalid wire type 7).
 *
 * Hand-written rather than protobufjs: three fixed messages need a varint, two fixed
 * widths and a length prefix, while protobufjs (8.x, 3.8 MB unpacked, plus long) would be
 * a runtime dependency whose Reader skips groups by recursion (a peer could nest them
 * until the stack breaks) and reads int64 into its own Long type. Here decoding is
 * bounded: the received size and the inflated size (gzip is inflated with
 * maxOutputLength, so a bomb stops at the limit), the number of metrics, unknown fields
 * and extensions skipped without recursion (groups by a counter, bounded), and the only
 * nesting is the schema's own (payload -> metric or position), which no peer can deepen.
 */
import { gzipSync, gunzipSync } from "node:zlib";

export type KuraValueType = "DOUBLE" | "FLOAT" | "INT64" | "INT32" | "BOOL" | "STRING" | "BYTES";

/** The enum of kurapayload.proto, KuraMetric.ValueType, in its order. */
export const KURA_VALUE_TYPES: readonly KuraValueType[] = Object.freeze([
  "DOUBLE",
  "FLOAT",
  "INT64",
  "INT32",
  "BOOL",
  "STRING",
  "BYTES",
]);

/**
 * One metric. INT64 values decode to a number when they are safe integers and to a bigint
 * otherwise (so that what fits a JSON message stays a plain number and nothing is
 * rounded); either is accepted when encoding. FLOAT values are 32-bit on the wire.
 */
export type KuraMetric =
  | { name: string; type: "DOUBLE" | "FLOAT" | "INT32"; value: number }
  | { name: string; type: "INT64"; value: number | bigint }
  | { name: string; type: "BOOL"; value: boolean }
  | { name: string; type: "STRING"; value: string }
  | { name: string; type: "BYTES"; value: Uint8Array };

export type KuraMetricValue = KuraMetric["value"];

export interface KuraPosition {
  latitude: number;
  longitude: number;
  altitude?: number;
  precision?: number;
  heading?: number;
  speed?: number;
  /** ms since the epoch; a bigint only when not a safe integer. */
  timestamp?: number | bigint;
  satellites?: number;
  status?: number;
}

export interface KuraPayload {
  /** ms since the epoch; a bigint only when not a safe integer. */
  timestamp?: number | bigint;
  position?: KuraPosition;
  /** In wire order; a name may repeat (see metricsOf for Kura's reading of that). */
  metrics: KuraMetric[];
  body?: Uint8Array;
}

export interface KuraDecodeLimits {
  /** Largest message in bytes, as received and after inflating (default 1 MiB). */
  maxBytes?: number;
  /** Most metrics in one message (default 1024). */
  maxMetrics?: number;
}

export const DEFAULT_MAX_BYTES = 1024 * 1024;
export const DEFAULT_MAX_METRICS = 1024;
/** Nesting of unknown groups we skip; protobuf's own parsers stop at 100. */
const MAX_GROUP_DEPTH = 100;

/** Why a KuraPayload was refused: `tooLarge` for a limit, a malformed message otherwise. */
export class KuraPayloadError extends Error {
  readonly tooLarge: boolean;
  constructor(message: string, tooLarge = false) {
    super(message);
    this.name = "KuraPayloadError";
    this.tooLarge = tooLarge;
  }
}

/** Whether bytes are gzip (RFC 1952 magic 1f 8b), as Kura's GZipUtil.isCompressed reads them. */
export function isGzip(buf: Uint8Array): boolean {
  return buf.length >= 2 && buf[0] === 0x1f && buf[1] === 0x8b;
}

// ---------------------------------------------------------------------------------------
// Decoding

const WIRE_VARINT = 0;
const WIRE_FIXED64 = 1;
const WIRE_LEN = 2;
const WIRE_START_GROUP = 3;
const WIRE_END_GROUP = 4;
const WIRE_FIXED32 = 5;

const utf8 = new TextDecoder("utf-8", { fatal: true });

class Reader {
  pos: number;
  constructor(
    readonly buf: Buffer,
    start: number,
    readonly end: number,
  ) {
    this.pos = start;
  }

  /** A varint as its two unsigned 32-bit halves (at most 10 bytes, as protobuf writes them). */
  varint64(): [lo: number, hi: number] {
    let lo = 0;
    let hi = 0;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.end) throw new KuraPayloadError("truncated varint");
      const b = this.buf[this.pos++];
      const bits = b & 0x7f;
      if (i < 4) lo |= bits << (7 * i);
      else if (i === 4) {
        lo |= bits << 28;
        hi |= bits >>> 4;
      } else hi |= bits << (7 * i - 32);
      if (b < 0x80) return [lo >>> 0, hi >>> 0];
    }
    throw new KuraPayloadError("varint longer than 10 bytes");
  }

  /** A tag or a length: an unsigned value that must fit 32 bits. */
  uint32(what: string): number {
    const [lo, hi] = this.varint64();
    if (hi !== 0) throw new KuraPayloadError(`${what} out of range`);
    return lo;
  }

  int64(): number | bigint {
    const [lo, hi] = this.varint64();
    const v = BigInt.asIntN(64, (BigInt(hi) << 32n) | BigInt(lo));
    return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
  }

  /** int32 and enums: the low 32 bits, signed (negative values arrive sign-extended). */
  int32(): number {
    return this.varint64()[0] | 0;
  }

  bool(): boolean {
    const [lo, hi] = this.varint64();
    return lo !== 0 || hi !== 0;
  }

  double(): number {
    if (this.end - this.pos < 8) throw new KuraPayloadError("truncated double");
    const v = this.buf.readDoubleLE(this.pos);
    this.pos += 8;
    return v;
  }

  float(): number {
    if (this.end - this.pos < 4) throw new KuraPayloadError("truncated float");
    const v = this.buf.readFloatLE(this.pos);
    this.pos += 4;
    return v;
  }

  /** A length-delimited field: returns its [start, end). */
  span(): [number, number] {
    const len = this.uint32("length");
    if (len > this.end - this.pos) throw new KuraPayloadError("length beyond the end of the message");
    const start = this.pos;
    this.pos += len;
    return [start, this.pos];
  }

  bytes(): Buffer {
    const [s, e] = this.span();
    return Buffer.from(this.buf.subarray(s, e)); // a copy: the payload keeps nothing of the input
  }

  string(what: string): string {
    const [s, e] = this.span();
    try {
      return utf8.decode(this.buf.subarray(s, e));
    } catch {
      throw new KuraPayloadError(`${what} is not UTF-8`);
    }
  }

  /** Reads a tag: [field number, wire type]; field 0 and wire types 6 and 7 do not exist. */
  tag(): [number, number] {
    const t = this.uint32("tag");
    const field = t >>> 3;
    const wire = t & 7;
    if (field === 0) throw new KuraPayloadError("field number 0");
    if (wire > 5) throw new KuraPayloadError(`invalid wire type ${wire}`);
    return [field, wire];
  }

  /**
   * Skips a field we do not read (an unknown field, an extension, a known number with a
   * wire type that is not its own, as protobuf's parsers do). Groups by a counter, not by
   * recursion.
   */
  skip(field: number, wire: number): void {
    if (wire === WIRE_END_GROUP) throw new KuraPayloadError("end of a group that was not started");
    if (wire !== WIRE_START_GROUP) return this.skipValue(wire);
    const open = [field];
    while (open.length > 0) {
      if (this.pos >= this.end) throw new KuraPayloadError("truncated group");
      const [f, w] = this.tag();
      if (w === WIRE_START_GROUP) {
        if (open.length >= MAX_GROUP_DEPTH) throw new KuraPayloadError("groups nested too deep");
        open.push(f);
      } else if (w === WIRE_END_GROUP) {
        if (open.pop() !== f) throw new KuraPayloadError("end of a group that was not started");
      } else this.skipValue(w);
    }
  }

  private skipValue(wire: number): void {
    switch (wire) {
      case WIRE_VARINT:
        this.varint64();
        return;
      case WIRE_FIXED64:
        if (this.end - this.pos < 8) throw new KuraPayloadError("truncated fixed64");
        this.pos += 8;
        return;
      case WIRE_FIXED32:
        if (this.end - this.pos < 4) throw new KuraPayloadError("truncated fixed32");
        this.pos += 4;
        return;
      default:
        this.span();
    }
  }
}

function decodeMetric(r: Reader): KuraMetric {
  let name: string | undefined;
  let typeNo: number | undefined;
  let dbl = 0;
  let flt = 0;
  let lng: number | bigint = 0;
  let int = 0;
  let bool = false;
  let str = "";
  let bytes: Buffer = Buffer.alloc(0);
  while (r.pos < r.end) {
    const [field, wire] = r.tag();
    if (field === 1 && wire === WIRE_LEN) name = r.string("a metric name");
    else if (field === 2 && wire === WIRE_VARINT) typeNo = r.int32();
    else if (field === 3 && wire === WIRE_FIXED64) dbl = r.double();
    else if (field === 4 && wire === WIRE_FIXED32) flt = r.float();
    else if (field === 5 && wire === WIRE_VARINT) lng = r.int64();
    else if (field === 6 && wire === WIRE_VARINT) int = r.int32();
    else if (field === 7 && wire === WIRE_VARINT) bool = r.bool();
    else if (field === 8 && wire === WIRE_LEN) str = r.string("a metric's string value");
    else if (field === 9 && wire === WIRE_LEN) bytes = r.bytes();
    else r.skip(field, wire);
  }
  if (name === undefined) throw new KuraPayloadError("a metric has no name (required)");
  if (typeNo === undefined) throw new KuraPayloadError("a metric has no type (required)");
  const type = KURA_VALUE_TYPES[typeNo];
  if (type === undefined) throw new KuraPayloadError(`a metric has the unknown type ${typeNo}`);
  // An absent value field reads as its type's default, as Kura's generated getters do.
  switch (type) {
    case "DOUBLE":
      return { name, type, value: dbl };
    case "FLOAT":
      return { name, type, value: flt };
    case "INT64":
      return { name, type, value: lng };
    case "INT32":
      return { name, type, value: int };
    case "BOOL":
      return { name, type, value: bool };
    case "STRING":
      return { name, type, value: str };
    default:
      return { name, type, value: bytes };
  }
}

function decodePosition(r: Reader, into: Partial<KuraPosition>): void {
  while (r.pos < r.end) {
    const [field, wire] = r.tag();
    if (field >= 1 && field <= 6 && wire === WIRE_FIXED64) {
      const v = r.double();
      if (field === 1) into.latitude = v;
      else if (field === 2) into.longitude = v;
      else if (field === 3) into.altitude = v;
      else if (field === 4) into.precision = v;
      else if (field === 5) into.heading = v;
      else into.speed = v;
    } else if (field === 7 && wire === WIRE_VARINT) into.timestamp = r.int64();
    else if (field === 8 && wire === WIRE_VARINT) into.satellites = r.int32();
    else if (field === 9 && wire === WIRE_VARINT) into.status = r.int32();
    else r.skip(field, wire);
  }
}

/**
 * Decodes a KuraPayload, gzipped or not. Throws KuraPayloadError (tooLarge for a limit)
 * with a message that names the flaw, never the bytes.
 */
export function decodeKuraPayload(input: Uint8Array, limits: KuraDecodeLimits = {}): KuraPayload {
  const maxBytes = limits.maxBytes ?? DEFAULT_MAX_BYTES;
  const maxMetrics = limits.maxMetrics ?? DEFAULT_MAX_METRICS;
  if (input.length > maxBytes) throw new KuraPayloadError(`message larger than ${maxBytes} bytes`, true);
  let buf = Buffer.isBuffer(input) ? input : Buffer.from(input.buffer, input.byteOffset, input.length);
  if (isGzip(buf)) {
    try {
      buf = gunzipSync(buf, { maxOutputLength: maxBytes });
    } catch (err) {
      if ((err as { code?: string }).code === "ERR_BUFFER_TOO_LARGE")
        throw new KuraPayloadError(`message inflates to more than ${maxBytes} bytes`, true);
      throw new KuraPayloadError("gzip data that does not inflate");
    }
    if (isGzip(buf)) throw new KuraPayloadError("gzip inside gzip");
  }
  const r = new Reader(buf, 0, buf.length);
  const out: KuraPayload = { metrics: [] };
  let position: Partial<KuraPosition> | undefined;
  while (r.pos < r.end) {
    const [field, wire] = r.tag();
    if (field === 1 && wire === WIRE_VARINT) out.timestamp = r.int64();
    else if (field === 2 && wire === WIRE_LEN) {
      // A repeated embedded message merges into the first, as protobuf reads it.
      const [s, e] = r.span();
      decodePosition(new Reader(buf, s, e), (position ??= {}));
    } else if (field === 5000 && wire === WIRE_LEN) {
      if (out.metrics.length >= maxMetrics)
        throw new KuraPayloadError(`more than ${maxMetrics} metrics`, true);
      const [s, e] = r.span();
      out.metrics.push(decodeMetric(new Reader(buf, s, e)));
    } else if (field === 5001 && wire === WIRE_LEN) out.body = r.bytes();
    else r.skip(field, wire);
  }
  if (position) {
    if (position.latitude === undefined || position.longitude === undefined)
      throw new KuraPayloadError("a position without latitude or longitude (required)");
    out.position = position as KuraPosition;
  }
  return out;
}

/**
 * The metrics by name, the last one winning, as Kura's KuraPayload.addMetric keeps them
 * (a map), in the order the names first appear.
 */
export function metricsOf(p: KuraPayload): Map<string, KuraMetricValue> {
  const m = new Map<string, KuraMetricValue>();
  for (const metric of p.metrics) m.set(metric.name, metric.value);
  return m;
}

// ---------------------------------------------------------------------------------------
// Encoding

class Writer {
  private buf = Buffer.allocUnsafe(256);
  len = 0;

  private room(n: number): void {
    if (this.len + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.len + n) size *= 2;
    const next = Buffer.allocUnsafe(size);
    this.buf.copy(next, 0, 0, this.len);
    this.buf = next;
  }

  /** An unsigned varint below 2^32 (tags, lengths, non-negative int32 and enums). */
  uint32(v: number): void {
    this.room(5);
    while (v > 0x7f) {
      this.buf[this.len++] = (v & 0x7f) | 0x80;
      v >>>= 7;
    }
    this.buf[this.len++] = v;
  }

  /** Any int64 (negative ones take ten bytes, two's complement, as protobuf writes them). */
  int64(v: bigint): void {
    let u = BigInt.asUintN(64, v);
    this.room(10);
    while (u > 0x7fn) {
      this.buf[this.len++] = Number(u & 0x7fn) | 0x80;
      u >>= 7n;
    }
    this.buf[this.len++] = Number(u);
  }

  int32(v: number): void {
    if (v >= 0) this.uint32(v);
    else this.int64(BigInt(v));
  }

  tag(field: number, wire: number): void {
    this.uint32(((field << 3) | wire) >>> 0);
  }

  double(v: number): void {
    this.room(8);
    this.buf.writeDoubleLE(v, this.len);
    this.len += 8;
  }

  float(v: number): void {
    this.room(4);
    this.buf.writeFloatLE(v, this.len);
    this.len += 4;
  }

  raw(b: Uint8Array): void {
    this.room(b.length);
    this.buf.set(b, this.len);
    this.len += b.length;
  }

  lengthDelimited(b: Uint8Array): void {
    this.uint32(b.length);
    this.raw(b);
  }

  finish(): Buffer {
    return Buffer.from(this.buf.subarray(0, this.len));
  }
}

function bad(message: string): KuraPayloadError {
  return new KuraPayloadError(message);
}

function checkInt32(v: unknown, what: string): number {
  if (typeof v !== "number" || !Number.isInteger(v) || v < -0x80000000 || v > 0x7fffffff)
    throw bad(`${what} is not a 32-bit integer`);
  return v;
}

function toInt64(v: unknown, what: string): bigint {
  if (typeof v === "bigint") {
    if (BigInt.asIntN(64, v) !== v) throw bad(`${what} is outside the 64-bit range`);
    return v;
  }
  if (typeof v !== "number" || !Number.isSafeInteger(v))
    throw bad(`${what} is not a safe integer or a bigint`);
  return BigInt(v);
}

function checkNumber(v: unknown, what: string): number {
  if (typeof v !== "number") throw bad(`${what} is not a number`);
  return v;
}

function encodeMetric(m: KuraMetric): Buffer {
  const w = new Writer();
  if (typeof m.name !== "string") throw bad("a metric has no name");
  const what = `metric ${JSON.stringify(m.name)}`;
  const typeNo = KURA_VALUE_TYPES.indexOf(m.type);
  if (typeNo < 0) throw bad(`${what} has the unknown type ${String(m.type)}`);
  w.tag(1, WIRE_LEN);
  w.lengthDelimited(Buffer.from(m.name, "utf8"));
  w.tag(2, WIRE_VARINT);
  w.uint32(typeNo);
  const v: unknown = m.value;
  switch (m.type) {
    case "DOUBLE":
      w.tag(3, WIRE_FIXED64);
      w.double(checkNumber(v, what));
      break;
    case "FLOAT":
      w.tag(4, WIRE_FIXED32);
      w.float(checkNumber(v, what));
      break;
    case "INT64":
      w.tag(5, WIRE_VARINT);
      w.int64(toInt64(v, what));
      break;
    case "INT32":
      w.tag(6, WIRE_VARINT);
      w.int32(checkInt32(v, what));
      break;
    case "BOOL":
      if (typeof v !== "boolean") throw bad(`${what} is not a boolean`);
      w.tag(7, WIRE_VARINT);
      w.uint32(v ? 1 : 0);
      break;
    case "STRING":
      if (typeof v !== "string") throw bad(`${what} is not a string`);
      w.tag(8, WIRE_LEN);
      w.lengthDelimited(Buffer.from(v, "utf8"));
      break;
    case "BYTES":
      if (!(v instanceof Uint8Array)) throw bad(`${what} is not bytes`);
      w.tag(9, WIRE_LEN);
      w.lengthDelimited(v);
      break;
  }
  return w.finish();
}

function encodePosition(p: KuraPosition): Buffer {
  const w = new Writer();
  const doubles: Array<[number, number | undefined, string]> = [
    [1, p.latitude, "latitude"],
    [2, p.longitude, "longitude"],
    [3, p.altitude, "altitude"],
    [4, p.precision, "precision"],
    [5, p.heading, "heading"],
    [6, p.speed, "speed"],
  ];
  for (const [field, v, what] of doubles) {
    if (v === undefined) {
      if (field <= 2) throw bad(`a position without ${what} (required)`);
      continue;
    }
    w.tag(field, WIRE_FIXED64);
    w.double(checkNumber(v, `the position's ${what}`));
  }
  if (p.timestamp !== undefined) {
    w.tag(7, WIRE_VARINT);
    w.int64(toInt64(p.timestamp, "the position's timestamp"));
  }
  if (p.satellites !== undefined) {
    w.tag(8, WIRE_VARINT);
    w.int32(checkInt32(p.satellites, "the position's satellites"));
  }
  if (p.status !== undefined) {
    w.tag(9, WIRE_VARINT);
    w.int32(checkInt32(p.status, "the position's status"));
  }
  return w.finish();
}

/**
 * Encodes a KuraPayload, fields in field-number order (as protobuf's own serializers
 * write them, so the bytes equal protoc's for the same message); gzipped on request.
 * Throws KuraPayloadError when a value does not fit its type.
 */
export function encodeKuraPayload(p: KuraPayload, opts: { gzip?: boolean } = {}): Buffer {
  const w = new Writer();
  if (p.timestamp !== undefined) {
    w.tag(1, WIRE_VARINT);
    w.int64(toInt64(p.timestamp, "the timestamp"));
  }
  if (p.position !== undefined) {
    w.tag(2, WIRE_LEN);
    w.lengthDelimited(encodePosition(p.position));
  }
  for (const m of p.metrics ?? []) {
    w.tag(5000, WIRE_LEN);
    w.lengthDelimited(encodeMetric(m));
  }
  if (p.body !== undefined) {
    if (!(p.body instanceof Uint8Array)) throw bad("the body is not bytes");
    w.tag(5001, WIRE_LEN);
    w.lengthDelimited(p.body);
  }
  const out = w.finish();
  return opts.gzip ? gzipSync(out) : out;
}
