import assert from "node:assert/strict";
import { describe, it } from "mocha";
import { encode } from "cbor";
import { cborLimitError, decodeCborBounded } from "../../../lib/util/cbor-limits";

const LIMITS = { maxBytes: 262144, maxDepth: 32, maxItems: 10000 };

function nested(depth: number, open: number, close?: number): Buffer {
  const b = Buffer.alloc(close === undefined ? depth + 1 : depth * 2 + 1, open);
  if (close === undefined) b[depth] = 0x00;
  else {
    b[depth] = 0x00;
    b.fill(close, depth + 1);
  }
  return b;
}

describe("util: CBOR bounded before decoding (RFC 8949)", () => {
  it("decodes the DPS representations as the decoder does", () => {
    const body = {
      di: "0b8c3a34-5b2c-4d9a-9f3e-2a7f0e6d1c11",
      csr: { data: "-----BEGIN CERTIFICATE REQUEST-----", encoding: "oic.sec.encoding.pem" },
      creds: [{ credtype: 8, publicdata: { data: Buffer.from("x"), encoding: "raw" }, tag: "dps" }],
      n: [1, -1, 1.5, 2 ** 40, true, null, undefined, new Date(0)],
    };
    const r = decodeCborBounded(encode(body), LIMITS);
    assert.ok(r.ok);
    assert.equal(r.items.length, 1);
    assert.deepEqual((r.items[0] as typeof body).csr, body.csr);
  });

  it("accepts nesting up to the limit and refuses one level more", () => {
    assert.equal(cborLimitError(nested(32, 0x81), LIMITS), undefined);
    assert.match(cborLimitError(nested(33, 0x81), LIMITS) ?? "", /nested deeper than 32 levels/);
  });

  it("counts indefinite-length arrays and maps, and tags, as nesting", () => {
    assert.match(cborLimitError(nested(40, 0x9f, 0xff), LIMITS) ?? "", /nested deeper than 32/);
    // {_ 0: {_ 0: ... }} : indefinite maps, key 0 then the nested map
    const maps = Buffer.concat([
      Buffer.alloc(0),
      ...Array.from({ length: 40 }, () => Buffer.from([0xbf, 0x00])),
    ]);
    assert.match(cborLimitError(maps, LIMITS) ?? "", /nested deeper than 32/);
    const tags = Buffer.concat([Buffer.alloc(40, 0xc6), Buffer.from([0x00])]);
    assert.match(cborLimitError(tags, LIMITS) ?? "", /nested deeper than 32/);
  });

  it("refuses the 250 kB bomb of nested arrays at once, without handing it to the decoder", () => {
    const bomb = nested(250_000, 0x81);
    const r = decodeCborBounded(bomb, LIMITS);
    assert.deepEqual(r, { ok: false, error: "CBOR nested deeper than 32 levels" });
  });

  it("refuses too many items, too large bodies, truncation and lying lengths", () => {
    const flat = Buffer.concat([Buffer.from([0x9a, 0x00, 0x00, 0x4e, 0x21]), Buffer.alloc(20001, 0x00)]);
    assert.match(cborLimitError(flat, LIMITS) ?? "", /more than 10000 items/);
    assert.match(cborLimitError(Buffer.alloc(300000), LIMITS) ?? "", /larger than 262144 bytes/);
    assert.match(cborLimitError(Buffer.from([0x19, 0x01]), LIMITS) ?? "", /ends in the middle/);
    assert.match(
      cborLimitError(Buffer.from([0x9b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]), LIMITS) ?? "",
      /claims more items/,
    );
    assert.match(
      cborLimitError(Buffer.from([0x5a, 0x7f, 0xff, 0xff, 0xff, 0x00]), LIMITS) ?? "",
      /runs past the end/,
    );
    assert.match(cborLimitError(Buffer.from([0xff]), LIMITS) ?? "", /unexpected CBOR break/);
    assert.match(cborLimitError(Buffer.from([0x1c]), LIMITS) ?? "", /reserved/);
    assert.match(cborLimitError(Buffer.from([0x1f]), LIMITS) ?? "", /indefinite length/);
    assert.match(cborLimitError(Buffer.from([0x5f, 0x61, 0x41, 0xff]), LIMITS) ?? "", /definite chunks/);
  });

  it("accepts indefinite strings made of definite chunks, and sequences of items", () => {
    assert.equal(cborLimitError(Buffer.from([0x5f, 0x41, 0x01, 0x42, 0x02, 0x03, 0xff]), LIMITS), undefined);
    const r = decodeCborBounded(Buffer.from([0x01, 0x82, 0x02, 0x03]), LIMITS);
    assert.ok(r.ok);
    assert.deepEqual(r.items, [1, [2, 3]]);
  });

  it("says 'not CBOR' for well-framed bytes the decoder refuses, never quoting them", () => {
    // Text string with invalid UTF-8 is framed correctly; the decoder is lenient, so use a bad simple value.
    const r = decodeCborBounded(Buffer.from([0xf8, 0x10]), LIMITS);
    if (!r.ok) assert.equal(r.error, "body is not CBOR");
  });
});
