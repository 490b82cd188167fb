/**
 * N Node-RED instances serving one fleet over one PostgreSQL table: the registries stay
 * exactly-once across instances. Two "instances" are two PostgresBackends with pools of
 * their own over one namespace (as test/unit/stores/postgres.test.ts makes them), on a
 * private server (test/support/postgres.ts). The same races run over one file backend
 * within one process, where two registries over it are two serving nodes (a redeploy).
 */
import { after, describe, it } from "mocha";
import assert from "node:assert/strict";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ProvisioningError } from "../../../lib/model/errors";
import type { Credentials } from "../../../lib/model/result";
import { DeviceRegistry, preProvisioned, type RegisteredDevice } from "../../../lib/service/registry";
import { ConfigRegistry } from "../../../lib/dialects/mainflux/registry";
import { StoredDpsDevices } from "../../../lib/dialects/plgd-dps/devices";
import type { StoreBackend } from "../../../lib/stores/backend";
import { FileBackend } from "../../../lib/stores/file";
import { pgInstances } from "../../support/pg-instances";

const DEVICES = 200;

const token = (value: string): Credentials => ({ type: "ACCESS_TOKEN", token: value }) as Credentials;
const tokenOf = (d: RegisteredDevice | undefined) =>
  (d?.credentials as { token?: string } | undefined)?.token;
const holds = (d: RegisteredDevice, id: string) =>
  tokenOf(d) !== undefined && `ACCESS_TOKEN:${tokenOf(d)}` === id;
const idOf = (value: string) => `ACCESS_TOKEN:${value}`;

/** What a serving request does: create the device unless present, claiming its token. */
async function provision(reg: DeviceRegistry, name: string, value: string) {
  const out = await reg.withCredentials([idOf(value)], { profile: "fleet", name }, holds, (cur) =>
    cur
      ? { result: { issued: false, token: tokenOf(cur) } }
      : {
          next: {
            ...preProvisioned("fleet", { name, credentials: token(value) }),
            state: "provisioned" as const,
          },
          result: { issued: true, token: value },
        },
  );
  return out;
}

function conflict(err: unknown): boolean {
  return err instanceof ProvisioningError && err.code === "CONFLICT";
}

/** The races, over two backends that are two instances (or one backend twice). */
function races(name: string, pair: () => Promise<readonly [StoreBackend, StoreBackend]>): void {
  describe(name, () => {
    it(`${DEVICES} device names raced by two instances: one record each, the loser sees the winner's credential`, async () => {
      const [a, b] = await pair();
      const regs = [new DeviceRegistry(a), new DeviceRegistry(b)];
      const names = Array.from({ length: DEVICES }, (_, i) => `device-${i}`);
      const outs = await Promise.all(
        names.flatMap((n) =>
          regs.map((r, k) => provision(r, n, `${n}-from-${k}`).then((o) => ({ n, k, o }))),
        ),
      );
      for (const n of names) {
        const both = outs.filter((x) => x.n === n).map((x) => x.o);
        assert.ok(
          both.every((o) => !o.taken),
          `${n}: each instance claims its own token`,
        );
        const results = both.map((o) => (o as { result: { issued: boolean; token?: string } }).result);
        const winners = results.filter((r) => r.issued);
        assert.equal(winners.length, 1, `${n}: exactly one issued`);
        const loser = results.find((r) => !r.issued);
        assert.equal(loser?.token, winners[0]!.token, `${n}: the loser sees the winner's credential`);
        const stored = await regs[1]!.get("fleet", n);
        assert.equal(tokenOf(stored), winners[0]!.token);
        // One credential: the loser's token is no one's, the winner's is the record's.
        const lost = [0, 1].map((k) => `${n}-from-${k}`).find((t) => t !== winners[0]!.token) as string;
        assert.equal(await regs[0]!.records.lookup("credentials", idOf(lost)), undefined);
        assert.equal((await regs[0]!.records.lookup("credentials", idOf(winners[0]!.token!)))?.address.id, n);
      }
      assert.equal((await regs[0]!.list("fleet")).length, DEVICES);
    });

    it("two devices racing one credential value at two instances: one holds it, the other is taken", async () => {
      const [a, b] = await pair();
      const regs = [new DeviceRegistry(a), new DeviceRegistry(b)];
      for (let round = 0; round < 40; round++) {
        const shared = `shared-token-${round}`;
        const outs = await Promise.all([
          provision(regs[0]!, `x-${round}`, shared),
          provision(regs[1]!, `y-${round}`, shared),
        ]);
        assert.equal(outs.filter((o) => o.taken).length, 1, `round ${round}: one is refused`);
        const won = outs[0]!.taken ? `y-${round}` : `x-${round}`;
        const lost = outs[0]!.taken ? `x-${round}` : `y-${round}`;
        assert.equal((await regs[0]!.records.lookup("credentials", idOf(shared)))?.address.id, won);
        assert.equal(await regs[1]!.get("fleet", lost), undefined, "the loser stored nothing");
      }
    });

    it("Mainflux: an external id and a thing id each in one configuration across instances", async () => {
      const [a, b] = await pair();
      const regs = [new ConfigRegistry(a), new ConfigRegistry(b)];
      const add = (k: number, cfg: Record<string, unknown>) =>
        regs[k]!.add({ external_key: "key", ...cfg }).then(
          () => "added",
          (err: unknown) => (conflict(err) ? "conflict" : Promise.reject(err)),
        );
      for (let round = 0; round < 30; round++) {
        // Two uniques: one thing id under two external ids, one external id with two thing ids.
        const thing = await Promise.all([
          add(0, { external_id: `ext-a-${round}`, thing_id: `thing-${round}` }),
          add(1, { external_id: `ext-b-${round}`, thing_id: `thing-${round}` }),
        ]);
        assert.deepEqual([...thing].sort(), ["added", "conflict"], `round ${round}: the thing id`);
        const ext = await Promise.all([
          add(0, { external_id: `ext-${round}`, thing_id: `thing-x-${round}` }),
          add(1, { external_id: `ext-${round}`, thing_id: `thing-y-${round}` }),
        ]);
        assert.deepEqual([...ext].sort(), ["added", "conflict"], `round ${round}: the external id`);
        const held = await regs[0]!.get(`ext-${round}`);
        const other = held?.thing_id === `thing-x-${round}` ? `thing-y-${round}` : `thing-x-${round}`;
        assert.equal(await regs[1]!.getByThing(other), undefined, "the loser's thing id is no one's");
        assert.equal((await regs[1]!.getByThing(held!.thing_id))?.external_id, `ext-${round}`);
      }
    });

    it("Mainflux: updates at two instances are both kept (read-modify-write)", async () => {
      const [a, b] = await pair();
      const regs = [new ConfigRegistry(a), new ConfigRegistry(b)];
      await regs[0]!.add({ external_id: "e", external_key: "k", thing_id: "t" });
      // Each instance changes another field at once: neither change is lost.
      await Promise.all(
        Array.from({ length: 10 }, (_, i) =>
          regs[i % 2]!.update("t", i % 2 ? { name: `n-${i}` } : { content: `c-${i}` }),
        ),
      );
      const cfg = await regs[1]!.get("e");
      assert.match(cfg?.name ?? "", /^n-\d$/);
      assert.match(cfg?.content ?? "", /^c-\d$/);
    });

    it("plgd DPS: two certificates identifying one device id at two instances: one conflict", async () => {
      const [a, b] = await pair();
      const devs = [new StoredDpsDevices(a), new StoredDpsDevices(b)];
      for (let round = 0; round < 30; round++) {
        const id = `00000000-0000-4000-8000-${String(round).padStart(12, "0")}`;
        const outs = await Promise.all([
          devs[0]!.identify(`fp-a-${round}`, id),
          devs[1]!.identify(`fp-b-${round}`, id),
        ]);
        assert.deepEqual([...outs].sort(), ["conflict", "identified"], `round ${round}`);
        const winner = outs[0] === "identified" ? `fp-a-${round}` : `fp-b-${round}`;
        const loser = outs[0] === "identified" ? `fp-b-${round}` : `fp-a-${round}`;
        assert.equal(await devs[1]!.deviceOf(winner), id);
        assert.equal(await devs[0]!.deviceOf(loser), undefined);
      }
    });
  });
}

describe("unit/scale/registries", () => {
  describe("over PostgreSQL, two instances", () => {
    const pg = pgInstances();
    races("races", async () => {
      const [a, b] = await pg.over("scale");
      assert.equal(a.shared, true);
      return [a, b] as const;
    });
  });

  describe("over one file backend, two registries in one process", () => {
    const open: StoreBackend[] = [];
    after(async () => {
      for (const b of open) await b.close();
    });
    races("races", async () => {
      const f = new FileBackend({ directory: join(mkdtempSync(join(tmpdir(), "scale-")), "store") });
      open.push(f);
      assert.equal(f.shared, false);
      return [f, f] as const;
    });
  });
});
