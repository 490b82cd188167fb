import assert from "node:assert/strict";
import { gzipSync } from "node:zlib";
import { describe, it } from "mocha";
import {
  decodeKuraPayload,
  encodeKuraPayload,
  isGzip,
  KuraPayloadError,
  metricsOf,
  type KuraMetric,
  type KuraPayload,
} from "../../../lib/dialects/kura/payload";
import { kuraText, protocRead, protocReads, protocDecode, protocEncode } from "../../support/protoc";
import { run } from "../../support/process";

const ALL_BYTES = Buffer.from(Array.from({ length: 256 }, (_, i) => i));

/** Every value type, with the edges of each range. */
const METRICS: KuraMetric[] = [
  { name: "pi", type: "DOUBLE", value: Math.PI },
  { name: "negative zero", type: "DOUBLE", value: -0 },
  { name: "huge", type: "DOUBLE", value: 1.7976931348623157e308 },
  { name: "tiny", type: "DOUBLE", value: 5e-324 },
  { name: "nan", type: "DOUBLE", value: NaN },
  { name: "float", type: "FLOAT", value: Math.fround(0.1) },
  { name: "float inf", type: "FLOAT", value: -Infinity },
  { name: "long zero", type: "INT64", value: 0 },
  { name: "long -1", type: "INT64", value: -1 },
  { name: "long max safe", type: "INT64", value: Number.MAX_SAFE_INTEGER },
  { name: "long min safe", type: "INT64", value: Number.MIN_SAFE_INTEGER },
  { name: "long 2^53", type: "INT64", value: 2n ** 53n },
  { name: "long max", type: "INT64", value: 2n ** 63n - 1n },
  { name: "long min", type: "INT64", value: -(2n ** 63n) },
  { name: "int min", type: "INT32", value: -2147483648 },
  { name: "int max", type: "INT32", value: 2147483647 },
  { name: "int -1", type: "INT32", value: -1 },
  { name: "int 300", type: "INT32", value: 300 },
  { name: "yes", type: "BOOL", value: true },
  { name: "no", type: "BOOL", value: false },
  { name: "empty", type: "STRING", value: "" },
  { name: 'ünïcødé "quoted" \\ ✓', type: "STRING", value: "grüße 😀 \u0000 \n end" },
  { name: "no bytes", type: "BYTES", value: Buffer.alloc(0) },
  { name: "all bytes", type: "BYTES", value: ALL_BYTES },
];

const FULL: KuraPayload = {
  timestamp: 1764633600123,
  position: {
    latitude: 46.0717,
    longitude: 13.2346,
    altitude: 113.5,
    precision: 2.5,
    heading: 359.9,
    speed: 0,
    timestamp: 1764633599000,
    satellites: 11,
    status: -4,
  },
  metrics: METRICS,
  body: ALL_BYTES,
};

const SAMPLES: Array<[string, KuraPayload]> = [
  ["empty", { metrics: [] }],
  ["every metric type", { metrics: METRICS }],
  ["position with the required fields only", { metrics: [], position: { latitude: -90, longitude: 180 } }],
  ["timestamp, position, metrics and body", FULL],
  [
    "int64 timestamps beyond the safe range",
    { timestamp: -(2n ** 63n), metrics: [], position: { latitude: 0, longitude: 0, timestamp: 2n ** 62n } },
  ],
  ["a body of 100 kB", { metrics: [], body: Buffer.alloc(100_000, 0x5a) }],
];

async function gunzipWithDebian(b: Buffer): Promise<Buffer> {
  const r = await run("gzip", ["-dc"], { input: b });
  assert.equal(r.code, 0, r.stderr);
  return r.stdout;
}

async function gzipWithDebian(b: Buffer): Promise<Buffer> {
  const r = await run("gzip", ["-c"], { input: b });
  assert.equal(r.code, 0, r.stderr);
  return r.stdout;
}

function refused(fn: () => unknown, match: RegExp, tooLarge = false): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof KuraPayloadError, `not a KuraPayloadError: ${String(err)}`);
    assert.match(err.message, match);
    assert.equal(err.tooLarge, tooLarge, err.message);
    return true;
  });
}

/** A varint as protobuf writes it. */
function varint(v: bigint | number): Buffer {
  let u = BigInt.asUintN(64, BigInt(v));
  const out: number[] = [];
  while (u > 0x7fn) {
    out.push(Number(u & 0x7fn) | 0x80);
    u >>= 7n;
  }
  out.push(Number(u));
  return Buffer.from(out);
}

function tag(field: number, wire: number): Buffer {
  return varint((field << 3) | wire);
}

function field(n: number, bytes: Buffer): Buffer {
  return Buffer.concat([tag(n, 2), varint(bytes.length), bytes]);
}

describe("kura: KuraPayload against Debian's protoc, and hostile input", () => {
  for (const [label, sample] of SAMPLES) {
    it(`${label}: our bytes equal protoc --encode's, and we decode those to the same message`, async () => {
      const theirs = await protocEncode(kuraText(sample));
      const ours = encodeKuraPayload(sample);
      assert.ok(
        ours.equals(theirs),
        `bytes differ:\nours   ${ours.toString("hex")}\ntheirs ${theirs.toString("hex")}`,
      );
      assert.deepEqual(decodeKuraPayload(theirs), sample);
    });

    it(`${label}: protoc --decode reads our bytes, and writes the same bytes again`, async () => {
      const ours = encodeKuraPayload(sample);
      const text = await protocDecode(ours);
      assert.ok((await protocEncode(text)).equals(ours));
    });
  }

  it("protoc --decode names every metric and value we wrote", async () => {
    const text = await protocDecode(encodeKuraPayload({ metrics: METRICS }));
    for (const m of METRICS) assert.ok(text.includes(`type: ${m.type}`), m.type);
    assert.match(text, /name: "int min"\s+type: INT32\s+int_value: -2147483648/);
    assert.match(text, /name: "long min"\s+type: INT64\s+long_value: -9223372036854775808/);
    assert.match(text, /name: "yes"\s+type: BOOL\s+bool_value: true/);
  });

  it("gzip: ours inflates with Debian's gzip into protoc's bytes; protoc's bytes gzipped by Debian's gzip decode", async () => {
    const theirs = await protocEncode(kuraText(FULL));
    const zipped = encodeKuraPayload(FULL, { gzip: true });
    assert.ok(isGzip(zipped));
    assert.ok((await gunzipWithDebian(zipped)).equals(theirs));
    await protocDecode(await gunzipWithDebian(zipped));
    const theirsZipped = await gzipWithDebian(theirs);
    assert.ok(isGzip(theirsZipped));
    assert.deepEqual(decodeKuraPayload(theirsZipped), FULL);
  });

  it("a value field left out reads as its type's default, as Kura's getters give it", async () => {
    const types = ["DOUBLE", "FLOAT", "INT64", "INT32", "BOOL", "STRING", "BYTES"];
    const text = types.map((t) => `metric { name: "${t}" type: ${t} }`).join("\n");
    const p = decodeKuraPayload(await protocEncode(text));
    assert.deepEqual(
      p.metrics.map((m) => m.value),
      [0, 0, 0, 0, false, "", Buffer.alloc(0)],
    );
  });

  it("unknown fields, extensions (3 to 4999), nested groups and mistyped known fields are skipped, as protoc skips them", async () => {
    const known = await protocEncode(kuraText(FULL));
    let groups = Buffer.alloc(0);
    for (let depth = 0; depth < 50; depth++) groups = Buffer.concat([tag(7, 3), groups, tag(7, 4)]);
    const noise = Buffer.concat([
      tag(3, 0),
      varint(12345), // an extension
      tag(4999, 5),
      Buffer.alloc(4), // a fixed32 extension
      tag(6000, 1),
      Buffer.alloc(8), // an unknown fixed64
      field(7000, Buffer.from("unknown")),
      groups,
      tag(1, 2),
      varint(3),
      Buffer.from("abc"), // timestamp with a wire type that is not its own
    ]);
    const inMetric = Buffer.concat([
      field(1, Buffer.from("m")),
      tag(2, 0),
      varint(5),
      field(8, Buffer.from("v")),
      tag(99, 0),
      varint(1),
      groups,
    ]);
    const bytes = Buffer.concat([noise, known, field(5000, inMetric), tag(4000, 0), varint(1)]);
    assert.equal(await protocReads(bytes), "complete");
    const p = decodeKuraPayload(bytes);
    assert.deepEqual(p, { ...FULL, metrics: [...METRICS, { name: "m", type: "STRING", value: "v" }] });
  });

  it("a position sent twice merges into one, and a metric name sent twice is kept twice (metricsOf: the last wins)", async () => {
    const bytes = Buffer.concat([
      await protocEncode(
        'position { latitude: 1 longitude: 2 altitude: 3 } metric { name: "a" type: INT32 int_value: 1 }',
      ),
      await protocEncode(
        'position { latitude: 4 longitude: 5 } metric { name: "a" type: STRING string_value: "two" }',
      ),
    ]);
    const p = decodeKuraPayload(bytes);
    assert.deepEqual(p.position, { latitude: 4, longitude: 5, altitude: 3 });
    assert.equal(p.metrics.length, 2);
    assert.deepEqual([...metricsOf(p)], [["a", "two"]]);
  });

  it("a Uint8Array that is not a Buffer decodes the same", async () => {
    const b = encodeKuraPayload(FULL);
    const copy = new Uint8Array(new ArrayBuffer(b.length + 8), 4, b.length);
    copy.set(b);
    assert.deepEqual(decodeKuraPayload(copy), FULL);
  });

  it("every truncation is either refused by both codecs or read by both as the same shorter message", async () => {
    const whole = encodeKuraPayload({
      timestamp: 1,
      position: { latitude: 1, longitude: 2 },
      metrics: [
        { name: "a", type: "STRING", value: "xyz" },
        { name: "b", type: "INT64", value: -1 },
      ],
      body: Buffer.from("body"),
    });
    let refusedCount = 0;
    for (let n = 1; n < whole.length; n++) {
      const cut = whole.subarray(0, n);
      const protocReadsIt = (await protocReads(cut)) === "complete";
      let ours: KuraPayload | undefined;
      try {
        ours = decodeKuraPayload(cut);
      } catch (err) {
        assert.ok(err instanceof KuraPayloadError, String(err));
        assert.match(err.message, /truncated|beyond the end|required/);
        refusedCount++;
      }
      assert.equal(ours !== undefined, protocReadsIt, `cut at ${n}: ours ${ours ? "reads" : "refuses"}`);
      if (ours) assert.deepEqual(encodeKuraPayload(ours), Buffer.from(cut));
    }
    assert.ok(refusedCount > whole.length / 2);
  });

  it("a length far beyond the message, or beyond 32 bits, is refused at once", () => {
    refused(
      () => decodeKuraPayload(Buffer.concat([tag(5000, 2), varint(0xffffffff), Buffer.from("x")])),
      /length beyond the end/,
    );
    refused(() => decodeKuraPayload(Buffer.concat([tag(5001, 2), varint(2n ** 62n)])), /length out of range/);
    refused(
      () => decodeKuraPayload(Buffer.concat([tag(5001, 2), Buffer.alloc(11, 0xff)])),
      /varint longer than 10 bytes/,
    );
  });

  it("more metrics than the limit, or more bytes, are refused as too large", () => {
    const many = encodeKuraPayload({
      metrics: Array.from({ length: 1025 }, (_, i) => ({
        name: `m${i}`,
        type: "BOOL" as const,
        value: true,
      })),
    });
    refused(() => decodeKuraPayload(many), /more than 1024 metrics/, true);
    assert.equal(decodeKuraPayload(many, { maxMetrics: 1025 }).metrics.length, 1025);
    refused(() => decodeKuraPayload(many, { maxBytes: 1000 }), /larger than 1000 bytes/, true);
  });

  it("a gzip bomb stops at the limit (1 MiB by default), whatever it would inflate to", () => {
    // 64 gzip members of 1 MiB of zeros each: 64 MiB inflated from about 64 kB.
    const member = gzipSync(Buffer.alloc(1024 * 1024));
    const bomb = Buffer.concat(Array.from({ length: 64 }, () => member));
    assert.ok(bomb.length < 100_000);
    refused(() => decodeKuraPayload(bomb), /inflates to more than 1048576 bytes/, true);
    refused(
      () => decodeKuraPayload(gzipSync(Buffer.alloc(5000)), { maxBytes: 4096 }),
      /inflates to more than 4096/,
      true,
    );
  });

  it("gzip that does not inflate, or gzip inside gzip, is refused", () => {
    const zipped = gzipSync(encodeKuraPayload(FULL));
    refused(() => decodeKuraPayload(zipped.subarray(0, zipped.length - 10)), /does not inflate/);
    refused(() => decodeKuraPayload(gzipSync(zipped)), /gzip inside gzip/);
  });

  it("groups nested deeper than protobuf's own limit, or ended by another, are refused without recursion", () => {
    const deep = Buffer.concat([...Array.from({ length: 100_000 }, () => tag(7, 3))]);
    refused(() => decodeKuraPayload(deep), /groups nested too deep/);
    refused(() => decodeKuraPayload(Buffer.concat([tag(7, 3), tag(8, 4)])), /not started/);
    refused(() => decodeKuraPayload(tag(7, 4)), /not started/);
    refused(() => decodeKuraPayload(Buffer.concat([tag(7, 3), tag(8, 0), varint(1)])), /truncated group/);
  });

  it("required fields missing, an unknown value type, bad wire types and bad UTF-8 are refused, as protoc refuses them", async () => {
    // protoc parses these partially (its warning names the missing required field) or not at all.
    const cases: Array<[Buffer, RegExp, "partial" | "refused"]> = [
      [field(5000, Buffer.concat([tag(2, 0), varint(5)])), /no name/, "partial"],
      [field(5000, field(1, Buffer.from("x"))), /no type/, "partial"],
      [
        field(5000, Buffer.concat([field(1, Buffer.from("x")), tag(2, 0), varint(7)])),
        /unknown type 7/,
        "partial",
      ],
      [
        field(2, Buffer.concat([tag(1, 1), Buffer.alloc(8)])),
        /position without latitude or longitude/,
        "partial",
      ],
      [Buffer.from([0x1f]), /invalid wire type 7/, "refused"],
      [Buffer.from([0x00]), /field number 0/, "refused"],
    ];
    for (const [bytes, match, theirs] of cases) {
      refused(() => decodeKuraPayload(bytes), match);
      assert.equal(await protocReads(bytes), theirs, String(match));
    }
    const badUtf8 = field(5000, Buffer.concat([field(1, Buffer.from([0xc3, 0x28])), tag(2, 0), varint(5)]));
    refused(() => decodeKuraPayload(badUtf8), /metric name is not UTF-8/);
  });

  it("values that do not fit their type are refused when encoding", () => {
    const enc = (m: unknown) => () => encodeKuraPayload({ metrics: [m as KuraMetric] });
    refused(enc({ name: "a", type: "INT32", value: 2 ** 31 }), /not a 32-bit integer/);
    refused(enc({ name: "a", type: "INT32", value: 1.5 }), /not a 32-bit integer/);
    refused(enc({ name: "a", type: "INT64", value: 2 ** 53 }), /not a safe integer/);
    refused(enc({ name: "a", type: "INT64", value: 2n ** 63n }), /64-bit range/);
    refused(enc({ name: "a", type: "BOOL", value: 1 }), /not a boolean/);
    refused(enc({ name: "a", type: "STRING", value: 1 }), /not a string/);
    refused(enc({ name: "a", type: "BYTES", value: "x" }), /not bytes/);
    refused(enc({ name: "a", type: "DOUBLE", value: "1" }), /not a number/);
    refused(enc({ name: "a", type: "TEXT", value: "1" }), /unknown type TEXT/);
    refused(
      () => encodeKuraPayload({ metrics: [], position: { latitude: 1 } as never }),
      /without longitude/,
    );
  });

  it("300 seeded mutations of a message: ours reads exactly those protoc reads completely, and reads them as protoc does", async () => {
    const whole = encodeKuraPayload({
      timestamp: 1764633600123,
      position: { latitude: 1.5, longitude: 2.5, satellites: 3 },
      metrics: [
        { name: "s", type: "STRING", value: "text" },
        { name: "l", type: "INT64", value: -5 },
        { name: "f", type: "FLOAT", value: 0.5 },
        { name: "b", type: "BYTES", value: Buffer.from([1, 2, 3]) },
      ],
      body: Buffer.from("body"),
    });
    let seed = 12345;
    const rand = (n: number) => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed % n;
    };
    const mutants: Buffer[] = [];
    for (let i = 0; i < 300; i++) {
      const b = Buffer.from(whole);
      for (let k = 1 + rand(3); k > 0; k--) b[rand(b.length)] = rand(256);
      mutants.push(b);
    }
    // Eight protoc processes at a time.
    let agreed = 0;
    let compared = 0;
    for (let i = 0; i < mutants.length; i += 8) {
      const group = mutants.slice(i, i + 8);
      const theirs = await Promise.all(group.map((b) => protocRead(b)));
      for (const [j, b] of group.entries()) {
        let ours: KuraPayload | undefined;
        let why = "";
        try {
          ours = decodeKuraPayload(b);
        } catch (err) {
          assert.ok(err instanceof KuraPayloadError, String(err));
          why = err.message;
        }
        // proto2 strings are not checked for UTF-8 by protoc; we refuse them.
        if (why.endsWith("is not UTF-8")) continue;
        const { verdict, text } = theirs[j];
        const label = `mutant ${i + j} (${b.toString("hex")}): ours ${why || "reads"}, protoc ${verdict}`;
        assert.equal(ours !== undefined, verdict === "complete", label);
        if (!ours) continue;
        agreed++;
        // Where protoc saw no unknown field, the message it read, written out again by
        // protoc in its canonical form, reads to us as the mutant did (odd encodings,
        // repeated fields and merges are read alike).
        if (/^\s*\d+[ :]/m.test(text)) continue;
        assert.deepEqual(decodeKuraPayload(await protocEncode(text)), ours, label);
        compared++;
      }
    }
    assert.ok(agreed > 20 && compared > 10, `${agreed} read, ${compared} compared`);
    assert.ok(agreed > 0);
  });
});
