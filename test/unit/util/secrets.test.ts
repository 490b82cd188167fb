import { describe, it } from "mocha";
import assert from "node:assert/strict";
import { matchesDigest, randomAlphanumeric, secretDigest, secretsEqual } from "../../../lib/util/secrets";

describe("unit/util/secrets", () => {
  it("randomAlphanumeric: the length asked for, alphanumeric only, across many refills of its pool", async () => {
    const seen = new Set<string>();
    for (let n = 0; n <= 300; n++) {
      const s = randomAlphanumeric(n % 101);
      assert.equal(s.length, n % 101);
      assert.match(s, /^[A-Za-z0-9]*$/);
      if (s.length >= 20) seen.add(s);
    }
    // 20 or more random characters do not repeat (about 2^119 values each).
    assert.equal(seen.size, [...Array(301).keys()].filter((n) => n % 101 >= 20).length);
  });

  it("randomAlphanumeric: every character about equally often (no bias from the byte it is drawn from)", async () => {
    const counts = new Map<string, number>();
    const draws = 62 * 4000;
    for (const c of randomAlphanumeric(draws)) counts.set(c, (counts.get(c) ?? 0) + 1);
    assert.equal(counts.size, 62);
    // 4000 expected each, standard deviation about 63: 15% off is more than 9 deviations.
    for (const [c, k] of counts) assert.ok(Math.abs(k - 4000) < 600, `${c}: ${k} of ${draws}`);
  });

  it("matchesDigest answers as secretsEqual does", async () => {
    const values = ["", "a", "b", "provision-secret", "provision-secreT", "ü", Buffer.from("a")];
    for (const a of values)
      for (const b of values)
        assert.equal(matchesDigest(secretDigest(a), b), secretsEqual(a, b), `${a} ${b}`);
  });
});
