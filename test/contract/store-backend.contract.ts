/**
 * The StoreBackend contract (lib/stores/backend.ts), written once and run over every
 * backend (test/contract/store-backends.test.ts registers them), as MQTT.js runs one
 * abstract client suite against every transport (mqttjs/MQTT.js, test/abstractClient.ts).
 * What only one backend does (crash safety, fsync, encryption at rest, the token file's
 * format) stays in that backend's own tests under test/unit/stores/.
 */
import { describe, it } from "mocha";
import assert from "node:assert/strict";
import { StoreError, type JsonValue, type StoreBackend } from "../../lib/stores/backend";

export interface BackendUnderTest {
  name: string;
  /** A fresh, empty backend. */
  make(): Promise<StoreBackend>;
  /** A second backend over what `b` keeps (after `b` is closed), when the backend persists. */
  reopen?(b: StoreBackend): Promise<StoreBackend>;
  /**
   * The token file holds one value under any key, and values of the form { token }: the
   * contract's keys then name that one entry.
   */
  singleEntry?: boolean;
}

function coded(code: StoreError["code"]) {
  return (err: unknown) => {
    assert.ok(err instanceof StoreError, String(err));
    assert.equal(err.code, code, String(err));
    return true;
  };
}

export function storeBackendContract(under: BackendUnderTest): void {
  const single = under.singleEntry === true;
  /** A value every backend can keep; the token file keeps only { token }. */
  const value = (i: number): JsonValue =>
    single
      ? { token: `token-value-${i}` }
      : { token: `token-value-${i}`, n: i, nested: { list: [1, "two", null] } };

  describe(`StoreBackend contract: ${under.name}`, () => {
    it("get, set, delete: a value comes back as it was stored, with its metadata", async () => {
      const b = await under.make();
      assert.equal(await b.get("contract/a"), undefined);
      const stored = await b.set("contract/a", value(1), {
        obtainedAt: "2026-01-02T03:04:05.000Z",
        protocol: "thingsboard",
        endpoint: "mqtts://tb.example:8883",
        kind: "ACCESS_TOKEN",
      });
      assert.deepEqual(stored.value, value(1));
      const got = await b.get("contract/a");
      assert.deepEqual(got?.value, value(1));
      assert.equal(got?.key, "contract/a");
      assert.equal(got?.meta.obtainedAt, "2026-01-02T03:04:05.000Z");
      assert.equal(got?.meta.protocol, "thingsboard");
      assert.equal(got?.meta.kind, "ACCESS_TOKEN");
      assert.ok(!Number.isNaN(Date.parse(got?.meta.updatedAt ?? "")));
      assert.equal(got?.expired, false);
      // A copy: changing what was handed out changes nothing stored.
      (got?.value as { token: string }).token = "changed-by-caller";
      assert.deepEqual((await b.get("contract/a"))?.value, value(1));
      await b.set("contract/a", value(2));
      assert.deepEqual((await b.get("contract/a"))?.value, value(2));
      assert.equal(await b.delete("contract/a"), true);
      assert.equal(await b.delete("contract/a"), false);
      assert.equal(await b.get("contract/a"), undefined);
      await b.close();
    });

    it("list gives keys and metadata, never a value", async () => {
      const b = await under.make();
      assert.deepEqual(await b.list(), []);
      await b.set("contract/one", value(1), { kind: "ACCESS_TOKEN" });
      if (!single) await b.set("contract/two", value(2));
      const listed = await b.list();
      assert.equal(listed.length, single ? 1 : 2);
      for (const e of listed) {
        assert.deepEqual(Object.keys(e).sort(), ["expired", "key", "meta"]);
        assert.doesNotMatch(JSON.stringify(e), /token-value/);
      }
      if (!single) assert.deepEqual(listed.map((e) => e.key).sort(), ["contract/one", "contract/two"]);
      await b.close();
    });

    it("update is a read-modify-write: N parallel increments give N", async () => {
      const b = await under.make();
      const N = 25;
      const count = (v: JsonValue | undefined) =>
        v ? Number(/(\d+)$/.exec((v as { token: string }).token)?.[1] ?? 0) : 0;
      await Promise.all(
        Array.from({ length: N }, () =>
          b.update("contract/counter", (cur) => ({ value: { token: `count-${count(cur?.value) + 1}` } })),
        ),
      );
      assert.equal(count((await b.get("contract/counter"))?.value), N);
      // Returning undefined leaves the entry as it is: "create unless present".
      const created = await Promise.all(
        Array.from({ length: 8 }, (_, i) =>
          b.update("contract/counter", (cur) => (cur ? undefined : { value: { token: `late-${i}` } })),
        ),
      );
      assert.deepEqual(created, Array(8).fill(undefined));
      assert.equal(count((await b.get("contract/counter"))?.value), N);
      await b.close();
    });

    it("parallel writes to one key leave one whole written value", async () => {
      const b = await under.make();
      await Promise.all(Array.from({ length: 10 }, (_, i) => b.set("contract/race", value(i))));
      const got = (await b.get("contract/race"))?.value;
      assert.ok(
        Array.from({ length: 10 }, (_, i) => JSON.stringify(value(i))).includes(JSON.stringify(got)),
        JSON.stringify(got),
      );
      await b.close();
    });

    it("keys: Unicode is kept, lone surrogates, control characters and empty keys are refused", async () => {
      const b = await under.make();
      // UTF-8 encoding maps a lone surrogate to U+FFFD (WHATWG Encoding, "UTF-8 encode"), so
      // "\ud800-x" would share a file name or context variable with "\ufffd-x".
      for (const key of ["\ud800-x", "\udc00-x", "tb/fleet/a\ud800", "\udfff"]) {
        await assert.rejects(b.set(key, value(1)), (err: unknown) => {
          coded("INVALID_KEY")(err);
          assert.match((err as Error).message, /well-formed Unicode|lone surrogate/);
          return true;
        });
      }
      for (const key of ["", "a\ud800", "\udc00-x", "tab\there", "x".repeat(257)]) {
        await assert.rejects(b.set(key, value(1)), coded("INVALID_KEY"));
        await assert.rejects(b.get(key), coded("INVALID_KEY"));
        await assert.rejects(
          b.update(key, () => ({ value: value(1) })),
          coded("INVALID_KEY"),
        );
        await assert.rejects(b.delete(key), coded("INVALID_KEY"));
      }
      const keys = single ? ["gerät/😀"] : ["gerät/😀", "\ufffd-x", "dev.1[0] x", "y".repeat(256)];
      for (const [i, key] of keys.entries()) await b.set(key, value(i));
      for (const [i, key] of keys.entries()) assert.deepEqual((await b.get(key))?.value, value(i));
      if (!single) assert.deepEqual((await b.list()).map((e) => e.key).sort(), [...keys].sort());
      await b.close();
    });

    it("values that cannot be stored are refused, and nothing is written", async () => {
      const b = await under.make();
      const cyclic: Record<string, unknown> = {};
      cyclic.self = cyclic;
      for (const bad of [undefined, cyclic, () => 1]) {
        await assert.rejects(b.set("contract/bad", bad as unknown as JsonValue), coded("INVALID_VALUE"));
      }
      await assert.rejects(
        b.set("contract/bad", value(1), { expiresAt: "not a date" }),
        coded("INVALID_VALUE"),
      );
      assert.equal(await b.get("contract/bad"), undefined);
      await b.close();
    });

    it("expiry: an entry past its expiresAt is returned and flagged, in get and list", async () => {
      const b = await under.make();
      await b.set("contract/old", value(1), { expiresAt: "2001-01-01T00:00:00Z" });
      const got = await b.get("contract/old");
      assert.equal(got?.expired, true);
      assert.equal(got?.meta.expiresAt, "2001-01-01T00:00:00.000Z");
      assert.deepEqual(
        (await b.list()).map((e) => e.expired),
        [true],
      );
      await b.set("contract/old", value(1), { expiresAt: "2999-01-01T00:00:00Z" });
      assert.equal((await b.get("contract/old"))?.expired, false);
      await b.close();
    });

    if (under.reopen) {
      const reopen = under.reopen;
      it("what was stored is there, metadata and all, after closing and opening again", async () => {
        const b = await under.make();
        await b.set("contract/kept", value(7), {
          obtainedAt: "2026-03-04T05:06:07.000Z",
          kind: "ACCESS_TOKEN",
        });
        await b.close();
        const again = await reopen(b);
        const got = await again.get("contract/kept");
        assert.deepEqual(got?.value, value(7));
        assert.equal(got?.meta.obtainedAt, "2026-03-04T05:06:07.000Z");
        assert.deepEqual(
          (await again.list()).map((e) => e.meta.obtainedAt),
          ["2026-03-04T05:06:07.000Z"],
        );
        await again.close();
      });
    }

    it("close waits for writes under way and refuses later ones", async () => {
      const b = await under.make();
      const pending = Promise.all(
        Array.from({ length: 5 }, (_, i) => b.set(`contract/w${single ? "" : i}`, value(i))),
      );
      await b.close();
      await pending;
      await assert.rejects(b.set("contract/late", value(9)), coded("IO"));
      await assert.rejects(
        b.update("contract/late", () => ({ value: value(9) })),
        coded("IO"),
      );
      await assert.rejects(b.delete("contract/late"), coded("IO"));
    });
  });
}
