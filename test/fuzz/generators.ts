/**
 * Small, seeded generators of malformed inputs, one per serving transport. The same seed
 * gives the same inputs on every machine (mulberry32), so any input that broke something
 * can be named by (transport, seed, index) and kept in test/fuzz/corpus/.
 *
 * Generators mutate well-formed requests (bit flips, truncation, repetition, splices of
 * interesting values) and add a few structure bombs (deep JSON and CBOR, gzip bombs,
 * length fields that lie). Requests that carry a provision key use FUZZ_KEY, never the
 * demo's: failures counted against the real key would lock the honest check out, which
 * is the brute-force protection working (issue 8, defect 8), not a finding.
 */
import { gzipSync } from "node:zlib";
import { encodeMessage } from "../../lib/transports/coap-tcp/frame";
import { csm } from "../../lib/transports/coap-tcp/signaling";

export const FUZZ_KEY = "fuzz-provision-key";

export type Rng = () => number;

export function mulberry32(seed: number): Rng {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const int = (r: Rng, n: number) => Math.floor(r() * n);
const pick = <T>(r: Rng, xs: readonly T[]): T => xs[int(r, xs.length)];

const INTERESTING = [
  "",
  "\u0000",
  "\ud800",
  "\udc00-x",
  "\ufffd",
  "%00",
  "../../etc/passwd",
  "a".repeat(300),
  "0",
  "-1",
  "1e309",
  "null",
  "true",
  "[]",
  "{}",
  '{"__proto__":{"polluted":1}}',
  "\r\n\r\n",
  "\u202e",
];

/** Byte-level mutations of a seed input: what a broken or hostile peer sends. */
export function mutate(r: Rng, input: Buffer): Buffer {
  let b: Buffer = Buffer.from(input);
  const rounds = 1 + int(r, 4);
  for (let i = 0; i < rounds; i++) {
    switch (int(r, 7)) {
      case 0: // bit flip
        if (b.length) b[int(r, b.length)] ^= 1 << int(r, 8);
        break;
      case 1: // truncate
        b = b.subarray(0, int(r, b.length + 1));
        break;
      case 2: // random byte
        if (b.length) b[int(r, b.length)] = int(r, 256);
        break;
      case 3: {
        // insert an interesting value
        const at = int(r, b.length + 1);
        b = Buffer.concat([b.subarray(0, at), Buffer.from(pick(r, INTERESTING)), b.subarray(at)]);
        break;
      }
      case 4: {
        // repeat a slice
        const at = int(r, b.length + 1);
        const len = int(r, 16);
        const slice = b.subarray(at, at + len);
        b = Buffer.concat([b.subarray(0, at), ...Array(1 + int(r, 8)).fill(slice), b.subarray(at)]);
        break;
      }
      case 5: // extreme byte
        if (b.length) b[int(r, b.length)] = pick(r, [0x00, 0x7f, 0x80, 0xff]);
        break;
      default: // random tail
        b = Buffer.concat([b, Buffer.from(Array.from({ length: int(r, 32) }, () => int(r, 256)))]);
    }
  }
  return b;
}

/** JSON nested `depth` deep: `[[[...]]]` or `{"a":{"a":...}}`. */
export function deepJson(depth: number, object = false): string {
  return object ? '{"a":'.repeat(depth) + "1" + "}".repeat(depth) : "[".repeat(depth) + "]".repeat(depth);
}

/** CBOR nested arrays of one element, `depth` deep, closed by a 0 (RFC 8949 major type 4). */
export function deepCbor(depth: number): Buffer {
  return Buffer.concat([Buffer.alloc(depth, 0x81), Buffer.from([0x00])]);
}

/** CBOR items whose declared lengths lie: a byte string of 2^32-1 bytes, a map of 2^31 pairs. */
export const LYING_CBOR = [
  Buffer.from([0x5a, 0xff, 0xff, 0xff, 0xff, 0x00]),
  Buffer.from([0xba, 0x80, 0x00, 0x00, 0x00, 0x01]),
  Buffer.from([0x9b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
  Buffer.from([0x9f, 0x9f, 0x9f, 0x9f]),
  Buffer.from([0xd8, 0x18, 0x5a, 0x7f, 0xff, 0xff, 0xff]),
];

// ---------------------------------------------------------------- HTTP
export interface HttpInput {
  /** Raw request bytes, head and body, exactly as written to the socket. */
  raw: Buffer;
}

function tbBody(r: Rng): string {
  const base: Record<string, unknown> = {
    deviceName: `fuzz-${int(r, 1e6)}`,
    provisionDeviceKey: FUZZ_KEY,
    provisionDeviceSecret: "fuzz-secret",
  };
  if (r() < 0.3)
    base.credentialsType = pick(r, ["ACCESS_TOKEN", "MQTT_BASIC", "X509_CERTIFICATE", "", 7, null]);
  if (r() < 0.2) base.token = pick(r, INTERESTING);
  if (r() < 0.2) base.hash = pick(r, INTERESTING);
  if (r() < 0.1) base.deviceName = pick(r, INTERESTING);
  return JSON.stringify(base);
}

function httpRequestBytes(
  method: string,
  path: string,
  headers: Array<[string, string]>,
  body: Buffer,
  declaredLength = body.length,
): Buffer {
  const head = [`${method} ${path} HTTP/1.1`, "Host: 127.0.0.1", "Connection: close"];
  for (const [k, v] of headers) head.push(`${k}: ${v}`);
  head.push(`Content-Length: ${declaredLength}`);
  return Buffer.concat([Buffer.from(head.join("\r\n") + "\r\n\r\n", "latin1"), body]);
}

const CONTENT_TYPES = [
  "application/json",
  "application/json; charset=utf-8",
  "text/plain",
  "application/x-www-form-urlencoded",
  "application/cbor",
  "",
  "application/json; charset=utf-16",
  "multipart/form-data; boundary=x",
];

/** Bodies and headers against ThingsBoard's POST /api/v1/provision. */
export function tbHttpInput(r: Rng, i: number): HttpInput {
  const kind = i % 10;
  let body: Buffer = Buffer.from(tbBody(r));
  const headers: Array<[string, string]> = [["Content-Type", pick(r, CONTENT_TYPES)]];
  if (kind === 0) body = Buffer.from(deepJson(1000 + int(r, 30000), r() < 0.5));
  else if (kind === 1) {
    body = gzipSync(r() < 0.5 ? Buffer.from(tbBody(r)) : Buffer.alloc(256 * 1024 + int(r, 4 << 20), 0x20));
    headers.push(["Content-Encoding", pick(r, ["gzip", "deflate", "br", "gzip, gzip", "x-unknown"])]);
    if (r() < 0.3) body = mutate(r, body);
  } else if (kind === 2) {
    headers.push([
      pick(r, ["Transfer-Encoding", "Expect", "X-Forwarded-For", "Content-Type"]),
      pick(r, INTERESTING),
    ]);
  } else body = mutate(r, body);
  const declared = r() < 0.05 ? body.length + 1 + int(r, 100) : body.length;
  return {
    raw: httpRequestBytes(
      "POST",
      pick(r, ["/api/v1/provision", "/api/v1/provision/", "/api/v1/provision?x=1"]),
      headers,
      body,
      declared,
    ),
  };
}

/** Every byte of the UTF-8 form percent-encoded (encodeURIComponent throws on lone surrogates). */
const percent = (s: string) =>
  [...Buffer.from(s, "utf8")].map((b) => "%" + b.toString(16).padStart(2, "0")).join("");

/** Headers and paths against Mainflux's GET /things/bootstrap[/secure]/{id}. */
export function bootstrapInput(r: Rng, i: number): HttpInput {
  const id = r() < 0.5 ? "fuzz-thing" : percent(pick(r, INTERESTING)) || "x";
  const path =
    pick(r, ["/things/bootstrap/", "/things/bootstrap/secure/", "/things/bootstrap//", "/things/configs/"]) +
    id;
  const headers: Array<[string, string]> = [];
  const auth = pick(r, [
    "Thing fuzz-key",
    "Thing " + "ab".repeat(int(r, 300)),
    "Thing ",
    "thing x",
    "Bearer x",
    "Thing " + Buffer.from(pick(r, INTERESTING)).toString("latin1"),
    "Thing " + "z".repeat(9000),
  ]);
  if (i % 7 !== 0)
    headers.push([
      "Authorization",
      mutate(r, Buffer.from(auth))
        .toString("latin1")
        .replace(/[\r\n]/g, ""),
    ]);
  const method = i % 11 === 0 ? pick(r, ["POST", "PUT", "DELETE", "PATCH"]) : "GET";
  let body: Buffer = Buffer.alloc(0);
  if (method !== "GET") {
    body =
      i % 3 === 0
        ? Buffer.from(deepJson(20000))
        : mutate(r, Buffer.from('{"external_id":"x","external_key":"y"}'));
    headers.push(["Content-Type", "application/json"]);
  }
  return { raw: httpRequestBytes(method, path, headers, body) };
}

// ---------------------------------------------------------------- MQTT
function varint(n: number): Buffer {
  const out: number[] = [];
  do {
    let byte = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) byte |= 0x80;
    out.push(byte);
  } while (n > 0 && out.length < 4);
  return Buffer.from(out);
}
const str = (s: string | Buffer) => {
  const b = Buffer.isBuffer(s) ? s : Buffer.from(s);
  return Buffer.concat([Buffer.from([b.length >> 8, b.length & 0xff]), b]);
};

export function mqttConnect(clientId: string, username = "provision", keepalive = 10): Buffer {
  const vh = Buffer.concat([str("MQTT"), Buffer.from([4, 0x82, keepalive >> 8, keepalive & 0xff])]);
  const payload = Buffer.concat([str(clientId), str(username)]);
  return Buffer.concat([Buffer.from([0x10]), varint(vh.length + payload.length), vh, payload]);
}

export function mqttPublish(topic: string, payload: Buffer, qos = 0): Buffer {
  const vh = Buffer.concat([str(topic), qos ? Buffer.from([0, 1]) : Buffer.alloc(0)]);
  return Buffer.concat([Buffer.from([0x30 | (qos << 1)]), varint(vh.length + payload.length), vh, payload]);
}

/** One MQTT session's bytes: a CONNECT (sometimes broken) then 1 to 4 packets, some broken. */
export function mqttInput(r: Rng, i: number): { raw: Buffer; packets: number } {
  const parts: Buffer[] = [];
  let connect: Buffer = mqttConnect(
    `fuzz-${i}`,
    r() < 0.9 ? "provision" : pick(r, INTERESTING),
    pick(r, [0, 10, 65535]),
  );
  if (r() < 0.15) connect = mutate(r, connect);
  parts.push(connect);
  const n = 1 + int(r, 4);
  for (let k = 0; k < n; k++) {
    const kind = int(r, 8);
    let body: Buffer;
    if (kind === 0) body = Buffer.from(deepJson(1000 + int(r, 20000), r() < 0.5));
    else if (kind === 1) body = Buffer.from(pick(r, INTERESTING));
    else body = mutate(r, Buffer.from(tbBody(r)));
    const topic =
      r() < 0.85
        ? "/provision/request"
        : pick(r, ["/provision/response", "#", "/provision/request/+", "\u0000", "$SYS/x"]);
    let pkt: Buffer = mqttPublish(topic, body, int(r, 3));
    if (r() < 0.2) pkt = mutate(r, pkt);
    if (r() < 0.05) pkt = Buffer.concat([Buffer.from([0x30]), Buffer.from([0xff, 0xff, 0xff, 0x7f])]); // 256 MB claimed
    if (r() < 0.05) pkt = Buffer.from([pick(r, [0x82, 0xa2, 0xc0, 0xe0, 0xf0, 0x00]), 0x00]);
    parts.push(pkt);
  }
  return { raw: Buffer.concat(parts), packets: 1 + n };
}

// ---------------------------------------------------------------- CoAP over UDP (RFC 7252)
function coapUdp(
  code: number,
  mid: number,
  token: Buffer,
  options: Array<[number, Buffer]>,
  payload: Buffer,
  type = 0,
): Buffer {
  const parts: Buffer[] = [
    Buffer.from([0x40 | (type << 4) | token.length, code, mid >> 8, mid & 0xff]),
    token,
  ];
  let last = 0;
  for (const [num, value] of options) {
    const delta = num - last;
    last = num;
    const ext: number[] = [];
    const nib = (v: number) =>
      v < 13 ? v : v < 269 ? (ext.push(v - 13), 13) : (ext.push((v - 269) >> 8, (v - 269) & 0xff), 14);
    const d = nib(delta);
    const extDelta = ext.splice(0);
    const l = nib(value.length);
    parts.push(Buffer.from([(d << 4) | l, ...extDelta, ...ext]), value);
  }
  if (payload.length) parts.push(Buffer.from([0xff]), payload);
  return Buffer.concat(parts);
}

export function coapUdpProvision(body: string, mid: number, token: Buffer): Buffer {
  return coapUdp(
    0x02,
    mid,
    token,
    [
      [11, Buffer.from("api")],
      [11, Buffer.from("v1")],
      [11, Buffer.from("provision")],
    ],
    Buffer.from(body),
  );
}

export function coapUdpInput(r: Rng, i: number): Buffer {
  const token = Buffer.from([int(r, 256), int(r, 256), i & 0xff, (i >> 8) & 0xff]);
  const kind = i % 8;
  let body = tbBody(r);
  if (kind === 0) body = deepJson(400 + int(r, 600));
  let msg: Buffer = coapUdpProvision(body, i & 0xffff, token);
  if (kind === 1) {
    // Block1 with huge sizes, Size1 that lies
    msg = coapUdp(
      0x02,
      i & 0xffff,
      token,
      [
        [11, Buffer.from("api")],
        [27, Buffer.from([0x0e])],
        [60, Buffer.from([0xff, 0xff, 0xff, 0xff])],
      ],
      Buffer.alloc(1024, 0x5b),
    );
  }
  if (kind >= 2) msg = mutate(r, msg);
  return msg;
}

// ---------------------------------------------------------------- CoAP over TCP/TLS (RFC 8323)
const PLGD_PATHS = [
  "x.plgd.dev/time",
  "api/v1/provisioning/ownership",
  "api/v1/provisioning/cloud-configuration",
  "api/v1/provisioning/credentials",
  "api/v1/provisioning/acls",
];

export function coapTcpCsm(): Buffer {
  return encodeMessage(csm(1152, true));
}

export function coapTcpGetTime(token: Buffer): Buffer {
  return encodeMessage({
    code: 0x01,
    token,
    options: ["x.plgd.dev", "time"].map((s) => ({ number: 11, value: Buffer.from(s) })),
    payload: Buffer.alloc(0),
  });
}

/** Frames for one mutual-TLS connection after its CSM: 1 to 4 requests, most of them broken. */
export function coapTcpInput(r: Rng, i: number): { frames: Buffer[] } {
  const frames: Buffer[] = [];
  const n = 1 + int(r, 4);
  for (let k = 0; k < n; k++) {
    const path = pick(r, PLGD_PATHS).split("/");
    const kind = int(r, 8);
    let payload: Buffer;
    if (kind === 0) payload = deepCbor(1000 + int(r, 60000));
    else if (kind === 1) payload = pick(r, LYING_CBOR);
    else if (kind === 2) payload = Buffer.from(deepJson(2000));
    else payload = mutate(r, Buffer.from([0xa2, 0x61, 0x61, 0x01, 0x61, 0x62, 0x82, 0x01, 0x02]));
    const options: Array<{ number: number; value: Buffer }> = path.map((s) => ({
      number: 11,
      value: Buffer.from(s),
    }));
    options.push({ number: 12, value: Buffer.from([60]) }); // application/cbor
    if (r() < 0.2)
      options.push({ number: pick(r, [27, 23, 60, 28, 9, 2049]), value: mutate(r, Buffer.from([0x0e])) });
    let frame: Buffer;
    try {
      frame = encodeMessage({
        code: pick(r, [0x01, 0x02, 0x03, 0x04, 0xe1, 0xe2, 0x45]),
        token: Buffer.from([i & 0xff, k]),
        options,
        payload,
      });
    } catch {
      frame = Buffer.from([0x0d, 0x01]);
    }
    if (r() < 0.4) frame = mutate(r, frame);
    frames.push(frame);
  }
  return { frames };
}
