import { describe, it } from "mocha";
import assert from "node:assert/strict";
import { parseRequest, parseResponse } from "../../../lib/dialects/thingsboard/wire";
import { parseAnswer, parseContent } from "../../../lib/dialects/mainflux/wire";

describe("unit/util/bounded-dialect-json", () => {
  const deep = (n: number) => "[".repeat(n) + "]".repeat(n);

  it("ThingsBoard: a request with 20,000 levels of nesting is invalid before it is parsed", () => {
    const body = `{"provisionDeviceKey":"k","provisionDeviceSecret":"s","deviceName":"d","x":${deep(20000)}}`;
    const r = parseRequest(body);
    assert.equal(r.ok, false);
    assert.match(!r.ok ? r.error : "", /nested deeper than 32 levels/);
    assert.equal(parseRequest('{"provisionDeviceKey":"k","provisionDeviceSecret":"s"}').ok, true);
    assert.deepEqual(parseRequest("{nope"), { ok: false, error: "request is not JSON" });
  });

  it("ThingsBoard: a device refuses a deep answer as INVALID, and reads a normal one", () => {
    assert.equal(parseResponse(`{"status":"SUCCESS","x":${deep(5000)}}`).status, "INVALID");
    const ok = parseResponse('{"status":"SUCCESS","credentialsType":"ACCESS_TOKEN","credentialsValue":"t"}');
    assert.equal(ok.status, "SUCCESS");
  });

  it("Mainflux: a deep bootstrap answer is a clear INVALID_ANSWER; deep content stays a string", () => {
    assert.throws(
      () => parseAnswer(`{"thing_id":"t","thing_key":"k","channels":[],"x":${deep(20000)}}`),
      /the bootstrap answer: JSON nested deeper than 64 levels/,
    );
    const content = `{"a":${deep(1000)}}`;
    assert.equal(parseContent(content), content, "kept as the text it came as");
    assert.deepEqual(parseContent('{"report_every_s":30}'), { report_every_s: 30 });
  });
});
