/**
 * The Azure DPS device side's cases, written once and run over MQTT (device-mqtt.test.ts)
 * and HTTPS (device-https.test.ts) against the DPS-like responder: the three attestations,
 * the custom payload, polling after retry-after, throttling and 5xx, Azure's errors, the
 * final statuses, bounded answers, settings that cannot work, the store, and no key in
 * any error. Waits are checked from the responder's recorded request times (a lower
 * bound: we waited at least what the service asked), never by sleeping.
 */
import { after, before, describe, it } from "mocha";
import assert from "node:assert/strict";
import type { ConnectionOptions } from "node:tls";
import { conduct } from "../../../lib/client/conductor";
import { once } from "node:events";
import { attemptAzureDps } from "../../../lib/dialects/azure-dps/device-attempt";
import { MAX_REQUESTS } from "../../../lib/dialects/azure-dps/device-flow";
import { azureDpsDialect } from "../../../lib/dialects/azure-dps/device-dialect";
import { prepareAzureDevice } from "../../../lib/dialects/azure-dps/device-prepare";
import { deriveDeviceKey, dpsResource, verifySas } from "../../../lib/dialects/azure-dps/sas";
import type { AzureDeviceSettings } from "../../../lib/dialects/azure-dps/settings";
import { ProvisioningError } from "../../../lib/model/errors";
import type { ProvisioningResult } from "../../../lib/model/result";
import { AbortedError } from "../../../lib/retry/run";
import { MemoryBackend } from "../../../lib/stores/memory";
import {
  assignedState,
  assigningThenAssigned,
  startAzureResponder,
  type AzureResponder,
  type Reply,
} from "../../support/azure-responder";
import { freeTcpPort } from "../../support/ports";
import { makeTestPki } from "../../support/pki";

const ID_SCOPE = "0ne0000ABCD";
const KEY = Buffer.alloc(32, 3).toString("base64");
const GROUP_KEY = Buffer.alloc(64, 9).toString("base64");

function errorBodyOf(status: number, errorCode: number, message: string) {
  return {
    status,
    body: { errorCode, trackingId: "track-1", message, timestampUtc: "2026-01-01T00:00:00Z" },
  };
}

export function azureDeviceCases(transport: "mqtt" | "https"): void {
  describe(`Azure DPS device side over ${transport}`, () => {
    const pki = makeTestPki(`Azure device ${transport}`);
    const tls: ConnectionOptions = { ca: pki.caCert };
    let r: AzureResponder;
    let serial = 0;
    /** Every error seen, to check that none names a key or a token. */
    const errors: ProvisioningError[] = [];

    before(async () => {
      r = await startAzureResponder({ pki });
    });
    after(async () => {
      await r.stop();
    });

    const host = () => (transport === "mqtt" ? r.mqttHost : r.httpsHost);
    const settings = (over: Partial<AzureDeviceSettings> = {}): AzureDeviceSettings => ({
      host: host(),
      transport,
      idScope: ID_SCOPE,
      attestation: "symmetric-key",
      key: KEY,
      ...over,
    });
    const newId = (p = "dev") => `${p}-${transport}-${process.pid}-${++serial}`;

    async function attempt(
      regId: string,
      over: Partial<AzureDeviceSettings> = {},
      o: { timeoutMs?: number; tls?: ConnectionOptions } = {},
    ): Promise<ProvisioningResult> {
      const p = prepareAzureDevice(settings(over), regId);
      return attemptAzureDps(p, {
        signal: new AbortController().signal,
        timeoutMs: o.timeoutMs ?? 5000,
        tls: o.tls ?? tls,
      });
    }

    async function failure(promise: Promise<unknown>): Promise<ProvisioningError> {
      try {
        await promise;
      } catch (err) {
        assert.ok(err instanceof ProvisioningError, `a ProvisioningError, not ${String(err)}`);
        errors.push(err);
        return err;
      }
      assert.fail("resolved where it should have failed");
    }

    /** Requests since `from`, of one registration. */
    const since = (from: number, regId?: string) =>
      r.seen
        .slice(from)
        .filter(
          (s) =>
            regId === undefined ||
            s.body.includes(regId) ||
            s.url?.includes(regId) ||
            s.connect?.clientId === regId,
        );

    it("symmetric key: register, 202 assigning, poll, 200 assigned; a SAS signed with the device key", async () => {
      r.script = assigningThenAssigned({ pollsBeforeAssigned: 1 });
      const regId = newId();
      const from = r.seen.length;
      const res = await attempt(regId);
      const seen = since(from);
      assert.deepEqual(
        seen.map((s) => s.kind),
        ["register", "status", "status"],
      );
      assert.deepEqual(JSON.parse(seen[0].body), { registrationId: regId });
      const verdict = verifySas(seen[0].token, dpsResource(ID_SCOPE, regId), [KEY], Date.now());
      assert.deepEqual(verdict, { ok: true, keyIndex: 0 });
      assert.equal(res.dialect, "azure-dps");
      assert.equal(res.endpoint, `${transport === "mqtt" ? "mqtts" : "https"}://${host()}`);
      assert.deepEqual(res.device, { name: regId, id: regId });
      assert.equal(res.proof, "symmetric-key");
      assert.deepEqual(res.credentials, {
        type: "SYMMETRIC_KEY",
        key: KEY,
        clientId: regId,
        username: `hub-one.azure-devices.net/${regId}/?api-version=2021-04-12`,
        connectionString: `HostName=hub-one.azure-devices.net;DeviceId=${regId};SharedAccessKey=${KEY}`,
      });
      const state = assignedState(regId);
      assert.deepEqual(res.configuration, {
        servers: [{ uri: "mqtts://hub-one.azure-devices.net:8883", id: "hub-one.azure-devices.net" }],
        hubId: "hub-one.azure-devices.net",
        deviceId: regId,
        status: "assigned",
        substatus: "initialAssignment",
        etag: state.etag,
        createdDateTimeUtc: state.createdDateTimeUtc,
        lastUpdatedDateTimeUtc: state.lastUpdatedDateTimeUtc,
      });
      assert.equal(res.reused, false);
    });

    it("group key: each device by message, its SAS and its result with the key derived for its registration id", async () => {
      r.script = assigningThenAssigned({
        state: (id) =>
          assignedState(id, { deviceId: `dev-of-${id}`, symmetricKey: { enrollmentGroupId: "line-7" } }),
      });
      const store = new MemoryBackend();
      for (const regId of [newId("gw-a"), newId("gw-b")]) {
        const from = r.seen.length;
        const out = await conduct(azureDpsDialect, settings({ attestation: "group-key", key: GROUP_KEY }), {
          identity: { message: regId, setting: "from-dialog" },
          env: () => undefined,
          store,
          timeoutMs: 5000,
          tls,
          signal: new AbortController().signal,
        });
        const derived = deriveDeviceKey(GROUP_KEY, regId);
        const register = since(from).find((s) => s.kind === "register");
        assert.deepEqual(verifySas(register?.token, dpsResource(ID_SCOPE, regId), [derived], Date.now()), {
          ok: true,
          keyIndex: 0,
        });
        assert.equal(out.storeKey, `azure-dps/${regId}`);
        assert.equal(out.result.credentials.key, derived);
        assert.notEqual(out.result.credentials.key, GROUP_KEY);
        assert.equal(out.result.device.id, `dev-of-${regId}`);
        assert.equal(out.result.configuration.enrollmentGroupId, "line-7");
        assert.match(out.result.credentials.connectionString ?? "", new RegExp(`DeviceId=dev-of-${regId};`));
      }
    });

    it("X.509: no token, the client certificate (CN = registration id) proves the device", async () => {
      r.script = assigningThenAssigned({
        state: (id) => assignedState(id, { x509: { enrollmentGroupId: "certs" } }),
      });
      const regId = newId("x509");
      const client = pki.issueClient(regId);
      const from = r.seen.length;
      const res = await attempt(
        regId,
        { attestation: "x509", key: undefined, clientCertificate: client.cert },
        { tls: { ...tls, cert: client.cert, key: client.key } },
      );
      const register = since(from)[0];
      assert.equal(register.token, undefined, "no SAS token with X.509");
      assert.equal(register.peerCn, regId);
      assert.equal(res.proof, "x509-certificate");
      assert.deepEqual(res.credentials, {
        type: "X509_CERTIFICATE",
        clientId: regId,
        username: `hub-one.azure-devices.net/${regId}/?api-version=2021-04-12`,
        connectionString: `HostName=hub-one.azure-devices.net;DeviceId=${regId};x509=true`,
      });
      assert.equal(res.configuration.enrollmentGroupId, "certs");
    });

    it("X.509: a registration id other than the certificate's CN, or no certificate, is CONFIG before any byte", async () => {
      const client = pki.issueClient("someone-else");
      const from = r.seen.length;
      const e1 = await failure(
        Promise.resolve().then(() =>
          prepareAzureDevice(settings({ attestation: "x509", clientCertificate: client.cert }), newId()),
        ),
      );
      assert.equal(e1.code, "CONFIG");
      assert.match(e1.message, /CN someone-else/);
      const e2 = await failure(
        attempt(newId(), { attestation: "x509" }, { tls: { ...tls, cert: client.cert, key: client.key } }),
      );
      assert.equal(e2.code, "CONFIG");
      const e3 = await failure(attempt(newId(), { attestation: "x509" }));
      assert.equal(e3.code, "CONFIG");
      assert.equal(r.seen.length, from, "nothing reached the service");
    });

    it("the custom payload goes with the registration; the service's payload comes back in the result", async () => {
      r.script = assigningThenAssigned({
        state: (id) => assignedState(id, { payload: { site: "north", slot: 4 } }),
      });
      const regId = newId();
      const from = r.seen.length;
      const res = await attempt(regId, { payload: { model: "gw-9", fw: "1.2.3" } });
      assert.deepEqual(JSON.parse(since(from)[0].body), {
        registrationId: regId,
        payload: { model: "gw-9", fw: "1.2.3" },
      });
      assert.deepEqual(res.configuration.payload, { site: "north", slot: 4 });
    });

    it("polls after the retry-after the service names (202 with retry-after 1)", async () => {
      r.script = assigningThenAssigned({ retryAfterS: 1, pollsBeforeAssigned: 1 });
      const from = r.seen.length;
      await attempt(newId());
      const at = since(from).map((s) => s.at);
      assert.equal(at.length, 3);
      assert.ok(at[1] - at[0] >= 990, `first poll after ${at[1] - at[0]} ms`);
      assert.ok(at[2] - at[1] >= 990, `second poll after ${at[2] - at[1]} ms`);
    });

    it("polls after 2 s, the Node SDK's default, when the service names no retry-after", async () => {
      const inner = assigningThenAssigned();
      r.script = (req, i) => {
        const reply = inner(req, i);
        return reply && { ...reply, retryAfterS: undefined };
      };
      const from = r.seen.length;
      await attempt(newId());
      const at = since(from).map((s) => s.at);
      assert.ok(at[1] - at[0] >= 1990, `polled after ${at[1] - at[0]} ms`);
    });

    it("429 with retry-after is retried in the same attempt after the wait it asked for", async () => {
      const inner = assigningThenAssigned();
      let throttled = 0;
      r.script = (req, i) => {
        if (req.kind === "register" && throttled++ === 0)
          return { ...errorBodyOf(429, 429001, "throttled"), retryAfterS: 1 };
        return inner(req, i);
      };
      const from = r.seen.length;
      const res = await attempt(newId());
      const seen = since(from);
      assert.deepEqual(
        seen.map((s) => s.kind),
        ["register", "register", "status"],
      );
      assert.ok(seen[1].at - seen[0].at >= 990, `retried after ${seen[1].at - seen[0].at} ms`);
      assert.equal(res.configuration.status, "assigned");
    });

    it("429 whose wait does not fit the attempt: BUSY, not final, with the retry-after for the conductor", async () => {
      r.script = () => ({ ...errorBodyOf(429, 429001, "throttled"), retryAfterS: 30 });
      const e = await failure(attempt(newId(), {}, { timeoutMs: 2000 }));
      assert.equal(e.code, "BUSY");
      assert.equal(e.final, false);
      assert.equal(e.status, 429);
      assert.equal(e.retryAfterMs, 30_000);
      assert.equal(azureDpsDialect.shouldRetry?.(e, settings()), true);
    });

    it("the conductor waits the retry-after of a throttled attempt before the next", async () => {
      let n = 0;
      const inner = assigningThenAssigned();
      r.script = (req, i) =>
        req.kind === "register" && n++ === 0
          ? { ...errorBodyOf(429, 429001, "throttled"), retryAfterS: 2 }
          : inner(req, i);
      const from = r.seen.length;
      const retries: number[] = [];
      await conduct(azureDpsDialect, settings(), {
        identity: { setting: newId() },
        env: () => undefined,
        // The attempt's time is shorter than the wait, so the conductor waits it.
        timeoutMs: 1900,
        policy: { intervals: [0.01], jitter: 0, maxAttempts: 3 },
        tls,
        signal: new AbortController().signal,
        hooks: { onRetry: ({ delayMs }) => retries.push(delayMs) },
      });
      assert.deepEqual(retries, [2000]);
      const seen = since(from);
      assert.ok(seen[1].at - seen[0].at >= 1990, `asked again after ${seen[1].at - seen[0].at} ms`);
    });

    it("5xx is retried after retry-after; when it does not fit, UNAVAILABLE and not final", async () => {
      const inner = assigningThenAssigned();
      let failed = 0;
      r.script = (req, i) =>
        req.kind === "register" && failed++ === 0
          ? { ...errorBodyOf(503, 503000, "busy"), retryAfterS: 0 }
          : inner(req, i);
      await attempt(newId());
      r.script = () => ({ ...errorBodyOf(500, 500000, "The service failed"), retryAfterS: 60 });
      const e = await failure(attempt(newId(), {}, { timeoutMs: 1500 }));
      assert.equal(e.code, "UNAVAILABLE");
      assert.equal(e.final, false);
      assert.equal(e.status, 500);
      assert.equal(e.retryAfterMs, 60_000);
    });

    const finalStatuses: Array<[number, number, string, string]> = [
      [401, 401002, "The device is unauthorized for service.", "DENIED"],
      [404, 404201, "The registration was not found.", "NOT_FOUND"],
      [400, 400004, "The registration id is invalid.", "INVALID"],
      [412, 412001, "The etag does not match.", "CONFLICT"],
    ];
    for (const [status, errorCode, message, code] of finalStatuses) {
      it(`${status} is final ${code}, with Azure's errorCode and message`, async () => {
        r.script = () => errorBodyOf(status, errorCode, message);
        const from = r.seen.length;
        const e = await failure(attempt(newId()));
        assert.equal(e.code, code);
        assert.equal(e.final, true);
        assert.equal(e.status, status);
        assert.ok(e.message.includes(String(errorCode)), e.message);
        assert.ok(e.message.includes(message), e.message);
        assert.equal(since(from).length, 1, "not retried");
      });
    }

    it("a 4xx on the status poll is final as well", async () => {
      r.script = (req) =>
        req.kind === "register"
          ? { status: 202, retryAfterS: 0, body: { operationId: "op-1", status: "assigning" } }
          : errorBodyOf(404, 404202, "The operation was not found.");
      const e = await failure(attempt(newId()));
      assert.equal(e.code, "NOT_FOUND");
      assert.match(e.message, /404202/);
    });

    it("a body without a status is INVALID_ANSWER", async () => {
      r.script = () => ({ status: 200, body: { operationId: "op" } });
      const e = await failure(attempt(newId()));
      assert.equal(e.code, "INVALID_ANSWER");
      assert.match(e.message, /no registration status/);
    });

    it("assigned without a hub is INVALID_ANSWER", async () => {
      r.script = () => ({
        status: 200,
        body: { operationId: "op", status: "assigned", registrationState: { deviceId: "d" } },
      });
      const e = await failure(attempt(newId()));
      assert.equal(e.code, "INVALID_ANSWER");
    });

    const states: Array<[string, string, RegExp]> = [
      ["failed", "REFUSED", /failed \(Custom allocation failed, errorCode 400209\)/],
      ["disabled", "DENIED", /disabled/],
      ["unassigned", "REFUSED", /not assigned/],
    ];
    for (const [st, code, text] of states) {
      it(`"${st}" is final ${code}, saying why`, async () => {
        r.script = (req) =>
          req.kind === "register"
            ? { status: 202, retryAfterS: 0, body: { operationId: "op-2", status: "assigning" } }
            : {
                status: 200,
                body: {
                  operationId: "op-2",
                  status: st,
                  registrationState: {
                    registrationId: "x",
                    status: st,
                    ...(st === "failed"
                      ? { errorCode: 400209, errorMessage: "Custom allocation failed" }
                      : {}),
                  },
                },
              };
        const e = await failure(attempt(newId()));
        assert.equal(e.code, code);
        assert.equal(e.final, true);
        assert.equal(e.status, st);
        assert.match(e.message, text);
      });
    }

    it('a service that says "assigning, wait 0 s" for ever: at most MAX_REQUESTS requests, then TIMEOUT (retried)', async () => {
      r.script = () => ({
        status: 202,
        retryAfterS: 0,
        body: { operationId: "op-loop", status: "assigning" },
      });
      const from = r.seen.length;
      const e = await failure(attempt(newId(), {}, { timeoutMs: 60_000 }));
      assert.equal(e.code, "TIMEOUT");
      assert.equal(e.final, false);
      assert.equal(r.seen.length - from, MAX_REQUESTS);
    });

    it("an abort while waiting to poll ends the attempt with AbortedError", async () => {
      r.script = () => ({
        status: 202,
        retryAfterS: 3600,
        body: { operationId: "op-wait", status: "assigning" },
      });
      const ac = new AbortController();
      const asked = once(r, "request");
      const pending = attemptAzureDps(prepareAzureDevice(settings(), newId()), {
        signal: ac.signal,
        timeoutMs: 3_600_000,
        tls,
      });
      await asked;
      ac.abort();
      await assert.rejects(pending, AbortedError);
    });

    it("an answer larger than maxAnswerBytes is TOO_LARGE", async () => {
      const big: Reply = { status: 200, body: { status: "assigned", filler: "x".repeat(200_000) } };
      r.script = () => big;
      const e = await failure(attempt(newId(), { maxAnswerBytes: 4096 }));
      assert.equal(e.code, "TOO_LARGE");
      assert.equal(e.final, true);
    });

    it("a service that cannot be reached is CONNECT, retried (a gateway offline at deploy)", async () => {
      const port = await freeTcpPort();
      const e = await failure(attempt(newId(), { host: `127.0.0.1:${port}` }));
      assert.equal(e.code, "CONNECT");
      assert.equal(azureDpsDialect.shouldRetry?.(e, settings()), true);
    });

    it("settings that cannot work are CONFIG, before any byte", async () => {
      const from = r.seen.length;
      const bad: Array<[Partial<AzureDeviceSettings>, string, RegExp]> = [
        [{ idScope: "" }, newId(), /id scope/],
        [{ idScope: "0ne/../x" }, newId(), /id scope/],
        [{ key: "not base64!" }, newId(), /device key/],
        [{ key: undefined }, newId(), /device key/],
        [{ attestation: "group-key", key: "c2hvcnQ=" }, newId(), /group key/],
        [{ host: "mqtts://example.com" }, newId(), /host/],
        [{ host: "example.com:99999" }, newId(), /port/],
        [{}, "has space", /registration id/],
        [{}, "x".repeat(129), /registration id/],
        [{ payload: { big: "x".repeat(20_000) } }, newId(), /payload/],
      ];
      for (const [over, regId, text] of bad) {
        const e = await failure(azureDpsDialect.prepare(settings(over), regId, () => undefined));
        assert.equal(e.code, "CONFIG", `${JSON.stringify(over).slice(0, 60)}: ${e.message}`);
        assert.match(e.message, text);
      }
      assert.equal(r.seen.length, from);
    });

    it("the result is kept in the store and reused; force registers again", async () => {
      r.script = assigningThenAssigned();
      const store = new MemoryBackend();
      const regId = newId("kept");
      const run = (force?: boolean) =>
        conduct(azureDpsDialect, settings(), {
          identity: { setting: regId },
          env: () => undefined,
          store,
          force,
          timeoutMs: 5000,
          tls,
          signal: new AbortController().signal,
        });
      const first = await run();
      const before = r.requests("register").length;
      const again = await run();
      assert.equal(again.result.reused, true);
      assert.deepEqual(again.result.credentials, first.result.credentials);
      assert.equal(r.requests("register").length, before);
      const forced = await run(true);
      assert.equal(forced.result.reused, false);
      assert.equal(r.requests("register").length, before + 1);
    });

    it("the identity: message, dialog, AZURE_DPS_REGISTRATION_ID, host name", () => {
      assert.deepEqual(azureDpsDialect.identity, {
        messageProperty: "registrationId",
        envVar: "AZURE_DPS_REGISTRATION_ID",
        hostname: true,
      });
    });

    it("no error message names a key or a token", () => {
      assert.ok(errors.length > 15, `${errors.length} errors seen`);
      const secrets = [KEY, GROUP_KEY, "SharedAccessSignature", "sig="];
      for (const e of errors) for (const s of secrets) assert.ok(!e.message.includes(s), e.message);
    });
  });
}
