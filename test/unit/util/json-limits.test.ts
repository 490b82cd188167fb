import { describe, it } from "mocha";
import assert from "node:assert/strict";
import { jsonDepthExceeds, parseJsonBounded } from "../../../lib/util/json-limits";

describe("unit/util/json-limits", () => {
  it("a provisioning body parses", () => {
    const r = parseJsonBounded('{"a":{"b":[1,2,{"c":"d"}]}}', { maxBytes: 1024 });
    assert.deepEqual(r, { ok: true, value: { a: { b: [1, 2, { c: "d" }] } } });
  });

  it("20,000 levels of nesting are refused before JSON.parse, and the error quotes no bytes", () => {
    const deep = "[".repeat(20000) + "]".repeat(20000);
    const r = parseJsonBounded(deep, { maxBytes: 1 << 20 });
    assert.equal(r.ok, false);
    assert.match(!r.ok ? r.error : "", /nested deeper than 32 levels/);
    const objects = '{"k":'.repeat(100) + "1" + "}".repeat(100);
    assert.equal(parseJsonBounded(objects, { maxBytes: 1 << 20, maxDepth: 99 }).ok, false);
    assert.equal(parseJsonBounded(objects, { maxBytes: 1 << 20, maxDepth: 100 }).ok, true);
  });

  it("brackets inside strings, escaped quotes included, do not count as nesting", () => {
    const text = JSON.stringify({ s: '[[[[[[\\"[[[[{{{{', t: ['"]]]]'] });
    assert.equal(jsonDepthExceeds(text, 2), false);
    assert.equal(jsonDepthExceeds(text, 1), true);
  });

  it("size is checked in bytes, not characters", () => {
    const body = JSON.stringify({ n: "é".repeat(600) });
    assert.equal(parseJsonBounded(body, { maxBytes: 1000 }).ok, false);
    assert.equal(parseJsonBounded(Buffer.from(body), { maxBytes: 1300 }).ok, true);
  });

  it("malformed JSON is an error that names the problem, not the content", () => {
    const r = parseJsonBounded('{"provisionDeviceKey":"secret-key-value"', { maxBytes: 1024 });
    assert.deepEqual(r, { ok: false, error: "body is not JSON" });
  });
});
