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
import { getEntries } from "../../lib/stores/primitives";

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

    it("createIfAbsent: of parallel creators exactly one writes, every one gets the winner", async () => {
      const b = await under.make();
      const results = await Promise.all(
        Array.from({ length: 12 }, (_, i) =>
          b.createIfAbsent("contract/once", value(i), { kind: "ACCESS_TOKEN" }),
        ),
      );
      const winners = results.filter((r) => r.created);
      assert.equal(winners.length, 1);
      for (const r of results) assert.deepEqual(r.entry.value, winners[0].entry.value);
      assert.deepEqual((await b.get("contract/once"))?.value, winners[0].entry.value);
      assert.equal((await b.get("contract/once"))?.meta.kind, "ACCESS_TOKEN");
      // Present, even when expired: nothing is replaced.
      const again = await b.createIfAbsent("contract/once", value(99));
      assert.equal(again.created, false);
      assert.deepEqual(again.entry.value, winners[0].entry.value);
      await assert.rejects(b.createIfAbsent("tab\there", value(1)), coded("INVALID_KEY"));
      await assert.rejects(
        b.createIfAbsent("contract/x", undefined as unknown as JsonValue),
        coded("INVALID_VALUE"),
      );
      await b.close();
    });

    if (single) {
      it("updateMany, claimOnce and count are refused as UNSUPPORTED (one token only)", async () => {
        const b = await under.make();
        await assert.rejects(
          b.updateMany(["a", "b"], () => undefined),
          coded("UNSUPPORTED"),
        );
        await assert.rejects(b.claimOnce("contract/req-1", 60000), coded("UNSUPPORTED"));
        await assert.rejects(b.count("contract/fail", 60000), coded("UNSUPPORTED"));
        await b.close();
      });
    } else {
      const num = (e: { value: JsonValue } | undefined) => (e ? Number((e.value as { n: number }).n) : 0);
      const next = (e: { value: JsonValue } | undefined) => ({ value: { n: num(e) + 1 } });

      it("updateMany: parallel changes of two keys, with update() of one, lose nothing", async () => {
        const b = await under.make();
        const N = 20;
        await Promise.all([
          ...Array.from({ length: N }, () =>
            b.updateMany(["contract/m/b", "contract/m/a"], (cur) => {
              assert.deepEqual([...cur.keys()], ["contract/m/a", "contract/m/b"]);
              return new Map([
                ["contract/m/a", next(cur.get("contract/m/a"))],
                ["contract/m/b", next(cur.get("contract/m/b"))],
              ]);
            }),
          ),
          ...Array.from({ length: N }, () => b.update("contract/m/a", (cur) => next(cur))),
        ]);
        assert.equal(num(await b.get("contract/m/a")), 2 * N);
        assert.equal(num(await b.get("contract/m/b")), N);
        await b.close();
      });

      it("updateMany: two uniques taken together, by exactly one of parallel claimants", async () => {
        const b = await under.make();
        // Claimants of one external id, each with its own thing id, and one claimant of a
        // thing id already taken: each unique ends with exactly one owner.
        const claim = (ext: string, thing: string, owner: string) =>
          b.updateMany([`contract/u/ext/${ext}`, `contract/u/thing/${thing}`], (cur) =>
            [...cur.values()].some((e) => e !== undefined)
              ? undefined
              : new Map([
                  [`contract/u/ext/${ext}`, { value: { owner } }],
                  [`contract/u/thing/${thing}`, { value: { owner } }],
                ]),
          );
        const results = await Promise.all(
          Array.from({ length: 10 }, (_, i) => claim("e1", `t${i}`, `o${i}`)),
        );
        const won = results.flatMap((r, i) => (r ? [i] : []));
        assert.equal(won.length, 1);
        const after = results[won[0]] as Map<string, { value: JsonValue } | undefined>;
        assert.deepEqual(after.get("contract/u/ext/e1")?.value, { owner: `o${won[0]}` });
        assert.equal(await claim("e2", `t${won[0]}`, "late"), undefined, "the thing id is taken");
        assert.equal(await b.get("contract/u/ext/e2"), undefined, "nothing of a refused claim is written");
        const keys = (await b.list("contract/u/")).map((e) => e.key);
        assert.deepEqual(keys, ["contract/u/ext/e1", `contract/u/thing/t${won[0]}`]);
        await b.close();
      });

      it("updateMany: null deletes, undefined changes nothing, only its own keys may change", async () => {
        const b = await under.make();
        await b.set("contract/d/a", { n: 1 });
        await b.set("contract/d/b", { n: 2 });
        assert.equal(await b.updateMany(["contract/d/a"], () => undefined), undefined);
        const after = await b.updateMany(["contract/d/a", "contract/d/b", "contract/d/c"], (cur) => {
          assert.equal(cur.get("contract/d/c"), undefined);
          assert.equal(cur.size, 3);
          return new Map([
            ["contract/d/a", null],
            ["contract/d/c", { value: { n: 3 }, meta: { kind: "x" } }],
          ]);
        });
        assert.equal(after?.get("contract/d/a"), undefined);
        assert.equal(num(after?.get("contract/d/b")), 2);
        assert.equal(after?.get("contract/d/c")?.meta.kind, "x");
        assert.deepEqual(
          (await b.list("contract/d/")).map((e) => e.key),
          ["contract/d/b", "contract/d/c"],
        );
        await assert.rejects(
          b.updateMany(["contract/d/b"], () => new Map([["contract/d/other", { value: 1 }]])),
          coded("INVALID_KEY"),
        );
        await assert.rejects(
          b.updateMany(
            ["contract/d/b", "contract/d/e"],
            () =>
              new Map([
                ["contract/d/e", { value: { n: 5 } }],
                ["contract/d/b", { value: undefined as unknown as JsonValue }],
              ]),
          ),
          coded("INVALID_VALUE"),
        );
        assert.equal(await b.get("contract/d/e"), undefined, "a refused answer writes nothing");
        await assert.rejects(
          b.updateMany([], () => undefined),
          coded("INVALID_KEY"),
        );
        await assert.rejects(
          b.updateMany(["ok", "tab\there"], () => undefined),
          coded("INVALID_KEY"),
        );
        await b.close();
      });

      it("claimOnce: one of parallel claimants takes a key; a run-out claim can be taken again", async () => {
        const b = await under.make();
        const got = await Promise.all(
          Array.from({ length: 12 }, () => b.claimOnce("contract/c/req-1", 60000)),
        );
        assert.equal(got.filter((g) => g).length, 1);
        assert.equal(await b.claimOnce("contract/c/req-1", 60000), false);
        const e = await b.get("contract/c/req-1");
        assert.equal(e?.meta.kind, "store-claim");
        assert.equal(e?.expired, false);
        // A claim whose time ran out (written as one, expired): taken again, once.
        await b.set(
          "contract/c/req-2",
          { claimedAt: "2001-01-01T00:00:00.000Z" },
          {
            kind: "store-claim",
            expiresAt: "2001-01-01T00:01:00.000Z",
          },
        );
        const again = await Promise.all(
          Array.from({ length: 6 }, () => b.claimOnce("contract/c/req-2", 60000)),
        );
        assert.equal(again.filter((g) => g).length, 1);
        for (const bad of [0, -1, 1.5, Number.NaN, "60" as unknown as number])
          await assert.rejects(b.claimOnce("contract/c/req-3", bad), coded("INVALID_VALUE"));
        assert.equal(await b.get("contract/c/req-3"), undefined);
        await b.close();
      });

      it("getEntries (getMany where the backend has it): what get() reads, key by key", async function () {
        if (under.singleEntry) this.skip();
        const b = await under.make();
        await b.set("contract/m/a", { v: 1 }, { kind: "k" });
        await b.set("contract/m/c", { v: 3 });
        await b.claimOnce("contract/m/lock", 60000);
        const keys = ["contract/m/c", "contract/m/a", "contract/m/absent", "contract/m/lock", "contract/m/a"];
        const got = await getEntries(b, keys);
        assert.deepEqual([...got.keys()].sort(), [
          "contract/m/a",
          "contract/m/absent",
          "contract/m/c",
          "contract/m/lock",
        ]);
        for (const k of got.keys()) assert.deepEqual(got.get(k), await b.get(k), k);
        assert.equal(got.get("contract/m/absent"), undefined);
        await assert.rejects(getEntries(b, []), coded("INVALID_KEY"));
        await assert.rejects(getEntries(b, ["tab\there"]), coded("INVALID_KEY"));
        await b.close();
      });

      it("count: parallel hits are each counted once; a run-out window starts again at 1", async () => {
        const b = await under.make();
        const counts = await Promise.all(
          Array.from({ length: 15 }, () => b.count("contract/f/addr", 3600000)),
        );
        assert.deepEqual(
          [...counts].sort((x, y) => x - y),
          Array.from({ length: 15 }, (_, i) => i + 1),
        );
        assert.equal(await b.count("contract/f/addr", 3600000), 16);
        assert.equal((await b.get("contract/f/addr"))?.meta.kind, "store-count");
        await b.set(
          "contract/f/old",
          { n: 50, since: "2001-01-01T00:00:00.000Z" },
          {
            kind: "store-count",
            expiresAt: "2001-01-01T01:00:00.000Z",
          },
        );
        assert.equal(await b.count("contract/f/old", 3600000), 1);
        assert.equal(await b.count("contract/f/old", 3600000), 2);
        await assert.rejects(b.count("contract/f/x", 0), coded("INVALID_VALUE"));
        await b.close();
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
