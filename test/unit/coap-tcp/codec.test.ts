import assert from "node:assert/strict";
import { describe, it } from "mocha";
import { decodeBlock, encodeBlock, sliceBlock, szxFor } from "../../../lib/transports/coap-tcp/blockwise";
import { Code, codeToString, Opt, parseCode } from "../../../lib/transports/coap-tcp/codes";
import { CoapFormatError } from "../../../lib/transports/coap-tcp/errors";
import {
  decodeMessage,
  encodedSize,
  encodeMessage,
  FrameParser,
  type CoapMessage,
} from "../../../lib/transports/coap-tcp/frame";
import {
  decodeOptions,
  encodeOptions,
  encodeUint,
  stringOption,
} from "../../../lib/transports/coap-tcp/options";
import { parseCoapUri } from "../../../lib/transports/coap-tcp/uri";

describe("unit/coap-tcp/codec", () => {
  function msg(payloadLen: number, options = [stringOption(Opt.URI_PATH, "a")]): CoapMessage {
    return { code: Code.POST, token: Buffer.from([1, 2, 3]), options, payload: Buffer.alloc(payloadLen, 7) };
  }

  it("Len nibble and extended lengths at every boundary (RFC 8323 §3.2)", () => {
    // body = options (2 bytes) + marker + payload
    const cases: Array<[number, number, number]> = [
      [9, 12, 0], // body 12 -> nibble 12, no extension
      [10, 13, 1], // body 13 -> nibble 13, 1 byte (value 0)
      [265, 268, 1],
      [266, 269, 2], // nibble 14, 2 bytes (value 0)
      [65801, 65804, 2],
      [65802, 65805, 4], // nibble 15, 4 bytes (value 0)
    ];
    for (const [payload, body, ext] of cases) {
      const m = msg(payload);
      const frame = encodeMessage(m);
      assert.equal(frame.length, 1 + ext + 1 + 3 + body, `payload ${payload}`);
      assert.equal(frame[0] >> 4, ext === 0 ? body : ext === 1 ? 13 : ext === 2 ? 14 : 15);
      assert.equal(frame[0] & 0x0f, 3);
      assert.equal(encodedSize(m), frame.length);
      const back = decodeMessage(frame);
      assert.equal(back.code, Code.POST);
      assert.deepEqual(back.token, m.token);
      assert.deepEqual(back.payload, m.payload);
      assert.equal(back.options[0].value.toString(), "a");
    }
    const zero = encodeMessage(msg(10));
    assert.equal(zero[1], 0, "extension of 13 + 0");
  });

  it("options: deltas and lengths with 1- and 2-byte extensions, sorted, repeatable", () => {
    const long = Buffer.alloc(300, 0x61);
    const opts = [
      { number: Opt.REQUEST_TAG, value: Buffer.from([9]) },
      stringOption(Opt.URI_PATH, "x"),
      { number: 2000, value: long },
      stringOption(Opt.URI_PATH, "y"),
      { number: Opt.CONTENT_FORMAT, value: encodeUint(60) },
    ];
    const enc = encodeOptions(opts);
    const { options, payload } = decodeOptions(Buffer.concat([enc, Buffer.from([0xff, 1])]), 0);
    assert.deepEqual(
      options.map((o) => o.number),
      [11, 11, 12, 292, 2000],
    );
    assert.deepEqual(
      options.slice(0, 2).map((o) => o.value.toString()),
      ["x", "y"],
    );
    assert.deepEqual(options[4].value, long);
    assert.deepEqual(payload, Buffer.from([1]));
  });

  it("malformed options and payload marker are format errors", () => {
    assert.throws(() => decodeOptions(Buffer.from([0xf1, 0]), 0), CoapFormatError); // delta nibble 15
    assert.throws(() => decodeOptions(Buffer.from([0x1f, 0]), 0), CoapFormatError); // length nibble 15
    assert.throws(() => decodeOptions(Buffer.from([0x15, 1]), 0), CoapFormatError); // value past end
    assert.throws(() => decodeOptions(Buffer.from([0xd0]), 0), CoapFormatError); // missing extension
    assert.throws(() => decodeOptions(Buffer.from([0xff]), 0), CoapFormatError); // marker, no payload
    assert.throws(() => decodeMessage(Buffer.from([0x09, 0x01])), /token length 9/);
  });

  it("parser: messages split at every byte and coalesced in one chunk", () => {
    const a = encodeMessage(msg(20));
    const b = encodeMessage(msg(300));
    const c = encodeMessage({
      code: Code.CSM,
      token: Buffer.alloc(0),
      options: [],
      payload: Buffer.alloc(0),
    });
    const all = Buffer.concat([a, b, c]);
    const p1 = new FrameParser(100000);
    const got: CoapMessage[] = [];
    for (let i = 0; i < all.length; i++) {
      const r = p1.push(all.subarray(i, i + 1));
      assert.equal(r.error, undefined);
      got.push(...r.messages);
    }
    assert.equal(got.length, 3);
    assert.equal(got[1].payload.length, 300);
    assert.equal(got[2].code, Code.CSM);
    const p2 = new FrameParser(100000);
    const r = p2.push(all);
    assert.equal(r.messages.length, 3);
    assert.equal(p2.pending, 0);
  });

  it("parser refuses an oversized length before buffering the body", () => {
    const p = new FrameParser(1152);
    // Len nibble 15 with a 4-byte extension announcing ~4 GB: only 6 bytes arrive.
    const r = p.push(Buffer.from([0xf0, 0xff, 0xff, 0xff, 0xff, 0x45]));
    assert.ok(r.error instanceof CoapFormatError);
    assert.equal(r.error.tooLarge, true);
    assert.match(r.error.message, /exceeds Max-Message-Size 1152/);
    const ok = new FrameParser(1152);
    const big = encodeMessage(msg(1200));
    const r2 = ok.push(big.subarray(0, 4));
    assert.equal(r2.error?.tooLarge, true, "refused from the header alone");
  });

  it("a good message before a bad one is still delivered", () => {
    const p = new FrameParser(1000);
    const r = p.push(Buffer.concat([encodeMessage(msg(1)), Buffer.from([0x1c, 0x45])]));
    assert.equal(r.messages.length, 1);
    assert.ok(r.error);
    assert.deepEqual(p.push(encodeMessage(msg(1))).messages, [], "a failed stream stays failed");
  });

  it("block options and slicing (RFC 7959 §2.2)", () => {
    assert.equal(szxFor(1024), 6);
    assert.equal(szxFor(16), 0);
    assert.throws(() => szxFor(1000));
    assert.throws(() => szxFor(2048));
    for (const b of [
      { num: 0, more: false, szx: 0 },
      { num: 0, more: true, szx: 6 },
      { num: 15, more: true, szx: 6 },
      { num: 4095, more: false, szx: 2 },
      { num: 0xfffff, more: true, szx: 6 },
    ]) {
      assert.deepEqual(decodeBlock(encodeBlock(b)), b);
    }
    assert.equal(encodeBlock({ num: 0, more: false, szx: 0 }).length, 0);
    const body = Buffer.alloc(2500, 1);
    assert.deepEqual(
      [0, 1, 2].map((n) => sliceBlock(body, n, 6)?.chunk.length),
      [1024, 1024, 452],
    );
    assert.equal(sliceBlock(body, 2, 6)?.more, false);
    assert.equal(sliceBlock(body, 3, 6), undefined);
  });

  it("codes and URIs", () => {
    assert.equal(codeToString(Code.CONTINUE), "2.31");
    assert.equal(codeToString(Code.CSM), "7.01");
    assert.equal(parseCode("4.13"), Code.REQUEST_ENTITY_TOO_LARGE);
    assert.equal(parseCode("2.5"), undefined);
    assert.equal(parseCode("2.32"), undefined);
    assert.deepEqual(parseCoapUri("coap+tcp://127.0.0.1"), { secure: false, host: "127.0.0.1", port: 5683 });
    assert.deepEqual(parseCoapUri("coaps+tcp://dps.example.com"), {
      secure: true,
      host: "dps.example.com",
      port: 5684,
    });
    assert.deepEqual(parseCoapUri("coaps+tcp://[::1]:15684/x"), { secure: true, host: "::1", port: 15684 });
    assert.throws(() => parseCoapUri("coap://127.0.0.1"), /coap\+tcp/);
    assert.throws(() => parseCoapUri("nonsense"), /not a valid URI/);
  });
});
