/**
 * The Azure DPS serving side against Microsoft's device SDK, once per transport: the same
 * cases over MQTT (test/unit/azure-dps/server-sdk-mqtt.test.ts) and HTTPS
 * (server-sdk-https.test.ts). Each file serves on a random loopback address of its own
 * (HTTPS on 443, where the SDK always dials).
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "mocha";
import { hashedHub } from "../../lib/dialects/azure-dps/server-allocate";
import { deriveDeviceKey } from "../../lib/dialects/azure-dps/sas";
import type { AzureServeSettings } from "../../lib/dialects/azure-dps/settings";
import type { ProvisioningRequest } from "../../lib/model/service";
import { MemoryBackend } from "../../lib/stores/memory";
import { makeAzurePki, randomLoopback, runSdk, type AzurePki } from "./azure-dps-fixtures";
import {
  enrollments,
  HUB_A,
  HUB_B,
  ID_SCOPE,
  KEYS,
  key,
  startTestService,
  type TestService,
} from "./azure-dps-service";
import type { SdkOutcome, SdkRun } from "./azure-sdk-registrant";

/** What a transport's own cases get (read once the suite's before() ran). */
export interface SdkSuiteContext {
  ip(): string;
  pki(): AzurePki;
  service(): TestService;
  /** Where the SDK dials: `ip:port` (MQTT) or the bare address (HTTPS, port 443). */
  host(): string;
}

function assigned(o: SdkOutcome): Record<string, unknown> {
  assert.ok(o.ok, JSON.stringify(o));
  return o.result;
}

function failed(o: SdkOutcome): { name: string; message: string; statusCode?: number; result?: unknown } {
  assert.ok(!o.ok, JSON.stringify(o));
  return o.error;
}

/** Every audit event so far, as text: no key may be in it. */
function noSecretIn(s: TestService): void {
  const text = JSON.stringify(s.audits) + JSON.stringify(s.asked);
  for (const k of Object.values(KEYS)) assert.ok(!text.includes(k), "a key reached the audit or the flow");
}

export function azureSdkSuite(transport: "mqtt" | "https", extra?: (c: SdkSuiteContext) => void): void {
  describe(`Azure DPS serving, Microsoft's device SDK over ${transport}`, () => {
    const store = new MemoryBackend();
    let ip = "";
    let pki: AzurePki;
    let settings: AzureServeSettings;
    let current: TestService | undefined;
    let throttled: () => void = () => undefined;
    const sawThrottle = new Promise<void>((resolve) => (throttled = resolve));

    const flow = async (r: ProvisioningRequest): Promise<unknown> => {
      if (r.deviceName === "dev-custom")
        return {
          approve: true,
          iotHubHostName: HUB_A,
          initialTwin: { tags: { t: 1 } },
          payload: { greeting: "hi" },
        };
      if (r.deviceName === "dev-slow") await sawThrottle;
      return { approve: true };
    };

    const start = async () => {
      current = await startTestService(settings, { store, flow });
      current.running.service.watch((event, id) => {
        if (event === "poll-throttled" && id === "dev-slow") throttled();
      });
    };

    const host = () => (transport === "mqtt" ? `${ip}:${current?.running.mqttPort as number}` : ip);
    const sdk = (run: Omit<SdkRun, "host" | "idScope" | "transport">) =>
      runSdk({ host: host(), idScope: ID_SCOPE, transport, ...run }, pki.serverCaPath);
    const service = () => current as TestService;

    before(async () => {
      ip = randomLoopback();
      pki = makeAzurePki(ip);
      const tls = { key: pki.serverKey, cert: pki.serverCert };
      settings = {
        idScope: ID_SCOPE,
        linkedHubs: [HUB_A, HUB_B],
        enrollments: enrollments(pki),
        retryAfterS: 0,
        // Small, so that dev-slow's polls meet it (retry-after 0: the SDK polls at once).
        pollLimit: { count: 3, windowMs: 3000 },
        ...(transport === "mqtt"
          ? { mqtt: { host: ip, port: 0, tls } }
          : { https: { host: ip, port: 443, tls } }),
      };
      await start();
    });
    after(async () => {
      await current?.stop();
    });

    it("an individual enrollment's primary key: assigned to its static hub, audited without the key", async () => {
      const r = assigned(await sdk({ registrationId: "dev-individual", key: KEYS.individualPrimary }));
      assert.equal(r.assignedHub, HUB_B);
      assert.equal(r.deviceId, "dev-individual");
      assert.equal(r.status, "assigned");
      assert.equal(r.substatus, "initialAssignment");
      const ev = service().audits.filter(
        (e) => e.outcome === "provisioned" && e.deviceName === "dev-individual",
      );
      assert.equal(ev.length, 1);
      assert.equal(ev[0].credentialsType, "SYMMETRIC_KEY");
      noSecretIn(service());
    });

    it("the secondary key works too, and the device keeps its place", async () => {
      const r = assigned(await sdk({ registrationId: "dev-individual", key: KEYS.individualSecondary }));
      assert.equal(r.assignedHub, HUB_B);
      assert.equal(r.substatus, "initialAssignment");
    });

    it("a group member's derived key: assigned by the hashed policy", async () => {
      const id = "group-member-1";
      const r = assigned(await sdk({ registrationId: id, key: deriveDeviceKey(KEYS.groupPrimary, id) }));
      assert.equal(r.assignedHub, hashedHub(id, [HUB_A, HUB_B]));
      assert.equal(r.deviceId, id);
      const rec = await service().running.service.records.get({ group: ID_SCOPE, id });
      assert.deepEqual(rec?.enrollment, { kind: "group", id: "group-sym" });
    });

    it("the group's own key, not derived, is refused (401)", async () => {
      const e = failed(await sdk({ registrationId: "group-member-2", key: KEYS.groupPrimary }));
      assert.equal(e.statusCode ?? 401, 401, JSON.stringify(e));
      assert.equal(service().audits.at(-1)?.reason, "unauthorized");
    });

    it("X.509: a certificate whose CN is the registration id, chained through an intermediate to the group's root", async () => {
      const d = pki.device("x509-device-1", "intermediate");
      const r = assigned(await sdk({ registrationId: "x509-device-1", cert: d.cert, certKey: d.key }));
      assert.equal(r.status, "assigned");
      assert.equal(r.deviceId, "x509-device-1");
      const rec = await service().running.service.records.get({ group: ID_SCOPE, id: "x509-device-1" });
      assert.equal(rec?.attestation, "x509");
      assert.equal(rec?.x509?.subjectName, "CN=x509-device-1");
    });

    it("X.509: a self-signed certificate reaches no enrollment (401)", async () => {
      const d = pki.device("x509-device-2", "self");
      failed(await sdk({ registrationId: "x509-device-2", cert: d.cert, certKey: d.key }));
      assert.equal(service().audits.at(-1)?.outcome, "refused");
      assert.equal(service().audits.at(-1)?.deviceName, "x509-device-2");
    });

    it("a wrong key is refused with 401, audited, the key never shown", async () => {
      const wrong = key();
      const e = failed(await sdk({ registrationId: "dev-individual", key: wrong }));
      if (transport === "https") assert.equal(e.statusCode, 401, JSON.stringify(e));
      const last = service().audits.at(-1);
      assert.equal(last?.outcome, "refused");
      assert.equal(last?.reason, "unauthorized");
      assert.ok(!JSON.stringify(service().audits).includes(wrong));
    });

    it("a disabled enrollment: the right key, and the registration ends 'disabled'", async () => {
      const e = failed(await sdk({ registrationId: "dev-disabled", key: KEYS.disabled }));
      assert.match(`${e.name} ${e.message}`, /disabled/i, JSON.stringify(e));
      assert.equal(service().audits.at(-1)?.reason, "disabled");
      assert.equal(
        await service().running.service.records.get({ group: ID_SCOPE, id: "dev-disabled" }),
        undefined,
      );
    });

    it("an unknown registration is refused like a wrong key (401)", async () => {
      const e = failed(await sdk({ registrationId: "nobody-here", key: key() }));
      if (transport === "https") assert.equal(e.statusCode, 401, JSON.stringify(e));
      // A symmetric-key group may hold any registration id: to the service this is a
      // failed proof against the group, and the device hears the same 401 as for a wrong key.
      assert.equal(service().audits.at(-1)?.reason, "unauthorized");
      assert.equal(service().audits.at(-1)?.deviceName, "nobody-here");
    });

    if (transport === "mqtt")
      it("polls past the per-device limit get 429 with a retry-after, and the SDK rides it out", async () => {
        const r = assigned(await sdk({ registrationId: "dev-slow", key: KEYS.slow }));
        assert.equal(r.status, "assigned");
        await sawThrottle; // the flow answered only after a poll was answered 429
      });
    else
      it("polls past the per-device limit get 429: the Node SDK's HTTP transport gives up (ThrottlingError)", async () => {
        // azure-iot-http-base's RestApiClient turns every status >= 300 into an error before
        // the provisioning transport's own ">= 429: retry" branch can see it (SDK 1.9.1).
        const e = failed(await sdk({ registrationId: "dev-slow", key: KEYS.slow }));
        assert.equal(e.name, "ThrottlingError", JSON.stringify(e));
        assert.equal(e.statusCode, 429);
        await sawThrottle;
      });

    it("custom allocation: the flow gets Azure's webhook body and names the hub, twin and payload", async () => {
      const r = assigned(
        await sdk({ registrationId: "dev-custom", key: KEYS.custom, payload: { model: "m1" } }),
      );
      assert.equal(r.assignedHub, HUB_A);
      assert.deepEqual(r.payload, { greeting: "hi" });
      const req = service().asked.find((a) => a.deviceName === "dev-custom");
      const body = req?.attributes as Record<string, Record<string, unknown>>;
      assert.equal(body.individualEnrollment.registrationId, "dev-custom");
      assert.equal(body.individualEnrollment.allocationPolicy, "custom");
      assert.deepEqual(body.deviceRuntimeContext.payload, { model: "m1" });
      assert.deepEqual(body.linkedHubs, [HUB_A, HUB_B]);
      const rec = await service().running.service.records.get({ group: ID_SCOPE, id: "dev-custom" });
      assert.deepEqual(rec?.initialTwin, { tags: { t: 1 } });
      noSecretIn(service());
    });

    it("after a restart on the same store the registration is kept: same hub, device id, substatus", async () => {
      const before = await service().running.service.records.get({ group: ID_SCOPE, id: "dev-individual" });
      assert.ok(before);
      await service().stop();
      await start();
      const r = assigned(await sdk({ registrationId: "dev-individual", key: KEYS.individualPrimary }));
      assert.equal(r.assignedHub, before.assignedHub);
      assert.equal(r.deviceId, before.deviceId);
      assert.equal(r.substatus, "initialAssignment");
      assert.equal(r.createdDateTimeUtc, before.createdDateTimeUtc);
    });

    extra?.({
      ip: () => ip,
      pki: () => pki,
      service,
      host,
    });
  });
}
