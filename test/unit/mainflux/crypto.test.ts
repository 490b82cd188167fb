import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { describe, it } from "mocha";
import {
  cfbAuthorization,
  cfbDecrypt,
  cfbEncrypt,
  cfbExternalKey,
  cfbKey,
  gcmAuthorization,
  gcmKey,
  gcmOpenRequest,
  gcmOpenResponse,
  gcmParts,
  gcmSealResponse,
  GCM_SCHEME,
  KeyError,
  ReplayGuard,
} from "../../../lib/dialects/mainflux/crypto";
import { opensslCfb, pythonCfb } from "../../support/mainflux-peers";

const KEYS = {
  16: Buffer.from("0123456789abcdef"),
  24: Buffer.from("0123456789abcdef01234567"),
  // The default key in Mainflux's bootstrap code.
  32: Buffer.from("12345678910111213141516171819202"),
};
const LENGTHS = [1, 15, 16, 17, 100, 1000];

describe("mainflux secure mode: AES-CFB against independent implementations", () => {
  it("Python cryptography decrypts what we encrypt, all key lengths and sizes", async () => {
    const cases = Object.values(KEYS).flatMap((key) =>
      LENGTHS.map((n) => ({ key, plain: randomBytes(n), iv: randomBytes(16) })),
    );
    const ours = cases.map((c) => cfbEncrypt(c.key, c.plain, c.iv));
    const theirs = await pythonCfb(ours.map((data, i) => ({ op: "decrypt", key: cases[i].key, data })));
    theirs.forEach((p, i) => assert.deepEqual(p, cases[i].plain, `case ${i}`));
  });

  it("we decrypt what Python cryptography encrypts, all key lengths and sizes", async () => {
    const cases = Object.values(KEYS).flatMap((key) =>
      LENGTHS.map((n) => ({ key, plain: randomBytes(n), iv: randomBytes(16) })),
    );
    const theirs = await pythonCfb(
      cases.map((c) => ({ op: "encrypt", key: c.key, data: c.plain, iv: c.iv })),
    );
    theirs.forEach((ct, i) => {
      assert.deepEqual(ct.subarray(0, 16), cases[i].iv);
      assert.deepEqual(cfbDecrypt(cases[i].key, ct), cases[i].plain, `case ${i}`);
      // Same IV, same key: byte-identical with ours.
      assert.deepEqual(cfbEncrypt(cases[i].key, cases[i].plain, cases[i].iv), ct);
    });
  });

  for (const [bits, key] of Object.entries(KEYS)) {
    it(`openssl enc -aes-${Number(bits) * 8}-cfb, both directions`, async () => {
      const iv = randomBytes(16);
      const plain = Buffer.from('{"thing_id":"t","thing_key":"k","channels":[],"content":"x".repeat}');
      const ours = cfbEncrypt(key, plain, iv);
      assert.deepEqual(await opensslCfb("decrypt", key, iv, ours.subarray(16)), plain);
      const theirs = await opensslCfb("encrypt", key, iv, plain);
      assert.deepEqual(cfbDecrypt(key, Buffer.concat([iv, theirs])), plain);
    });
  }

  it("the Authorization header is Thing + hex(IV || CFB(external key)), readable by Python", async () => {
    const h = cfbAuthorization(KEYS[32], "my-external-key");
    assert.match(h, /^Thing [0-9a-f]+$/);
    const [plain] = await pythonCfb([{ op: "decrypt", key: KEYS[32], data: Buffer.from(h.slice(6), "hex") }]);
    assert.equal(plain.toString(), "my-external-key");
    assert.equal(cfbExternalKey(KEYS[32], h.slice(6)), "my-external-key");
  });
});

describe("mainflux secure mode: keys and bad input", () => {
  it("takes the raw bytes of 16, 24 and 32 byte strings", () => {
    for (const k of Object.values(KEYS)) assert.deepEqual(cfbKey(k.toString()), k);
  });

  it("refuses the 50-byte key of the upstream docker setup with a clear message", () => {
    const key = "x".repeat(50);
    assert.throws(
      () => cfbKey(key),
      (e: Error) => e instanceof KeyError && /16, 24 or 32 bytes.*50 bytes/.test(e.message),
    );
    assert.throws(() => cfbKey(""), KeyError);
    // 16 characters but 17 bytes of UTF-8: it is bytes that count.
    assert.throws(() => cfbKey("é" + "a".repeat(15)), KeyError);
  });

  it("refuses a ciphertext shorter than the IV, and non-hex or odd-length headers", () => {
    assert.throws(() => cfbDecrypt(KEYS[16], Buffer.alloc(15)), /shorter than the 16-byte IV/);
    assert.throws(() => cfbExternalKey(KEYS[16], "zz"), /not hexadecimal/);
    assert.throws(() => cfbExternalKey(KEYS[16], "abc"), /not hexadecimal/);
    assert.throws(() => cfbExternalKey(KEYS[16], "00".repeat(8)), /shorter/);
    // Exactly an IV: an empty key, which no configuration has.
    assert.equal(cfbExternalKey(KEYS[16], "00".repeat(16)), "");
  });
});

describe("mainflux GCM mode", () => {
  const key = gcmKey("ab".repeat(32));

  it("accepts 64 hex characters or 32 raw bytes, refuses anything else", () => {
    assert.equal(key.length, 32);
    assert.equal(gcmKey("k".repeat(32)).length, 32);
    assert.throws(() => gcmKey("k".repeat(31)), /32 bytes/);
    assert.throws(() => gcmKey("ab".repeat(20)), /32 bytes/);
  });

  it("a request opens under its key id and external id only", () => {
    const now = Date.UTC(2026, 0, 1);
    const { header, requestId } = gcmAuthorization(key, "k1", "dev-1", "secret", now);
    assert.ok(header.startsWith(GCM_SCHEME));
    const { keyId, token } = gcmParts(header.slice(GCM_SCHEME.length));
    assert.equal(keyId, "k1");
    const r = gcmOpenRequest(key, "k1", "dev-1", token);
    assert.deepEqual(r, { externalId: "dev-1", externalKey: "secret", requestId, issuedAt: now / 1000 });
    assert.throws(() => gcmOpenRequest(key, "k1", "dev-2", token), KeyError);
    assert.throws(() => gcmOpenRequest(key, "k2", "dev-1", token), KeyError);
    assert.throws(() => gcmOpenRequest(gcmKey("cd".repeat(32)), "k1", "dev-1", token), KeyError);
    const bytes = Buffer.from(token, "base64url");
    bytes[20] ^= 1;
    assert.throws(() => gcmOpenRequest(key, "k1", "dev-1", bytes.toString("base64url")), KeyError);
    assert.throws(() => gcmOpenRequest(key, "k1", "dev-1", "AAAA"), KeyError);
    assert.throws(() => gcmParts("no-dot"), KeyError);
  });

  it("a response is bound to the request id it answers", () => {
    const sealed = gcmSealResponse(key, "k1", "dev-1", "a".repeat(32), Buffer.from("{}"));
    assert.equal(gcmOpenResponse(key, "k1", "dev-1", "a".repeat(32), sealed).toString(), "{}");
    assert.throws(() => gcmOpenResponse(key, "k1", "dev-1", "b".repeat(32), sealed), KeyError);
  });

  it("the replay guard refuses an id until it expires, and stays bounded", () => {
    const g = new ReplayGuard(3);
    assert.equal(g.consume("a", 1000, 0), true);
    assert.equal(g.consume("a", 1000, 10), false);
    assert.equal(g.consume("a", 3000, 1000), true);
    g.consume("b", 5000, 1000);
    g.consume("c", 5000, 1000);
    g.consume("d", 5000, 1000);
    assert.ok(g.size <= 3);
  });
});
