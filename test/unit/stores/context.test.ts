import { after, before, describe, it } from "mocha";
import assert from "node:assert/strict";
import { ContextBackend, contextName, type ContextApi } from "../../../lib/stores/context";
import type { JsonValue } from "../../../lib/stores/backend";
import {
  realGlobalContext,
  startStoreServer,
  stopStoreServer,
  storeHelper,
} from "../../support/store-helper";

describe("unit/stores/context", () => {
  let ctx: ContextApi;
  before(async () => {
    await startStoreServer();
    ctx = await realGlobalContext();
  });
  after(async () => {
    await storeHelper.unload();
    await stopStoreServer();
  });

  function code(c: string) {
    return (err: unknown) => {
      assert.equal((err as { code?: string }).code, c, String(err));
      return true;
    };
  }

  const cb = <T>(f: (done: (err?: Error | null, v?: T) => void) => void) =>
    new Promise<T | undefined>((resolve, reject) => f((err, v) => (err ? reject(err) : resolve(v))));

  it("round trip in the real global context (memory store), prefixed, list only ours, no values", async () => {
    const s = new ContextBackend({ context: ctx, prefix: "t1_" });
    await cb<void>((d) => ctx.set("someone_else", { x: 1 }, undefined, d));
    const value = { token: "secret-ctx-token", nested: [1, { a: "b" }] };
    await s.set("tb/dev.1[0] x", value, { protocol: "thingsboard", expiresAt: "2001-01-01T00:00:00Z" });
    await s.set("plain", "a string");
    const e = await s.get("tb/dev.1[0] x");
    assert.deepEqual(e?.value, value);
    assert.equal(e?.expired, true);
    assert.equal(e?.meta.protocol, "thingsboard");
    // The dot and brackets were encoded: one variable, not a property path.
    const keys = (await cb<string[]>((d) => ctx.keys(undefined, d))) ?? [];
    assert.ok(keys.includes(contextName("t1_", "tb/dev.1[0] x")), keys.join());
    assert.ok(!keys.includes("t1_tb/dev"));
    const list = await s.list();
    assert.deepEqual(
      list.map((x) => [x.key, x.expired]),
      [
        ["plain", false],
        ["tb/dev.1[0] x", true],
      ],
    );
    assert.equal(JSON.stringify(list).includes("secret-ctx-token"), false);
    // A second store with another prefix sees none of it.
    assert.deepEqual(await new ContextBackend({ context: ctx, prefix: "t2_" }).list(), []);
    // Changing what get() returned does not change the stored value.
    (e?.value as { token: string }).token = "changed";
    assert.equal(((await s.get("tb/dev.1[0] x"))?.value as { token: string }).token, "secret-ctx-token");
    assert.equal(await s.delete("plain"), true);
    assert.equal(await s.delete("plain"), false);
    assert.equal(await s.get("plain"), undefined);
    await s.close();
  });

  it("simultaneous writes and updates on one key are serialised", async () => {
    const s = new ContextBackend({ context: ctx, prefix: "t3_" });
    const written = Array.from({ length: 25 }, (_, i) => ({ i }));
    await Promise.all(written.map((v) => s.set("k", v)));
    assert.deepEqual((await s.get("k"))?.value, { i: 24 });
    await Promise.all(
      Array.from({ length: 20 }, () =>
        s.update("n", (cur) => ({ value: ((cur?.value as number) ?? 0) + 1 })),
      ),
    );
    assert.equal((await s.get("n"))?.value, 20);
    const winners = await Promise.all(
      Array.from({ length: 5 }, (_, i) => s.update("once", (cur) => (cur ? undefined : { value: i }))),
    );
    assert.equal(winners.filter(Boolean).length, 1);
    await s.close();
  });

  it("bad input and damaged entries give coded errors and change nothing", async () => {
    const s = new ContextBackend({ context: ctx, prefix: "t4_" });
    await s.set("k", { token: "kept" });
    const cyclic: Record<string, unknown> = {};
    cyclic.me = cyclic;
    await assert.rejects(s.set("k", cyclic as unknown as JsonValue), code("INVALID_VALUE"));
    await assert.rejects(s.set("k", undefined as unknown as JsonValue), code("INVALID_VALUE"));
    await assert.rejects(s.get(""), code("INVALID_KEY"));
    await cb<void>((d) => ctx.set("t4_bad", "not a record", undefined, d));
    await assert.rejects(s.get("bad"), code("CORRUPT"));
    await assert.rejects(s.set("bad", "x"), code("CORRUPT"));
    assert.equal(await cb<unknown>((d) => ctx.get("t4_bad", undefined, d)), "not a record");
    assert.deepEqual((await s.get("k"))?.value, { token: "kept" });
    assert.throws(() => new ContextBackend({ context: ctx, prefix: "a.b" }), code("INVALID_KEY"));
    const broken: ContextApi = {
      get: (_k, _s, done) => done(new Error("store down")),
      set: (_k, _v, _s, done) => done(new Error("store down")),
      keys: (_s, done) => done(new Error("store down")),
    };
    const b = new ContextBackend({ context: broken });
    await assert.rejects(b.open(), code("IO"));
    await assert.rejects(b.set("k", "v"), code("IO"));
    await s.close();
  });
});
