/**
 * Azure DPS operations across instances over one PostgreSQL table: a device registers at
 * one instance and polls its operation at another (behind a load balancer a poll may come
 * on a new connection, to any instance). Two "instances" are two services on two
 * PostgresBackends with pools of their own. The same over stores that are not shared is the
 * control: the other instance does not know the operation (404).
 */
import assert from "node:assert/strict";
import { describe, it } from "mocha";
import { AzureDpsService, type DpsAnswer } from "../../../lib/dialects/azure-dps/server";
import { OPERATION_STALE_MARGIN_MS } from "../../../lib/dialects/azure-dps/server-operations";
import type { AzureEnrollment } from "../../../lib/dialects/azure-dps/settings";
import { buildServiceContext } from "../../../lib/service/context";
import type { StoreBackend } from "../../../lib/stores/backend";
import { MemoryBackend } from "../../../lib/stores/memory";
import { HUB_A, HUB_B, ID_SCOPE, key, sasCaller } from "../../support/azure-dps-service";
import { pgInstances } from "../../support/pg-instances";

const K = key();
const DECIDE_MS = 30_000;
const enrollment = (id: string): AzureEnrollment => ({
  kind: "individual",
  id,
  attestation: "symmetric-key",
  primaryKey: K,
  enabled: true,
});

interface Instance {
  service: AzureDpsService;
  /** Moves this instance's clock forward. */
  skew(ms: number): void;
  /** Refuses what waits for the flow (the node closing). */
  stop(): void;
}

function instance(store: StoreBackend, ids: string[], flow?: "hang"): Instance {
  let offset = 0;
  const now = () => Date.now() + offset;
  const built = buildServiceContext({
    dialect: "azure-dps",
    store,
    rateLimit: false,
    failureLimit: { enabled: false },
    lockAccount: "deviceName",
    now,
    // A flow that never answers: the operation runs until the decision's time is out.
    decide: flow ? { timeoutMs: DECIDE_MS, ask: () => undefined } : undefined,
  });
  const service = new AzureDpsService(
    {
      idScope: ID_SCOPE,
      linkedHubs: [HUB_A, HUB_B],
      enrollments: ids.map(enrollment),
      allocation: flow ? "custom" : "hashed",
    },
    built.ctx,
  );
  return { service, skew: (ms) => (offset += ms), stop: () => built.cancelDecisions("test over") };
}

async function attested(service: AzureDpsService, id: string) {
  const caller = sasCaller(id, K);
  const v = await service.attest(caller);
  assert.ok(v.ok, "the device proves itself");
  return { who: v.who, caller };
}

/** Registers at `at`: the operation id, and a promise of the operation's end there. */
async function register(at: AzureDpsService, id: string): Promise<{ opId: string; ended: Promise<void> }> {
  const ended = new Promise<void>((resolve) => {
    const off = at.watch((event, who) => {
      if (event === "ended" && who === id) {
        off();
        resolve();
      }
    });
  });
  const { who, caller } = await attested(at, id);
  const first = await at.register(who, caller, Buffer.from(JSON.stringify({ registrationId: id })));
  assert.equal(first.status, 202);
  return { opId: (first.body as { operationId: string }).operationId, ended };
}

async function poll(at: AzureDpsService, id: string, opId: string): Promise<DpsAnswer> {
  const { who } = await attested(at, id);
  return at.status(who, opId);
}

const statusOf = (a: DpsAnswer) => (a.body as { status?: string }).status;

describe("unit/scale/azure-operations", () => {
  const pg = pgInstances();
  const twoStores = () => pg.over("azure_ops");

  it("a device registered at one instance polls its operation at another: the same assignment", async () => {
    const ids = Array.from({ length: 20 }, (_, i) => `dev-${i}`);
    const [sa, sb] = await twoStores();
    const a = instance(sa, ids);
    const b = instance(sb, ids);
    for (const id of ids) {
      const { opId, ended } = await register(a.service, id);
      await ended;
      const there = await poll(b.service, id, opId);
      const here = await poll(a.service, id, opId);
      assert.equal(there.status, 200, id);
      assert.equal(statusOf(there), "assigned");
      assert.deepEqual(there.body, here.body, `${id}: one answer at both instances`);
      // Another device's operation id is not found at either instance.
      const other = ids[(ids.indexOf(id) + 1) % ids.length] as string;
      assert.equal((await poll(b.service, other, opId)).status, 404);
    }
  });

  it("control: over stores that are not shared, the other instance does not know the operation", async () => {
    const a = instance(new MemoryBackend(), ["dev-m"]);
    const b = instance(new MemoryBackend(), ["dev-m"]);
    const { opId, ended } = await register(a.service, "dev-m");
    await ended;
    assert.equal((await poll(b.service, "dev-m", opId)).status, 404);
  });

  it("an operation whose instance stopped mid-way: assigning, then failed past its bound, so the device registers again", async () => {
    const [sa, sb] = await twoStores();
    // The flow at A never answers: its operation stays open (as when A is killed).
    const a = instance(sa, ["dev-stuck"], "hang");
    const b = instance(sb, ["dev-stuck"]);
    const { opId } = await register(a.service, "dev-stuck");
    const running = await poll(b.service, "dev-stuck", opId);
    assert.deepEqual([running.status, statusOf(running)], [202, "assigning"]);
    b.skew(DECIDE_MS + OPERATION_STALE_MARGIN_MS - 5000);
    assert.equal((await poll(b.service, "dev-stuck", opId)).status, 202, "within the bound");
    b.skew(10_000);
    const stale = await poll(b.service, "dev-stuck", opId);
    assert.deepEqual([stale.status, statusOf(stale)], [200, "failed"]);
    // Registering again at B assigns it.
    const again = await register(b.service, "dev-stuck");
    await again.ended;
    assert.equal(statusOf(await poll(b.service, "dev-stuck", again.opId)), "assigned");
    a.stop();
  });

  it("an instance that stored the registration but not the operation's end: the record answers elsewhere", async () => {
    const [sa, sb] = await twoStores();
    // A's writes of an operation's end fail (as when A dies right after the record).
    let begun = 0;
    const flaky = new Proxy(sa, {
      get(target, prop, receiver) {
        if (prop === "set")
          return (k: string, ...rest: unknown[]) =>
            k.startsWith("azure-dps/#operation/") && begun++ > 0
              ? Promise.reject(new Error("connection lost"))
              : (target.set as (...a: unknown[]) => unknown).call(target, k, ...rest);
        const v = Reflect.get(target, prop, receiver) as unknown;
        return typeof v === "function" ? (v as (...a: unknown[]) => unknown).bind(target) : v;
      },
    });
    const a = instance(flaky, ["dev-half"]);
    const b = instance(sb, ["dev-half"]);
    const { opId, ended } = await register(a.service, "dev-half");
    await ended;
    assert.equal(begun, 2, "the begin was written, the end was not");
    const there = await poll(b.service, "dev-half", opId);
    assert.deepEqual([there.status, statusOf(there)], [200, "assigned"]);
    assert.deepEqual(there.body, (await poll(a.service, "dev-half", opId)).body);
  });
});
