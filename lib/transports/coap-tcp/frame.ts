import { CoapFormatError } from "./errors";
import { decodeOptions, encodeOptions, type CoapOption } from "./options";

/** One CoAP-over-TCP message (RFC 8323 §3.2): no type, no message id. */
export interface CoapMessage {
  code: number;
  token: Buffer;
  options: CoapOption[];
  payload: Buffer;
}

const EXT_BYTES = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 4];
const EXT_BASE = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 13, 269, 65805];

/** Whole encoded size of a message: what Max-Message-Size limits. */
export function encodedSize(msg: CoapMessage): number {
  const bodyLen = encodeOptions(msg.options).length + (msg.payload.length > 0 ? 1 + msg.payload.length : 0);
  const extLen = bodyLen < 13 ? 0 : bodyLen < 269 ? 1 : bodyLen < 65805 ? 2 : 4;
  return 1 + extLen + 1 + msg.token.length + bodyLen;
}

export function encodeMessage(msg: CoapMessage): Buffer {
  if (msg.token.length > 8) throw new RangeError(`token of ${msg.token.length} bytes is longer than 8`);
  const opts = encodeOptions(msg.options);
  const bodyLen = opts.length + (msg.payload.length > 0 ? 1 + msg.payload.length : 0);
  let nib: number;
  if (bodyLen < 13) nib = bodyLen;
  else if (bodyLen < 269) nib = 13;
  else if (bodyLen < 65805) nib = 14;
  else nib = 15;
  const extLen = EXT_BYTES[nib];
  const header = Buffer.allocUnsafe(1 + extLen + 1 + msg.token.length);
  header[0] = (nib << 4) | msg.token.length;
  const ext = bodyLen - EXT_BASE[nib];
  if (extLen === 1) header.writeUInt8(ext, 1);
  else if (extLen === 2) header.writeUInt16BE(ext, 1);
  else if (extLen === 4) header.writeUInt32BE(ext, 1);
  header[1 + extLen] = msg.code;
  msg.token.copy(header, 2 + extLen);
  const parts = [header, opts];
  if (msg.payload.length > 0) parts.push(Buffer.from([0xff]), msg.payload);
  return Buffer.concat(parts, header.length + bodyLen);
}

/** Decodes exactly one complete frame. */
export function decodeMessage(frame: Buffer): CoapMessage {
  const nib = frame[0] >> 4;
  const tkl = frame[0] & 0x0f;
  if (tkl > 8) throw new CoapFormatError(`token length ${tkl} is larger than 8`);
  const extLen = EXT_BYTES[nib];
  const start = 1 + extLen + 1 + tkl;
  if (frame.length < start) throw new CoapFormatError("frame shorter than its header");
  const code = frame[1 + extLen];
  const token = Buffer.from(frame.subarray(2 + extLen, start));
  const { options, payload } = decodeOptions(frame, start);
  return { code, token, options, payload };
}

/**
 * Streaming frame splitter for a TCP byte stream: frames may be split across chunks or
 * several may arrive in one. The declared length is checked against maxMessageSize as
 * soon as the header is complete, so an oversized frame is refused before its body is
 * buffered.
 */
export class FrameParser {
  private chunks: Buffer[] = [];
  private buffered = 0;
  private failed = false;

  constructor(private readonly maxMessageSize: number) {}

  /** Bytes received but not yet part of a complete frame. */
  get pending(): number {
    return this.buffered;
  }

  /**
   * Adds a chunk; returns the complete messages and, if the stream went bad, the error
   * (messages before the bad frame are still returned).
   */
  push(chunk: Buffer): { messages: CoapMessage[]; error?: CoapFormatError } {
    const messages: CoapMessage[] = [];
    if (this.failed) return { messages };
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    try {
      for (;;) {
        const size = this.frameSize();
        if (size === undefined || this.buffered < size) break;
        messages.push(decodeMessage(this.take(size)));
      }
      return { messages };
    } catch (err) {
      this.failed = true;
      this.chunks = [];
      this.buffered = 0;
      const error = err instanceof CoapFormatError ? err : new CoapFormatError(String(err));
      return { messages, error };
    }
  }

  private frameSize(): number | undefined {
    if (this.buffered < 1) return undefined;
    const first = this.peek(1)[0];
    const nib = first >> 4;
    const tkl = first & 0x0f;
    if (tkl > 8) throw new CoapFormatError(`token length ${tkl} is larger than 8`);
    const extLen = EXT_BYTES[nib];
    if (this.buffered < 1 + extLen) return undefined;
    const head = this.peek(1 + extLen);
    let bodyLen = nib;
    if (extLen === 1) bodyLen = head.readUInt8(1) + 13;
    else if (extLen === 2) bodyLen = head.readUInt16BE(1) + 269;
    else if (extLen === 4) bodyLen = head.readUInt32BE(1) + 65805;
    const size = 1 + extLen + 1 + tkl + bodyLen;
    if (size > this.maxMessageSize) {
      throw new CoapFormatError(
        `message of ${size} bytes exceeds Max-Message-Size ${this.maxMessageSize}`,
        true,
      );
    }
    return size;
  }

  private peek(n: number): Buffer {
    if (this.chunks[0].length >= n) return this.chunks[0];
    return Buffer.concat(this.chunks, Math.min(this.buffered, Math.max(n, 8))).subarray(0, n);
  }

  private take(n: number): Buffer {
    let out: Buffer;
    const first = this.chunks[0];
    if (first.length >= n) {
      out = first.subarray(0, n);
      if (first.length === n) this.chunks.shift();
      else this.chunks[0] = first.subarray(n);
    } else {
      const parts: Buffer[] = [];
      let need = n;
      while (need > 0) {
        const c = this.chunks[0];
        if (c.length <= need) {
          parts.push(c);
          this.chunks.shift();
          need -= c.length;
        } else {
          parts.push(c.subarray(0, need));
          this.chunks[0] = c.subarray(need);
          need = 0;
        }
      }
      out = Buffer.concat(parts, n);
    }
    this.buffered -= n;
    return out;
  }
}
