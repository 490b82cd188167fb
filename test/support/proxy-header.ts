/**
 * PROXY protocol headers as a proxy writes them (haproxy's doc/proxy-protocol.txt
 * sections 2.1 and 2.2), for tests that speak for a proxy without running one.
 */
import { isIPv4 } from "node:net";

const SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);

function ip6Bytes(a: string): Buffer {
  const [head, tail] = a.split("::");
  const left = head ? head.split(":") : [];
  const right = tail === undefined ? [] : tail ? tail.split(":") : [];
  const groups =
    tail === undefined
      ? left
      : [...left, ...Array<string>(8 - left.length - right.length).fill("0"), ...right];
  const b = Buffer.alloc(16);
  groups.forEach((g, i) => b.writeUInt16BE(parseInt(g, 16), 2 * i));
  return b;
}

export interface V2Spec {
  /** 0 LOCAL, 1 PROXY (default). */
  command?: number;
  /** Overrides the family nibble (0 UNSPEC, 1 INET, 2 INET6, 3 UNIX); default from the address. */
  family?: number;
  src?: string;
  dst?: string;
  sport?: number;
  dport?: number;
  /** TLV bytes appended after the address block. */
  tlv?: Buffer;
  /** Overrides the length field. */
  length?: number;
  version?: number;
}

export function proxyV2(spec: V2Spec = {}): Buffer {
  const src = spec.src ?? "192.0.2.7";
  const dst = spec.dst ?? "192.0.2.1";
  const v4 = isIPv4(src);
  const family = spec.family ?? (v4 ? 1 : 2);
  let addr: Buffer;
  if (family === 1 || family === 2) {
    const ports = Buffer.alloc(4);
    ports.writeUInt16BE(spec.sport ?? 40000, 0);
    ports.writeUInt16BE(spec.dport ?? 1883, 2);
    addr = v4
      ? Buffer.concat([
          Buffer.from(src.split(".").map(Number)),
          Buffer.from(dst.split(".").map(Number)),
          ports,
        ])
      : Buffer.concat([ip6Bytes(src), ip6Bytes(dst), ports]);
  } else addr = Buffer.alloc(0);
  if (spec.command === 0 && spec.family === undefined) addr = Buffer.alloc(0);
  const body = Buffer.concat([addr, spec.tlv ?? Buffer.alloc(0)]);
  const fixed = Buffer.alloc(4);
  fixed[0] = ((spec.version ?? 2) << 4) | (spec.command ?? 1);
  fixed[1] = ((spec.command === 0 && spec.family === undefined ? 0 : family) << 4) | 0x1;
  fixed.writeUInt16BE(spec.length ?? body.length, 2);
  return Buffer.concat([SIGNATURE, fixed, body]);
}

/** A TLV (section 2.2.1): type, 16-bit length, value. */
export function tlv(type: number, value: Buffer): Buffer {
  const h = Buffer.alloc(3);
  h[0] = type;
  h.writeUInt16BE(value.length, 1);
  return Buffer.concat([h, value]);
}

export function proxyV1(src = "192.0.2.7", dst = "192.0.2.1", sport = 40000, dport = 1883): Buffer {
  return Buffer.from(`PROXY ${isIPv4(src) ? "TCP4" : "TCP6"} ${src} ${dst} ${sport} ${dport}\r\n`, "latin1");
}
