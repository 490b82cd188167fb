/**
 * The in-process primitives of lib/stores/primitives.ts beyond the contract: the lazy,
 * bounded pruning of run-out claims and counters, and updateMany's lock order under a
 * crossing pair of callers.
 */
import { after, describe, it } from "mocha";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { StoreBackend } from "../../../lib/stores/backend";
import { FileBackend } from "../../../lib/stores/file";
import { JournalBackend } from "../../../lib/stores/journal";
import { MemoryBackend } from "../../../lib/stores/memory";
import { TransientPruner } from "../../../lib/stores/primitives";

describe("unit/stores/primitives", () => {
  const root = mkdtempSync(join(tmpdir(), "store-primitives-"));
  after(() => rmSync(root, { recursive: true, force: true }));
  let n = 0;
  /** A fresh backend, and for those that persist, how to open what it keeps again. */
  const makers: [string, () => { b: StoreBackend; again?: () => StoreBackend }][] = [
    ["memory", () => ({ b: new MemoryBackend() })],
    [
      "file",
      () => {
        const directory = join(root, `f${++n}`);
        return { b: new FileBackend({ directory }), again: () => new FileBackend({ directory }) };
      },
    ],
    [
      "journal",
      () => {
        const directory = join(root, `j${++n}`);
        return { b: new JournalBackend({ directory }), again: () => new JournalBackend({ directory }) };
      },
    ],
  ];

  const past = { claim: "2001-01-01T00:01:00.000Z", count: "2001-01-01T01:00:00.000Z" };
  async function seed(b: StoreBackend): Promise<void> {
    for (let i = 0; i < 5; i++)
      await b.set(
        `claims/${i}`,
        { claimedAt: "2001-01-01T00:00:00.000Z" },
        { kind: "store-claim", expiresAt: past.claim },
      );
    await b.set(
      "claims/counter",
      { n: 2, since: "2001-01-01T00:00:00.000Z" },
      { kind: "store-count", expiresAt: past.count },
    );
    await b.set("claims/cert", { token: "kept" }, { expiresAt: "2001-01-01T00:00:00.000Z" });
    await b.set("other/0", { claimedAt: "x" }, { kind: "store-claim", expiresAt: past.claim });
  }

  for (const [name, make] of makers) {
    it(`${name}: a sweep deletes run-out claims and counters of one group only, at most its limit`, async () => {
      const { b } = make();
      await seed(b);
      const pruner = new TransientPruner(b);
      assert.equal(await pruner.sweep("claims/", 4), 4);
      assert.equal(await pruner.sweep("claims/"), 2);
      assert.equal(await pruner.sweep("claims/"), 0);
      assert.deepEqual(
        (await b.list()).map((e) => e.key),
        ["claims/cert", "other/0"],
        "an expired credential and another group are left",
      );
      await b.close();
    });

    // Only where what was kept can be read after close().
    if (name !== "memory")
      it(`${name}: a claim sweeps its group in the background; close() waits for it`, async () => {
        const { b, again } = make();
        await seed(b);
        assert.equal(await b.claimOnce("claims/live", 60000), true);
        assert.equal(await b.count("claims/live-count", 60000), 1);
        await b.close();
        const reopened = (again as () => StoreBackend)();
        assert.deepEqual(
          (await reopened.list()).map((e) => e.key),
          ["claims/cert", "claims/live", "claims/live-count", "other/0"],
        );
        await reopened.close();
      });
  }

  it("updateMany callers over the same keys given in opposite orders do not deadlock", async () => {
    const b = new MemoryBackend();
    const bump = (keys: string[]) =>
      b.updateMany(
        keys,
        (cur) =>
          new Map(
            keys.map((k) => [
              k,
              { value: { n: ((cur.get(k)?.value as { n: number } | undefined)?.n ?? 0) + 1 } },
            ]),
          ),
      );
    await Promise.all(Array.from({ length: 50 }, (_, i) => bump(i % 2 ? ["x", "y"] : ["y", "x"])));
    assert.deepEqual((await b.get("x"))?.value, { n: 50 });
    assert.deepEqual((await b.get("y"))?.value, { n: 50 });
    await b.close();
  });
});
