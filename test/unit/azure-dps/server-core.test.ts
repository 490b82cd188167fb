/**
 * The Azure DPS service core without a transport (lib/dialects/azure-dps/server.ts): the
 * re-provisioning policies and Azure's substatus words, hashed allocation with weights, the
 * registrations-per-minute quota, a hub the flow names that is not linked, management by
 * message (list, get, delete as a factory reset, enable/disable, enrollments added and
 * removed at runtime, never a key), and the settings check.
 */
import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import { describe, it } from "mocha";
import { AzureDpsService, type DpsAnswer, type DpsCaller } from "../../../lib/dialects/azure-dps/server";
import { hashedHub, reprovision } from "../../../lib/dialects/azure-dps/server-allocate";
import { manageAzure } from "../../../lib/dialects/azure-dps/server-manage";
import { dpsResource, signSas } from "../../../lib/dialects/azure-dps/sas";
import { azureDpsServing } from "../../../lib/dialects/azure-dps/serving";
import type {
  AzureEnrollment,
  AzureServeSettings,
  AzureServiceSettings,
} from "../../../lib/dialects/azure-dps/settings";
import type { ServiceAuditEvent } from "../../../lib/service/audit";
import { buildServiceContext } from "../../../lib/service/context";
import { parseFlowAnswer } from "../../../lib/service/pending";
import { makeAzurePki } from "../../support/azure-dps-fixtures";
import { HUB_A, HUB_B, ID_SCOPE, key, sasCaller } from "../../support/azure-dps-service";

const K = key();
const individual = (id: string, over: Partial<AzureEnrollment> = {}): AzureEnrollment => ({
  kind: "individual",
  id,
  attestation: "symmetric-key",
  primaryKey: K,
  enabled: true,
  ...over,
});

function core(settings: Partial<AzureServiceSettings>, flow?: (r: unknown) => unknown) {
  const audits: ServiceAuditEvent[] = [];
  const built = buildServiceContext({
    dialect: "azure-dps",
    rateLimit: false,
    failureLimit: { enabled: false },
    lockAccount: "deviceName",
    audit: (e) => audits.push(e),
    decide: flow
      ? { timeoutMs: 5000, ask: (id, r) => void Promise.resolve(flow(r)).then((a) => built.answer(id, a)) }
      : undefined,
  });
  const service = new AzureDpsService(
    { idScope: ID_SCOPE, linkedHubs: [HUB_A, HUB_B], enrollments: [], ...settings },
    built.ctx,
  );
  return { service, audits };
}

/** Registers `id` with key K and resolves the operation's end (waits for the service's "ended", no polling loop). */
async function registerNow(service: AzureDpsService, id: string): Promise<DpsAnswer> {
  const caller = sasCaller(id, K);
  const v = await service.attest(caller);
  if (!v.ok) return v.answer;
  const ended = new Promise<void>((resolve) => {
    const off = service.watch((event, who) => {
      if (event === "ended" && who === id) {
        off();
        resolve();
      }
    });
  });
  const first = await service.register(v.who, caller, Buffer.from(JSON.stringify({ registrationId: id })));
  if (first.status !== 202) return first;
  await ended;
  return service.status(v.who, (first.body as { operationId: string }).operationId);
}

const stateOf = (a: DpsAnswer) =>
  (a.body as { registrationState: Record<string, unknown> }).registrationState;

describe("Azure DPS service core", () => {
  it("re-provisioning: never keeps the hub; migrate and reset move it with Azure's substatus", () => {
    const first = reprovision(undefined, HUB_A, "d", "migrate");
    assert.deepEqual(first, {
      assignedHub: HUB_A,
      deviceId: "d",
      substatus: "initialAssignment",
      initialHub: HUB_A,
    });
    assert.equal(reprovision(first, HUB_B, "d", "never"), first);
    assert.equal(reprovision(first, HUB_A, "d", "reset"), first);
    const moved = reprovision(first, HUB_B, "d", "migrate");
    assert.equal(moved.substatus, "deviceDataMigrated");
    assert.equal(reprovision(first, HUB_B, "d", "reset").substatus, "deviceDataReset");
    const back = reprovision(moved, HUB_A, "d", "migrate");
    assert.equal(back.assignedHub, HUB_A);
    assert.equal(back.substatus, "reprovisionedToInitialAssignment");
  });

  it("hashed allocation: one registration id always lands on one hub; weight 0 takes none", () => {
    const ids = Array.from({ length: 200 }, (_, i) => `device-${i}`);
    const counts = new Map<string, number>();
    for (const id of ids) {
      const h = hashedHub(id, [HUB_A, HUB_B]) as string;
      assert.equal(hashedHub(id, [HUB_A, HUB_B]), h);
      counts.set(h, (counts.get(h) ?? 0) + 1);
    }
    assert.equal(counts.size, 2);
    for (const id of ids) assert.equal(hashedHub(id, [HUB_A, HUB_B], { [HUB_A]: 0 }), HUB_B);
    assert.equal(hashedHub("x", [HUB_A], { [HUB_A]: 0 }), undefined);
  });

  it("a registered device moves hub under its enrollment's policy: same device id, Azure's substatus", async () => {
    const { service } = core({
      enrollments: [individual("mover", { allocation: "static", iotHubs: [HUB_A] })],
    });
    const a = stateOf(await registerNow(service, "mover"));
    assert.equal(a.assignedHub, HUB_A);
    assert.equal(a.substatus, "initialAssignment");
    await manageAzure(
      service,
      "addEnrollment",
      individual("mover", { allocation: "static", iotHubs: [HUB_B] }),
    );
    const b = stateOf(await registerNow(service, "mover"));
    assert.deepEqual([b.assignedHub, b.deviceId, b.substatus], [HUB_B, "mover", "deviceDataMigrated"]);
    assert.equal(b.createdDateTimeUtc, a.createdDateTimeUtc);
    await manageAzure(
      service,
      "addEnrollment",
      individual("mover", { allocation: "static", iotHubs: [HUB_A], reprovision: "never" }),
    );
    const c = stateOf(await registerNow(service, "mover"));
    assert.equal(c.assignedHub, HUB_B);
    await manageAzure(
      service,
      "addEnrollment",
      individual("mover", { allocation: "static", iotHubs: [HUB_A], reprovision: "reset" }),
    );
    const d = stateOf(await registerNow(service, "mover"));
    assert.deepEqual([d.assignedHub, d.substatus], [HUB_A, "reprovisionedToInitialAssignment"]);
  });

  it("registrations past the per-minute quota get 429 with a retry-after, audited 'throttled'", async () => {
    const { service, audits } = core({
      enrollments: [individual("q1"), individual("q2"), individual("q3")],
      registrationsPerMinute: 2,
    });
    assert.equal((await registerNow(service, "q1")).status, 200);
    assert.equal((await registerNow(service, "q2")).status, 200);
    const third = await registerNow(service, "q3");
    assert.equal(third.status, 429);
    assert.ok((third.retryAfterS ?? 0) >= 1);
    assert.equal((third.body as { errorCode: number }).errorCode, 429001);
    assert.equal(audits.at(-1)?.outcome, "throttled");
  });

  it("a hub the flow names that is not linked ends the registration 'failed'", async () => {
    const { service, audits } = core({ enrollments: [individual("c1", { allocation: "custom" })] }, () => ({
      approve: true,
      iotHubHostName: "elsewhere.azure-devices.net",
    }));
    const a = await registerNow(service, "c1");
    assert.equal((a.body as { status: string }).status, "failed");
    assert.equal(stateOf(a).errorCode, 400209);
    assert.equal(audits.at(-1)?.reason, "denied");
    assert.equal(await service.records.get({ group: ID_SCOPE, id: "c1" }), undefined);
  });

  it("registration ids are case-insensitive: one device, one record, whatever case it writes", async () => {
    const { service } = core({ enrollments: [individual("case-dev")] });
    const a = stateOf(await registerNow(service, "case-dev"));
    const b = stateOf(await registerNow(service, "CASE-Dev"));
    assert.equal(b.createdDateTimeUtc, a.createdDateTimeUtc);
    assert.equal((await service.records.list(ID_SCOPE)).length, 1);
  });

  it("a certificate that proves nothing does not hide a valid SAS token sent with it", async () => {
    const { service } = core({ enrollments: [individual("both")] });
    const pem = makeAzurePki("127.0.0.1").device("someone-else", "self").leaf;
    const caller = (token: string): DpsCaller => ({
      transport: "https",
      idScope: ID_SCOPE,
      registrationId: "both",
      token,
      chain: [new X509Certificate(pem)],
    });
    const good = signSas(dpsResource(ID_SCOPE, "both"), K, Date.now() / 1000 + 600);
    assert.equal((await service.attest(caller(good))).ok, true);
    assert.equal(
      (await service.attest(caller(signSas(dpsResource(ID_SCOPE, "both"), key(), Date.now() / 1000 + 600))))
        .ok,
      false,
    );
  });

  it("the flow's answer may carry Azure's iotHubHostName, initialTwin and payload (a hub must be a string)", () => {
    assert.deepEqual(
      parseFlowAnswer({ approve: true, iotHubHostName: HUB_A, initialTwin: { a: 1 }, payload: [1] }),
      {
        approve: true,
        iotHubHostName: HUB_A,
        initialTwin: { a: 1 },
        payload: [1],
      },
    );
    assert.equal(parseFlowAnswer({ approve: true, iotHubHostName: 7 }), undefined);
  });

  it("custom allocation without the flow's decision does not start", () => {
    assert.throws(
      () => core({ enrollments: [individual("c2", { allocation: "custom" })] }),
      /custom allocation needs the flow/u,
    );
  });

  it("management: list, get, delete (a factory reset), enable/disable, enrollments without keys, add and remove", async () => {
    const { service } = core({ enrollments: [individual("m1", { secondaryKey: key() })] });
    await registerNow(service, "m1");
    const list = await manageAzure(service, "list", {});
    assert.deepEqual(list.operation === "list" ? list.registrations.map((r) => [r.id, r.kind]) : [], [
      ["m1", "assigned"],
    ]);
    const got = await manageAzure(service, "get", { registrationId: "m1" });
    assert.equal(got.operation === "get" ? got.registration?.deviceId : undefined, "m1");
    const shown = JSON.stringify(await manageAzure(service, "enrollments", {}));
    assert.ok(!shown.includes(K), "a key in the enrollments' view");
    assert.deepEqual(await manageAzure(service, "delete", { registrationId: "m1" }), {
      operation: "delete",
      registrationId: "m1",
      deleted: true,
    });
    assert.equal(stateOf(await registerNow(service, "m1")).substatus, "initialAssignment");
    await manageAzure(service, "disable", { kind: "individual", id: "m1" });
    assert.equal(((await registerNow(service, "m1")).body as { status: string }).status, "disabled");
    await manageAzure(service, "enable", { kind: "individual", id: "m1" });
    assert.equal(((await registerNow(service, "m1")).body as { status: string }).status, "assigned");
    await manageAzure(service, "removeEnrollment", { kind: "individual", id: "m1" });
    assert.equal((await registerNow(service, "m1")).status, 401);
    await assert.rejects(
      manageAzure(service, "addEnrollment", {
        kind: "individual",
        id: "m2",
        attestation: "symmetric-key",
        primaryKey: "short",
      }),
      /primary key/u,
    );
    await assert.rejects(manageAzure(service, "nope", {}), /operation must be one of/u);
  });

  it("check() names settings that cannot work", () => {
    const tls = { key: "k", cert: "c" };
    const ok: AzureServeSettings = {
      idScope: ID_SCOPE,
      linkedHubs: [HUB_A],
      enrollments: [individual("ok")],
      https: { host: "127.0.0.1", port: 0, tls },
    };
    assert.equal(azureDpsServing.check(ok), undefined);
    const bad: Array<[Partial<AzureServeSettings>, RegExp]> = [
      [{ https: undefined }, /MQTT, HTTPS or both/u],
      [{ https: { host: "127.0.0.1", port: 0, tls: {} } }, /TLS key and certificate/u],
      [{ idScope: "not a scope" }, /id scope/u],
      [{ linkedHubs: [] }, /linked IoT hub/u],
      [{ enrollments: [individual("ok", { iotHubs: [HUB_B] })] }, /not one of the linked hubs/u],
      [{ enrollments: [individual("ok"), individual("OK")] }, /two individual enrollments/u],
      [
        { enrollments: [individual("ok", { attestation: "x509", certificates: [] })] },
        /at least one certificate/u,
      ],
      [{ pollLimit: { count: 0, windowMs: 1000 } }, /poll limit/u],
    ];
    for (const [over, re] of bad) assert.match(azureDpsServing.check({ ...ok, ...over }) ?? "", re);
  });
});
