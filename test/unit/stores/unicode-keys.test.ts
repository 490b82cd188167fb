import { describe, it } from "mocha";
import assert from "node:assert/strict";
import { MemoryBackend } from "../../../lib/stores/memory";
import { ConfigRegistry } from "../../../lib/dialects/mainflux/registry";
import { DeviceRegistry } from "../../../lib/service/registry";

describe("unit/stores/unicode-keys", () => {
  // What each backend does with such keys is in test/contract/store-backend.contract.ts.
  // Three names that UTF-8 encoding (Buffer.from, TextEncoder) maps to the same bytes
  // EF BF BD when the first two hold lone surrogates (WHATWG Encoding: "replacement").
  const LONE_HIGH = "\ud800-x";
  const LONE_LOW = "\udc00-x";
  const REPLACEMENT = "\ufffd-x";

  it("registry: device names and profiles with lone surrogates are refused as INVALID", async () => {
    const reg = new DeviceRegistry(new MemoryBackend(), "thingsboard");
    for (const name of [LONE_HIGH, LONE_LOW]) {
      assert.throws(
        () => reg.key("fleet", name),
        (err: Error & { code?: string }) =>
          err.code === "INVALID" && /device name.*Unicode/.test(err.message),
      );
      await assert.rejects(
        reg.add("fleet", { name }),
        (err: Error & { code?: string }) => err.code === "INVALID",
      );
    }
    assert.throws(
      () => reg.key("\ud800", "dev"),
      (err: Error & { code?: string }) => err.code === "INVALID" && /profile name/.test(err.message),
    );
    assert.equal(await reg.add("fleet", { name: REPLACEMENT }), true);
    assert.equal(await reg.add("fleet", { name: REPLACEMENT }), false);
    assert.deepEqual(
      (await reg.list()).map((d) => d.name),
      [REPLACEMENT],
    );
  });

  it("Mainflux configurations: external ids and thing ids with lone surrogates are INVALID, not a store failure", async () => {
    const reg = new ConfigRegistry(new MemoryBackend());
    await reg.load();
    for (const cfg of [
      { external_id: LONE_HIGH, external_key: "k" },
      { external_id: LONE_LOW, external_key: "k" },
      { external_id: "ok-id", external_key: "k", thing_id: LONE_LOW },
    ]) {
      await assert.rejects(
        async () => reg.add(cfg),
        (err: Error & { code?: string }) => err.code === "INVALID" && /Unicode/.test(err.message),
      );
    }
    assert.equal((await reg.add({ external_id: REPLACEMENT, external_key: "k" })).external_id, REPLACEMENT);
    assert.equal(reg.size, 1);
  });
});
