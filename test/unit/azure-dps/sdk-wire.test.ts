/**
 * Ours against Microsoft's Node device SDK (azure-iot-provisioning-device 1.9 with
 * -mqtt / -http, azure-iot-security-symmetric-key, azure-iot-security-x509), each
 * registering with the same DPS-like responder: the CONNECT (client id, user name up to
 * the SDK's `&ClientVersion=`, the password's form: a SAS for the same resource and key
 * name, valid for the same key), the subscription, topics and QoS, bodies, and over
 * HTTPS the method, path, query and the headers that matter; and the same answers
 * accepted by both. The SDK runs in a child process (test/support/azure-sdk-device.ts);
 * its HTTP transport always connects to port 443, so the responder listens there, on a
 * random 127.a.b.c of its own (tests run as root).
 */
import { after, before, describe, it } from "mocha";
import assert from "node:assert/strict";
import { join } from "node:path";
import { attemptAzureDps } from "../../../lib/dialects/azure-dps/device-attempt";
import { prepareAzureDevice } from "../../../lib/dialects/azure-dps/device-prepare";
import { dpsResource, parseSas, verifySas } from "../../../lib/dialects/azure-dps/sas";
import type { AzureAttestation } from "../../../lib/dialects/azure-dps/settings";
import { parseMqttUserName } from "../../../lib/dialects/azure-dps/wire";
import { ProvisioningError } from "../../../lib/model/errors";
import type { ProvisioningResult } from "../../../lib/model/result";
import {
  assignedState,
  assigningThenAssigned,
  startAzureResponder,
  type AzureResponder,
  type Seen,
} from "../../support/azure-responder";
import type { SdkRun } from "../../support/azure-sdk-device";
import { makeTestPki } from "../../support/pki";
import { run } from "../../support/process";

const ID_SCOPE = "0ne00SDK001";
const KEY = Buffer.alloc(32, 5).toString("base64");
const SDK_SCRIPT = join(__dirname, "..", "..", "support", "azure-sdk-device.js");
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/u;

interface SdkOutcome {
  ok: boolean;
  result?: { assignedHub?: string; deviceId?: string; payload?: unknown; status?: string };
  message?: string;
}

describe("Azure DPS device side: the same wire as Microsoft's Node SDK", () => {
  const pki = makeTestPki("Azure SDK wire");
  let r: AzureResponder;
  let serial = 0;

  before(async function () {
    try {
      r = await startAzureResponder({ pki, httpsPort: 443 });
    } catch (err) {
      // The SDK's HTTP transport always connects to 443, which only root may bind (tests
      // run as root here and on CI); elsewhere the comparison cannot run.
      if ((err as { code?: unknown }).code === "EACCES") this.skip();
      throw err;
    }
  });
  after(async () => {
    await r?.stop();
  });

  async function sdk(o: Omit<SdkRun, "host" | "idScope">): Promise<{ out: SdkOutcome; seen: Seen[] }> {
    const from = r.seen.length;
    const host = o.transport === "mqtt" ? r.mqttHost : r.ip;
    const arg: SdkRun = { ...o, host, idScope: ID_SCOPE };
    const done = await run(process.execPath, [SDK_SCRIPT, JSON.stringify(arg)], {
      env: { ...process.env, NODE_EXTRA_CA_CERTS: pki.caCertPath, DEBUG: "" },
    });
    const line = done.stdout.toString("utf8").trim().split("\n").pop() ?? "";
    let out: SdkOutcome;
    try {
      out = JSON.parse(line) as SdkOutcome;
    } catch {
      assert.fail(`the SDK printed no result (exit ${done.code}): ${done.stderr.slice(0, 2000)}`);
    }
    return { out, seen: r.seen.slice(from) };
  }

  async function ours(
    transport: "mqtt" | "https",
    registrationId: string,
    o: { attestation?: AzureAttestation; payload?: unknown; x509?: { cert: string; key: string } } = {},
  ): Promise<{ res?: ProvisioningResult; err?: ProvisioningError; seen: Seen[] }> {
    const from = r.seen.length;
    const p = prepareAzureDevice(
      {
        host: transport === "mqtt" ? r.mqttHost : r.httpsHost,
        transport,
        idScope: ID_SCOPE,
        attestation: o.attestation ?? "symmetric-key",
        key: o.x509 ? undefined : KEY,
        payload: o.payload,
        clientCertificate: o.x509?.cert,
      },
      registrationId,
    );
    try {
      const res = await attemptAzureDps(p, {
        signal: new AbortController().signal,
        timeoutMs: 10_000,
        tls: { ca: pki.caCert, ...(o.x509 ?? {}) },
      });
      return { res, seen: r.seen.slice(from) };
    } catch (err) {
      assert.ok(err instanceof ProvisioningError, String(err));
      return { err, seen: r.seen.slice(from) };
    }
  }

  /** A request with its request and operation ids replaced, for comparing two clients. */
  function shape(s: Seen) {
    let topic = s.topic;
    let url = s.url;
    if (s.rid) topic = topic?.split(encodeURIComponent(s.rid)).join("{rid}");
    if (s.operationId) {
      topic = topic?.split(encodeURIComponent(s.operationId)).join("{op}");
      url = url?.split(encodeURIComponent(s.operationId)).join("{op}");
    }
    const body = s.kind === "register" ? (JSON.parse(s.body) as unknown) : s.body;
    return { kind: s.kind, transport: s.transport, topic, qos: s.qos, method: s.method, url, body };
  }

  /** Both tokens: SAS for the same resource and key name, both valid for KEY, both for about an hour. */
  function assertSameToken(sdkToken: string | undefined, ourToken: string | undefined, regId: string) {
    const a = parseSas(sdkToken);
    const b = parseSas(ourToken);
    assert.ok(a && b, `two SAS tokens: ${String(sdkToken).slice(0, 30)} / ${String(ourToken).slice(0, 30)}`);
    assert.equal(b.srAsSent, a.srAsSent);
    assert.equal(b.resource, dpsResource(ID_SCOPE, regId));
    assert.equal(b.keyName, a.keyName);
    assert.ok(Math.abs(a.expiresAtS - b.expiresAtS) < 600, `expiries ${a.expiresAtS} and ${b.expiresAtS}`);
    for (const t of [sdkToken, ourToken])
      assert.deepEqual(verifySas(t, dpsResource(ID_SCOPE, regId), [KEY], Date.now()), {
        ok: true,
        keyIndex: 0,
      });
  }

  const script = () =>
    assigningThenAssigned({
      pollsBeforeAssigned: 1,
      state: (id) => assignedState(id, { payload: { welcome: true } }),
    });

  it("MQTT, symmetric key: the same CONNECT, subscription, topics, QoS and bodies; the same answers accepted", async () => {
    r.script = script();
    const regId = `sdk-mqtt-${++serial}`;
    const payload = { model: "m1", n: 2 };
    const c0 = r.connects.length;
    const s0 = r.subscriptions.length;
    const theirs = await sdk({ transport: "mqtt", registrationId: regId, key: KEY, payload });
    assert.ok(theirs.out.ok, theirs.out.message);
    const c1 = r.connects.length;
    const s1 = r.subscriptions.length;
    const mine = await ours("mqtt", regId, { payload });
    assert.ok(mine.res, mine.err?.message);

    assert.equal(c1 - c0, 1);
    assert.equal(r.connects.length - c1, 1);
    const [a, b] = [r.connects[c0], r.connects[c1]];
    assert.equal(b.clientId, a.clientId);
    assert.equal(b.clientId, regId);
    const [ua, ub] = [parseMqttUserName(a.username ?? ""), parseMqttUserName(b.username ?? "")];
    assert.ok(ua && ub);
    assert.match(ua.extra.ClientVersion ?? "", /^azure-iot-provisioning-device\//u);
    assert.equal(b.username, (a.username ?? "").split("&ClientVersion=")[0]);
    assert.deepEqual({ ...ub, extra: {} }, { ...ua, extra: {} });
    assertSameToken(a.password, b.password, regId);
    assert.equal(b.protocolVersion, a.protocolVersion);
    assert.equal(b.clean, a.clean);
    assert.equal(b.keepalive, a.keepalive);
    assert.deepEqual(r.subscriptions.slice(s1), r.subscriptions.slice(s0, s1));

    assert.deepEqual(mine.seen.map(shape), theirs.seen.map(shape));
    for (const s of [...theirs.seen, ...mine.seen]) assert.match(s.rid ?? "", UUID);

    assert.equal(mine.res.configuration.hubId, theirs.out.result?.assignedHub);
    assert.equal(mine.res.device.id, theirs.out.result?.deviceId);
    assert.deepEqual(mine.res.configuration.payload, theirs.out.result?.payload);
  });

  it("HTTPS, symmetric key: the same method, path, query, headers and bodies; the same answers accepted", async () => {
    r.script = script();
    const regId = `sdk-https-${++serial}`;
    const payload = { model: "m2" };
    const theirs = await sdk({ transport: "https", registrationId: regId, key: KEY, payload });
    assert.ok(theirs.out.ok, theirs.out.message);
    const mine = await ours("https", regId, { payload });
    assert.ok(mine.res, mine.err?.message);

    assert.deepEqual(mine.seen.map(shape), theirs.seen.map(shape));
    for (let i = 0; i < theirs.seen.length; i++) {
      const [a, b] = [theirs.seen[i].headers ?? {}, mine.seen[i].headers ?? {}];
      for (const h of ["accept", "content-type"]) assert.equal(b[h], a[h], h);
      assertSameToken(String(a.authorization), String(b.authorization), regId);
      assert.match(String(a["user-agent"]), /^azure-iot-provisioning-device\//u);
      assert.equal(b["content-length"], a["content-length"]);
    }
    assert.equal(mine.res.configuration.hubId, theirs.out.result?.assignedHub);
    assert.equal(mine.res.device.id, theirs.out.result?.deviceId);
    assert.deepEqual(mine.res.configuration.payload, theirs.out.result?.payload);
  });

  for (const transport of ["mqtt", "https"] as const) {
    it(`${transport}, X.509: no password or Authorization, the client certificate presented, CN = registration id`, async () => {
      r.script = script();
      const regId = `sdk-x509-${transport}-${++serial}`;
      const client = pki.issueClient(regId);
      const c0 = r.connects.length;
      const theirs = await sdk({
        transport,
        registrationId: regId,
        x509: { cert: client.cert, key: client.key },
      });
      assert.ok(theirs.out.ok, theirs.out.message);
      const c1 = r.connects.length;
      const mine = await ours(transport, regId, {
        attestation: "x509",
        x509: { cert: client.cert, key: client.key },
      });
      assert.ok(mine.res, mine.err?.message);
      for (const s of [...theirs.seen, ...mine.seen]) {
        assert.equal(s.token, undefined);
        assert.equal(s.peerCn, regId);
      }
      if (transport === "mqtt") {
        const [a, b] = [r.connects[c0], r.connects[c1]];
        assert.equal(b.clientId, a.clientId);
        assert.equal(b.username, (a.username ?? "").split("&ClientVersion=")[0]);
        assert.equal(a.password, undefined);
        assert.equal(b.password, undefined);
      }
      assert.deepEqual(mine.seen.map(shape), theirs.seen.map(shape));
      assert.equal(mine.res.credentials.type, "X509_CERTIFICATE");
    });
  }

  it("throttling (429 with retry-after) and answers for other rids: both wait and go on the same way", async () => {
    const inner = script();
    // The first poll of each connection is throttled.
    const throttled = new WeakSet<object>();
    r.script = (req, i) => {
      const conn = req.connect ?? {};
      if (req.kind === "status" && !throttled.has(conn)) {
        throttled.add(conn);
        return { status: 429, retryAfterS: 1, body: { errorCode: 429001, message: "throttled" } };
      }
      const reply = inner(req, i);
      return reply && { ...reply, before: [{ status: 500, rid: "not-yours", body: "x" }] };
    };
    const regId = `sdk-429-${++serial}`;
    const theirs = await sdk({ transport: "mqtt", registrationId: regId, key: KEY });
    assert.ok(theirs.out.ok, theirs.out.message);
    const mine = await ours("mqtt", regId);
    assert.ok(mine.res, mine.err?.message);
    assert.deepEqual(
      mine.seen.map((s) => s.kind),
      theirs.seen.map((s) => s.kind),
    );
    for (const seen of [theirs.seen, mine.seen]) {
      const i = seen.findIndex((s) => s.kind === "status");
      assert.ok(seen[i + 1].at - seen[i].at >= 990, `waited ${seen[i + 1].at - seen[i].at} ms after 429`);
    }
  });

  it('"failed" with an error: both refuse', async () => {
    r.script = (req) =>
      req.kind === "register"
        ? { status: 202, retryAfterS: 0, body: { operationId: "op-f", status: "assigning" } }
        : {
            status: 200,
            body: {
              operationId: "op-f",
              status: "failed",
              registrationState: {
                registrationId: "x",
                status: "failed",
                errorCode: 400209,
                errorMessage: "no hub",
              },
            },
          };
    const regId = `sdk-failed-${++serial}`;
    const theirs = await sdk({ transport: "mqtt", registrationId: regId, key: KEY });
    assert.equal(theirs.out.ok, false);
    const mine = await ours("mqtt", regId);
    assert.equal(mine.err?.code, "REFUSED");
    assert.match(mine.err?.message ?? "", /no hub, errorCode 400209/);
  });
});
