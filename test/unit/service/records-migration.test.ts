/**
 * What earlier versions stored stays readable: ThingsBoard's `tb/<profile>/<name>` and
 * `tb-credentials/<hash>`, Mainflux's `mainflux-bootstrap/<external id>`, moved on open to
 * `thingsboard/...` and `mainflux/...`. A migration cut off after any number of writes
 * (the process dying in the middle) resumes on the next open and ends in the same store.
 */
import { after, describe, it } from "mocha";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { cpSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ConfigRegistry } from "../../../lib/dialects/mainflux/registry";
import { ProvisioningError } from "../../../lib/model/errors";
import { DeviceRegistry, type RegisteredDevice } from "../../../lib/service/registry";
import type { StoreBackend } from "../../../lib/stores/backend";
import { FileBackend } from "../../../lib/stores/file";

describe("unit/service/records-migration", () => {
  const root = mkdtempSync(join(tmpdir(), "records-migration-"));
  after(() => rmSync(root, { recursive: true, force: true }));
  let n = 0;

  const TB_DEVICES = 6;
  const MF_CONFIGS = 4;
  const sha = (s: string) => createHash("sha256").update(s, "utf8").digest("hex");
  const credId = (token: string) => `ACCESS_TOKEN:${token}`;
  const holds = (d: RegisteredDevice, id: string) =>
    d.credentials !== undefined && credId(d.credentials.token ?? "") === id;

  /** A store as the earlier version left it, written through the backend as it wrote it. */
  async function seedOldLayout(directory: string): Promise<void> {
    const b = new FileBackend({ directory });
    for (let i = 0; i < TB_DEVICES; i++) {
      const profile = i % 2 ? "fleet/south" : "fleet";
      const name = `device-${i}`;
      const device: RegisteredDevice = {
        name,
        profile,
        state: "provisioned",
        credentials: { type: "ACCESS_TOKEN", token: `old-token-${i}` },
        createdAt: "2026-01-01T00:00:00.000Z",
        provisionedAt: "2026-01-01T00:00:01.000Z",
        provisionings: 1,
      };
      await b.set(`tb/${encodeURIComponent(profile)}/${name}`, device as never, {
        obtainedAt: device.createdAt,
        protocol: "thingsboard",
        kind: "provisioned",
      });
      await b.set(
        `tb-credentials/${sha(credId(`old-token-${i}`))}`,
        { profile, name },
        { kind: "credential", protocol: "thingsboard" },
      );
    }
    for (let i = 0; i < MF_CONFIGS; i++) {
      const cfg = {
        external_id: `ext-${i}`,
        external_key: `ext-key-${i}`,
        thing_id: `thing-${i}`,
        thing_key: `thing-key-${i}`,
        channels: [{ id: "ch-1" }],
        state: 1,
        created_at: "2026-01-02T00:00:00.000Z",
        updated_at: "2026-01-02T00:00:00.000Z",
        ...(i === 0 ? { owner: "dialog:n1" } : {}),
      };
      await b.set(`mainflux-bootstrap/ext-${i}`, cfg, { protocol: "mainflux", kind: "bootstrap-config" });
    }
    await b.set("someone-elses/key", { v: 1 });
    await b.close();
  }

  /** A backend that dies (every call fails, as after a kill) once `writes` writes are done. */
  function dying(inner: StoreBackend, writes: number): StoreBackend & { dead: () => boolean } {
    let left = writes;
    const die = () => {
      if (left <= 0) throw Object.assign(new Error("killed"), { code: "IO" });
      left--;
    };
    const alive = () => {
      if (left <= 0) throw Object.assign(new Error("killed"), { code: "IO" });
    };
    return {
      kind: inner.kind,
      shared: inner.shared,
      describe: () => inner.describe(),
      get: async (k) => (alive(), inner.get(k)),
      list: async () => (alive(), inner.list()),
      set: async (k, v, m) => (die(), inner.set(k, v, m)),
      delete: async (k) => (die(), inner.delete(k)),
      update: async (k, fn) => (die(), inner.update(k, fn)),
      createIfAbsent: async (k, v, m) => (die(), inner.createIfAbsent(k, v, m)),
      updateMany: async (ks, fn) => (die(), inner.updateMany(ks, fn)),
      claimOnce: async (k, ttl) => (die(), inner.claimOnce(k, ttl)),
      count: async (k, w) => (die(), inner.count(k, w)),
      close: () => inner.close(),
      dead: () => left <= 0,
    };
  }

  async function openBoth(b: StoreBackend): Promise<{ tb: DeviceRegistry; mf: ConfigRegistry }> {
    // As thingsboard/server.ts makes it: the old prefix, then the dialect id.
    const tb = new DeviceRegistry(b, "thingsboard");
    const mf = new ConfigRegistry(b);
    await tb.open();
    await mf.load();
    return { tb, mf };
  }

  /** Everything the store should hold after the migration, and nothing of the old layout. */
  async function assertMigrated(directory: string): Promise<void> {
    const b = new FileBackend({ directory });
    const { tb, mf } = await openBoth(b);
    const keys = (await b.list()).map((e) => e.key);
    assert.deepEqual(
      keys.filter(
        (k) => k.startsWith("tb/") || k.startsWith("tb-credentials/") || k.startsWith("mainflux-bootstrap/"),
      ),
      [],
      "no key of the old layout is left",
    );
    assert.ok(keys.includes("someone-elses/key"), "keys of others are left alone");
    const listed = await tb.list();
    assert.equal(listed.length, TB_DEVICES);
    for (let i = 0; i < TB_DEVICES; i++) {
      const profile = i % 2 ? "fleet/south" : "fleet";
      const d = await tb.get(profile, `device-${i}`);
      assert.equal(d?.credentials?.token, `old-token-${i}`);
      assert.equal(d?.provisionings, 1);
      const s = listed.find((x) => x.name === `device-${i}`);
      assert.equal(s?.state, "provisioned");
      assert.equal(s?.createdAt, "2026-01-01T00:00:00.000Z");
    }
    // The credential index came along: another device cannot take an old device's token.
    const claim = await tb.withCredentials(
      [credId("old-token-3")],
      { profile: "fleet", name: "newcomer" },
      holds,
      () => ({ result: "claimed" }),
    );
    assert.deepEqual(claim, { taken: true });
    assert.equal(mf.size, MF_CONFIGS);
    for (let i = 0; i < MF_CONFIGS; i++) {
      assert.equal((await mf.get(`ext-${i}`))?.external_key, `ext-key-${i}`);
      // The thing-id index, which the old layout kept in memory only, is in the store now.
      assert.equal((await mf.getByThing(`thing-${i}`))?.external_id, `ext-${i}`);
    }
    await assert.rejects(
      mf.add({ external_id: "ext-new", external_key: "k", thing_id: "thing-2" }),
      (err: unknown) => err instanceof ProvisioningError && err.code === "CONFLICT",
    );
    // The dialog's configuration is still known as its own.
    assert.deepEqual(
      (await mf.removeOwned("dialog:n1")).map((c) => c.external_id),
      ["ext-0"],
    );
    await b.close();
  }

  describe("records: moving the earlier layouts to one dialect id per prefix", () => {
    it("a store of the earlier layout is moved on open, and opening again changes nothing", async () => {
      const dir = join(root, `s${++n}`);
      await seedOldLayout(dir);
      const b = new FileBackend({ directory: dir });
      await openBoth(b);
      const first = JSON.stringify(await b.list());
      await openBoth(b);
      assert.equal(JSON.stringify(await b.list()), first, "a second open moves nothing");
      await b.close();
      await assertMigrated(dir);
    });

    it("a migration cut off after any number of writes resumes on the next open", async () => {
      const template = join(root, `template-${++n}`);
      await seedOldLayout(template);
      // How many writes a whole migration takes, to cut it after each of them.
      let total = 0;
      {
        const dir = join(root, `count-${n}`);
        cpSync(template, dir, { recursive: true });
        let writes = 0;
        const inner = new FileBackend({ directory: dir });
        const counted: StoreBackend = {
          ...dying(inner, Number.MAX_SAFE_INTEGER),
          set: async (k, v, m) => (writes++, inner.set(k, v, m)),
          delete: async (k) => (writes++, inner.delete(k)),
          update: async (k, fn) => (writes++, inner.update(k, fn)),
        };
        await openBoth(counted);
        total = writes;
        await inner.close();
      }
      assert.ok(total >= 2 * TB_DEVICES + 2 * MF_CONFIGS, `a migration writes (${total})`);
      for (let cut = 0; cut < total; cut++) {
        const dir = join(root, `cut-${n}-${cut}`);
        cpSync(template, dir, { recursive: true });
        const inner = new FileBackend({ directory: dir });
        const b = dying(inner, cut);
        await assert.rejects(openBoth(b), (err: unknown) => {
          assert.ok(
            err instanceof ProvisioningError && err.code === "STORE",
            `cut after ${cut}: ${String(err)}`,
          );
          return true;
        });
        assert.ok(b.dead(), `the migration was cut after ${cut} writes`);
        await inner.close();
        // The next start, over what the dying one left on disk.
        await assertMigrated(dir);
        rmSync(dir, { recursive: true, force: true });
      }
    });
  });
});
