/**
 * The contract of lib/service/records.ts, written once and run over every StoreBackend
 * that holds more than one entry (test/contract/store-backends.test.ts registers them),
 * as MQTT.js runs one abstract client suite against every transport
 * (mqttjs/MQTT.js, test/abstractClient.ts).
 */
import { describe, it } from "mocha";
import assert from "node:assert/strict";
import { ProvisioningError } from "../../lib/model/errors";
import type { StoreBackend } from "../../lib/stores/backend";
import { Records } from "../../lib/service/records";

interface Device {
  name: string;
  state: string;
  count: number;
  token?: string;
}

export interface RecordsBackendUnderTest {
  name: string;
  /** A fresh, empty backend. */
  make(): Promise<StoreBackend>;
}

function devices(backend: StoreBackend, dialect = "test-dialect"): Records<Device> {
  return new Records<Device>(backend, {
    dialect,
    words: { group: "a profile name", id: "a device name" },
    metaOf: (d) => ({ kind: d.state }),
    indexes: { token: (d) => (d.token ? [d.token] : []) },
  });
}

function coded(code: string) {
  return (err: unknown) => {
    assert.ok(err instanceof ProvisioningError, String(err));
    assert.equal(err.code, code, String(err));
    return true;
  };
}

/** Counts value reads, to show what never reads a value. */
function counting(backend: StoreBackend): { backend: StoreBackend; gets: () => number } {
  let gets = 0;
  const wrapped = new Proxy(backend, {
    get(target, prop, receiver) {
      const v = Reflect.get(target, prop, receiver) as unknown;
      if (prop === "get" || prop === "update")
        return (...args: unknown[]) => {
          gets++;
          return (v as (...a: unknown[]) => unknown).apply(target, args);
        };
      return typeof v === "function" ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
  return { backend: wrapped, gets: () => gets };
}

const dev = (name: string, token?: string): Device => ({ name, state: "pre-provisioned", count: 0, token });

export function recordsContract(under: RecordsBackendUnderTest): void {
  describe(`records registry over ${under.name}`, () => {
    it("create unless present: of parallel creates of one address exactly one wins", async () => {
      const b = await under.make();
      const r = devices(b);
      const results = await Promise.all(
        Array.from({ length: 12 }, (_, i) =>
          r.create({ group: "fleet", id: "dev-1" }, { ...dev("dev-1"), count: i }),
        ),
      );
      assert.equal(results.filter(Boolean).length, 1);
      const winner = results.indexOf(true);
      assert.equal((await r.get({ group: "fleet", id: "dev-1" }))?.count, winner);
      assert.equal(
        await r.create({ group: "other", id: "dev-1" }, dev("dev-1")),
        true,
        "unique per group only",
      );
      await b.close();
    });

    it("transact is a read-modify-write: N parallel increments give N", async () => {
      const b = await under.make();
      const r = devices(b);
      const addr = { group: "fleet", id: "counter" };
      await Promise.all(
        Array.from({ length: 20 }, () =>
          r.transact(addr, (cur) => ({
            next: { ...(cur ?? dev("counter")), count: (cur?.count ?? 0) + 1 },
            result: 0,
          })),
        ),
      );
      assert.equal((await r.get(addr))?.count, 20);
      // Returning no record leaves the entry as it is, and hands the result back.
      assert.equal(await r.transact(addr, (cur) => ({ result: cur?.count })), 20);
      await b.close();
    });

    it("addresses: INVALID for what cannot be one, Unicode kept as typed", async () => {
      const b = await under.make();
      const r = devices(b);
      for (const addr of [
        { group: "", id: "d" },
        { group: "g", id: "" },
        { group: "g", id: "a\ud800" },
        { group: "\udc00", id: "d" },
        { group: "g", id: "a\nb" },
        { group: "g", id: "x".repeat(300) },
      ]) {
        assert.throws(() => r.key(addr), coded("INVALID"));
        await assert.rejects(r.create(addr, dev("x")), coded("INVALID"));
        await assert.rejects(r.get(addr), coded("INVALID"));
      }
      const addr = { group: "Flotte/Süd #1", id: "gerät/😀 ü" };
      assert.equal(await r.create(addr, dev("gerät")), true);
      assert.deepEqual(
        (await r.list()).map((s) => [s.group, s.id]),
        [["Flotte/Süd #1", "gerät/😀 ü"]],
      );
      assert.equal(r.key(addr), "test-dialect/Flotte%2FS%C3%BCd%20%231/gerät/😀 ü");
      await b.close();
    });

    it("list reads entry metadata only, and shows only this dialect's records", async () => {
      const raw = await under.make();
      const { backend, gets } = counting(raw);
      const r = devices(backend);
      await r.create({ group: "fleet", id: "a" }, dev("a", "secret-token-a"));
      await r.claim("token", ["secret-token-b"], { group: "fleet", id: "b" }, (cur) =>
        cur
          ? { result: undefined }
          : { next: { ...dev("b", "secret-token-b"), state: "provisioned" }, result: undefined },
      );
      await devices(backend, "another").create({ group: "fleet", id: "c" }, dev("c"));
      await raw.set("test-dialect-lookalike/x/y", { v: 1 });
      const before = gets();
      const listed = await r.list();
      assert.equal(gets(), before, "list() read no value");
      assert.deepEqual(
        listed.map((s) => [s.group, s.id, s.kind]),
        [
          ["fleet", "a", "pre-provisioned"],
          ["fleet", "b", "provisioned"],
        ],
      );
      assert.deepEqual(await r.list("other"), []);
      assert.equal((await r.list("fleet")).length, 2);
      // Index keys are hashed: no secret shows in any key of the store.
      for (const e of await raw.list()) assert.doesNotMatch(e.key, /secret-token/);
      await raw.close();
    });

    it("a unique index: of parallel claims of one value exactly one record holds it", async () => {
      const b = await under.make();
      // Two registries over one backend (a redeploy): claims are serialised across both.
      const regs = [devices(b), devices(b)];
      const outcomes = await Promise.all(
        Array.from({ length: 10 }, (_, i) => {
          const r = regs[i % 2];
          const addr = { group: "fleet", id: `dev-${i}` };
          return r.claim("token", ["shared-token"], addr, (cur) =>
            cur ? { result: undefined } : { next: dev(addr.id, "shared-token"), result: addr.id },
          );
        }),
      );
      const winners = outcomes.filter((o) => !o.taken);
      assert.equal(winners.length, 1);
      const holder = (winners[0] as { result: string }).result;
      for (const o of outcomes) if (o.taken) assert.deepEqual(o.holder, { group: "fleet", id: holder });
      assert.equal((await regs[1].lookup("token", "shared-token"))?.address.id, holder);
      // The losers stored nothing, and left no claim behind.
      assert.deepEqual(
        (await regs[0].list()).map((s) => s.id),
        [holder],
      );
      await b.close();
    });

    it("a claim whose owner does not hold the value (a crash between claim and commit) is taken over", async () => {
      const b = await under.make();
      const r = devices(b);
      // What a crash after the claim and before the commit leaves: an index entry whose
      // owner never got the record.
      await b.set(r.indexKey("token", "tok-1"), { group: "fleet", id: "ghost" });
      assert.equal(await r.lookup("token", "tok-1"), undefined, "a stale claim is no one's");
      const addr = { group: "fleet", id: "real" };
      const out = await r.claim("token", ["tok-1"], addr, (cur) =>
        cur ? { result: undefined } : { next: dev("real", "tok-1"), result: "ok" },
      );
      assert.deepEqual(out, { taken: false, result: "ok" });
      assert.equal((await r.lookup("token", "tok-1"))?.address.id, "real");
      await b.close();
    });

    it("a claim writes nothing when no record is stored, or when the update throws", async () => {
      const b = await under.make();
      const r = devices(b);
      const addr = { group: "fleet", id: "d" };
      assert.deepEqual(await r.claim("token", ["t-1"], addr, () => ({ result: "none" })), {
        taken: false,
        result: "none",
      });
      assert.equal(await b.get(r.indexKey("token", "t-1")), undefined);
      await assert.rejects(
        r.claim("token", ["t-1"], addr, () => {
          throw new Error("commit failed");
        }),
        /commit failed/,
      );
      assert.equal(await b.get(r.indexKey("token", "t-1")), undefined);
      assert.equal(await r.get(addr), undefined);
      await b.close();
    });

    it("a taken value: the loser's update is not run and nothing of it is written", async () => {
      const b = await under.make();
      const r = devices(b);
      const a = { group: "fleet", id: "a" };
      const c = { group: "fleet", id: "c" };
      await r.claim("token", ["tok"], a, () => ({ next: dev("a", "tok"), result: 0 }));
      let ran = false;
      const out = await r.claim("token", ["tok", "tok-2"], c, () => {
        ran = true;
        return { next: dev("c", "tok"), result: 1 };
      });
      assert.deepEqual(out, { taken: true, holder: a });
      assert.equal(ran, false);
      assert.equal(await r.get(c), undefined);
      assert.equal(await b.get(r.indexKey("token", "tok-2")), undefined);
      // A record that gives a value up by an update frees it for the next claim.
      await r.transact(a, (cur) => ({ next: { ...(cur as Device), token: "other" }, result: 0 }));
      assert.equal(await r.lookup("token", "tok"), undefined, "a claim its owner no longer holds is stale");
      assert.equal(
        (await r.claim("token", ["tok"], c, () => ({ next: dev("c", "tok"), result: 1 }))).taken,
        false,
      );
      assert.equal((await r.lookup("token", "tok"))?.address.id, "c");
      await b.close();
    });

    it("remove frees the values a record held; release frees only the owner's", async () => {
      const b = await under.make();
      const r = devices(b);
      const a = { group: "fleet", id: "a" };
      await r.claim("token", ["tok-a"], a, (cur) =>
        cur ? { result: undefined } : { next: dev("a", "tok-a"), result: 0 },
      );
      await r.release("token", ["tok-a"], { group: "fleet", id: "someone-else" });
      assert.equal((await r.lookup("token", "tok-a"))?.address.id, "a");
      assert.equal(await r.remove(a), true);
      assert.equal(await r.remove(a), false);
      assert.equal(await r.get(a), undefined);
      assert.equal(await b.get(r.indexKey("token", "tok-a")), undefined);
      const c = { group: "fleet", id: "c" };
      const out = await r.claim("token", ["tok-a"], c, (cur) =>
        cur ? { result: undefined } : { next: dev("c", "tok-a"), result: 1 },
      );
      assert.equal(out.taken, false);
      await b.close();
    });

    it("a failing store is STORE, never a defect", async () => {
      const b = await under.make();
      const r = devices(b);
      await b.close();
      await assert.rejects(r.create({ group: "g", id: "d" }, dev("d")), coded("STORE"));
    });
  });
}
