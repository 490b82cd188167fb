/**
 * A bounded reader of the PROXY protocol header (haproxy's doc/proxy-protocol.txt,
 * versions 1 and 2), which a TCP load balancer (HAProxy `send-proxy` / `send-proxy-v2`,
 * nginx `proxy_protocol on`, AWS NLB, ...) writes before the client's first byte so that
 * the server learns the client's address instead of the proxy's.
 *
 * Pure: bytes in, a verdict out; no socket, no timer (./proxy-listener.ts owns those).
 * Bounded: it never holds more than the longest header it accepts, and refuses as soon as
 * the bytes received cannot begin a valid header (section 2: "the receiver MUST NOT start
 * processing the connection before it receives a complete and valid PROXY protocol
 * header", and must not guess: a connection without one is refused, not served).
 */
import { isIPv4, isIPv6 } from "node:net";

export interface ProxyAddress {
  address: string;
  port: number;
  family: "IPv4" | "IPv6";
}

export interface ProxyHeader {
  version: 1 | 2;
  /**
   * The client's address, or undefined when the header says to keep the connection's own
   * endpoints: v2 LOCAL (the proxy's own health check), v2 AF_UNSPEC / AF_UNIX, v1 UNKNOWN.
   */
  source?: ProxyAddress;
  destination?: ProxyAddress;
}

export type ProxyReadResult =
  | { state: "more" }
  | { state: "done"; header: ProxyHeader; rest: Buffer }
  | { state: "refused"; reason: string };

/** Section 2.2: the 12 bytes every v2 header begins with. */
export const PROXY_V2_SIGNATURE = Buffer.from([
  0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a,
]);
const V1_PREFIX = Buffer.from("PROXY ", "latin1");
/** Section 2.1: "a receiver ... can read 107 bytes at most" for the whole v1 line, CRLF included. */
export const PROXY_V1_MAX = 107;
/** Section 2.2: signature, ver_cmd, fam, len. */
const V2_FIXED = 16;
/** Section 2.2: the address block of AF_INET, AF_INET6 and AF_UNIX (two 108-byte paths). */
const V2_ADDRESS_LEN: Record<number, number> = { 0x1: 12, 0x2: 36, 0x3: 216 };
/**
 * TLV bytes accepted after the address block by default. What HAProxy sends with
 * send-proxy-v2 (section 2.2.1-2.2.7: ALPN, authority, CRC32C, unique id of at most 128
 * bytes, the SSL TLV with version, CN (RFC 5280: at most 64 characters), cipher and
 * algorithms, the network namespace) and what cloud balancers add (an endpoint id) fit
 * in a few hundred bytes; the length field itself allows 65535, which a peer must not be
 * able to make us buffer.
 */
export const DEFAULT_MAX_TLV_BYTES = 1024;

export interface ProxyReaderOptions {
  maxTlvBytes?: number;
}

/** Reads one header from successive chunks; push() until the state is not "more". */
export class ProxyHeaderReader {
  private buffered: Buffer = Buffer.alloc(0);
  private finished = false;
  private readonly maxTlv: number;

  constructor(opts: ProxyReaderOptions = {}) {
    this.maxTlv = opts.maxTlvBytes ?? DEFAULT_MAX_TLV_BYTES;
  }

  push(chunk: Buffer): ProxyReadResult {
    if (this.finished) return { state: "refused", reason: "the PROXY header was already read" };
    this.buffered = this.buffered.length === 0 ? chunk : Buffer.concat([this.buffered, chunk]);
    const r = this.examine(this.buffered);
    if (r.state !== "more") {
      this.finished = true;
      this.buffered = Buffer.alloc(0);
    }
    return r;
  }

  private examine(b: Buffer): ProxyReadResult {
    if (startsLike(b, PROXY_V2_SIGNATURE)) {
      return b.length < PROXY_V2_SIGNATURE.length ? { state: "more" } : this.v2(b);
    }
    if (startsLike(b, V1_PREFIX)) return v1(b);
    return { state: "refused", reason: "no PROXY protocol header (the connection does not begin with one)" };
  }

  private v2(b: Buffer): ProxyReadResult {
    if (b.length < V2_FIXED) return { state: "more" };
    const version = b[12] >> 4;
    const command = b[12] & 0x0f;
    const family = b[13] >> 4;
    const length = b.readUInt16BE(14);
    if (version !== 2) return { state: "refused", reason: `PROXY v2 header of version ${version}` };
    if (command > 1) return { state: "refused", reason: `PROXY v2 header with unknown command ${command}` };
    if (family > 3)
      return { state: "refused", reason: `PROXY v2 header with unknown address family ${family}` };
    const addressLen = V2_ADDRESS_LEN[family] ?? 0;
    if (length > addressLen + this.maxTlv)
      return {
        state: "refused",
        reason: `PROXY v2 header of ${length} bytes, more than the ${addressLen + this.maxTlv} accepted`,
      };
    if (b.length < V2_FIXED + length) return { state: "more" };
    const rest = b.subarray(V2_FIXED + length);
    // Section 2.2: LOCAL is the proxy speaking for itself (a health check): "the receiver
    // must ... use the real connection endpoints and discard the protocol block including
    // the family". Whatever follows the address block is TLVs, skipped.
    if (command === 0) return { state: "done", header: { version: 2 }, rest };
    if (length < addressLen)
      return {
        state: "refused",
        reason: `PROXY v2 header with ${length} address bytes, fewer than its family's ${addressLen}`,
      };
    const a = b.subarray(V2_FIXED);
    if (family === 0x1)
      return {
        state: "done",
        header: {
          version: 2,
          source: { address: ipv4(a.subarray(0, 4)), port: a.readUInt16BE(8), family: "IPv4" },
          destination: { address: ipv4(a.subarray(4, 8)), port: a.readUInt16BE(10), family: "IPv4" },
        },
        rest,
      };
    if (family === 0x2)
      return {
        state: "done",
        header: {
          version: 2,
          source: { address: ipv6(a.subarray(0, 16)), port: a.readUInt16BE(32), family: "IPv6" },
          destination: { address: ipv6(a.subarray(16, 32)), port: a.readUInt16BE(34), family: "IPv6" },
        },
        rest,
      };
    // AF_UNSPEC ("unknown, unspecified or unsupported protocol": the receiver may accept
    // it with the real endpoints) and AF_UNIX (no network address to account against).
    return { state: "done", header: { version: 2 }, rest };
  }
}

/** Whether `b` is a prefix of `sig`, or begins with all of it. */
function startsLike(b: Buffer, sig: Buffer): boolean {
  const n = Math.min(b.length, sig.length);
  return b.subarray(0, n).equals(sig.subarray(0, n));
}

const PORT = /^(0|[1-9]\d{0,4})$/;

function v1(b: Buffer): ProxyReadResult {
  const lf = b.indexOf(0x0a);
  if (lf < 0) {
    return b.length >= PROXY_V1_MAX
      ? { state: "refused", reason: `PROXY v1 line longer than ${PROXY_V1_MAX} bytes` }
      : { state: "more" };
  }
  if (lf + 1 > PROXY_V1_MAX)
    return { state: "refused", reason: `PROXY v1 line longer than ${PROXY_V1_MAX} bytes` };
  if (lf === 0 || b[lf - 1] !== 0x0d) return { state: "refused", reason: "PROXY v1 line not ended by CRLF" };
  const line = b.subarray(0, lf - 1).toString("latin1");
  const rest = b.subarray(lf + 1);
  const f = line.split(" ");
  // Section 2.1: "PROXY UNKNOWN" may be followed by anything up to the CRLF, which the
  // receiver ignores, keeping the connection's own endpoints.
  if (f[1] === "UNKNOWN") return { state: "done", header: { version: 1 }, rest };
  if (f.length !== 6 || (f[1] !== "TCP4" && f[1] !== "TCP6"))
    return { state: "refused", reason: "malformed PROXY v1 line" };
  const valid = f[1] === "TCP4" ? isIPv4 : isIPv6;
  if (!valid(f[2]) || !valid(f[3]))
    return { state: "refused", reason: `PROXY v1 line with an address that is not ${f[1]}` };
  if (!PORT.test(f[4]) || !PORT.test(f[5]) || Number(f[4]) > 65535 || Number(f[5]) > 65535)
    return { state: "refused", reason: "PROXY v1 line with a malformed port" };
  const family = f[1] === "TCP4" ? "IPv4" : "IPv6";
  const addr = (s: string) => (family === "IPv6" ? s.toLowerCase() : s);
  return {
    state: "done",
    header: {
      version: 1,
      source: { address: addr(f[2]), port: Number(f[4]), family },
      destination: { address: addr(f[3]), port: Number(f[5]), family },
    },
    rest,
  };
}

function ipv4(b: Buffer): string {
  return `${b[0]}.${b[1]}.${b[2]}.${b[3]}`;
}

/**
 * The text form Node gives socket.remoteAddress: RFC 5952 (lower case, the longest run of
 * two or more zero groups as "::"), an IPv4-mapped address as ::ffff:a.b.c.d, so that the
 * per-address caps (embedded-broker.ts addressGroup) see one address one way.
 */
export function ipv6(b: Buffer): string {
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(b.readUInt16BE(i));
  if (groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff)
    return `::ffff:${ipv4(b.subarray(12))}`;
  let bestAt = -1;
  let bestLen = 1;
  for (let i = 0; i < 8;) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) {
      bestAt = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestAt < 0) return hex.join(":");
  return `${hex.slice(0, bestAt).join(":")}::${hex.slice(bestAt + bestLen).join(":")}`;
}
