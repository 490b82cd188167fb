/**
 * The Kura serving side on the embedded broker, end to end with the package's own device
 * core (provisionKuraDevice) and MQTT.js for raw sessions: the round trip, every refused
 * CONNECT, the activation key, attempts and the privacy of answers.
 */
import assert from "node:assert/strict";
import { afterEach, before, describe, it } from "mocha";
import { connectAsync } from "mqtt";
import { provisionKuraDevice } from "../../../lib/dialects/kura/device";
import { DEFAULT_TOPICS, PROVISION_APP_ID, topicFor } from "../../../lib/dialects/kura/namespace";
import {
  ACCOUNT,
  ACTIVATION_KEY,
  accountPassword,
  device,
  PASSWORD,
  provisionLine,
  requestFor,
  usernameOf,
  WRONG_KEY,
  WRONG_PASSWORD,
} from "../../support/kserve-peers";
import { startKura, type StartedKura } from "../../support/kserve-service";
import { MemoryBackend } from "../../../lib/stores/memory";
import { makeTestPki, type TestPki } from "../../support/pki";

describe("kura serving: embedded broker", () => {
  let pki: TestPki;
  const started: StartedKura[] = [];
  before(() => {
    pki = makeTestPki("KuraServe");
  });
  afterEach(async () => {
    await Promise.allSettled(started.splice(0).map((s) => s.stop()));
  });

  async function start(over: Parameters<typeof startKura>[1] = {}): Promise<StartedKura> {
    const s = await startKura(undefined, over);
    started.push(s);
    return s;
  }
  const status = async (s: StartedKura, clientId: string) =>
    ((await s.running.manage("get", { clientId })) as { request?: { status: string; attempts?: number } })
      .request;
  const secretsIn = (text: string, clientId: string) =>
    [PASSWORD, WRONG_PASSWORD, ACTIVATION_KEY, WRONG_KEY, accountPassword(clientId)].filter((x) =>
      text.includes(x),
    );

  it("round trip: the device gets the chain, the configuration and the applications; the request is consumed", async () => {
    const s = await start();
    await s.running.manage("add", requestFor("rt-1", { certificateChain: pki.caCert }));
    const port = s.running.port as number;
    const r = await provisionKuraDevice(
      device(port, "rt-1", { caAuthentication: true, trustedCas: [pki.caCert] }),
      {
        timeoutMs: 15000,
      },
    );
    assert.equal(r.credentials.password, accountPassword("rt-1"));
    assert.equal(r.credentials.username, "acme-rt-1");
    assert.equal(r.configuration.servers?.[0].uri, "mqtt://account-broker.example:1883");
    assert.equal(r.configuration.accountName, "ACME");
    assert.deepEqual(r.configuration.applications, [
      { name: "org.example.app", version: "1.0.0", uri: "https://example.org/app.dp" },
    ]);
    assert.equal(r.credentials.caCertificates?.length, 1);
    assert.equal((await status(s, "rt-1"))?.status, "COMPLETED");
    // Consumed: the same CONNECT again is refused.
    assert.match(await provisionLine(port, "rt-1"), /^DENIED CONNACK 5/);
    assert.equal(s.audits.at(-1)?.reason, "already-provisioned");
    const listed = JSON.stringify(await s.running.manage("list", {}));
    assert.match(listed, /"clientId":"rt-1","status":"COMPLETED"/);
    const shown = JSON.stringify([await s.running.manage("get", { clientId: "rt-1" }), listed, s.audits]);
    assert.deepEqual(secretsIn(shown, "rt-1"), []);
    assert.deepEqual(
      s.audits.map((e) => e.outcome),
      ["provisioned", "refused"],
    );
  });

  it("refuses at CONNECT: an unknown client id (5), a wrong password or user name (4), an expired request (5)", async () => {
    const s = await start();
    const port = s.running.port as number;
    assert.match(await provisionLine(port, "nobody-1"), /^DENIED CONNACK 5/);
    assert.deepEqual(
      [s.audits.at(-1)?.outcome, s.audits.at(-1)?.reason, s.audits.at(-1)?.deviceName],
      ["refused", "not-found", "nobody-1"],
    );
    await s.running.manage("add", requestFor("cx-1"));
    assert.match(await provisionLine(port, "cx-1", { password: WRONG_PASSWORD }), /^DENIED CONNACK 4/);
    assert.match(await provisionLine(port, "cx-1", { username: "someone-else" }), /^DENIED CONNACK 4/);
    assert.equal((await status(s, "cx-1"))?.attempts, 2);
    await s.running.manage(
      "add",
      requestFor("cx-old", { expiresOn: new Date(Date.now() - 3600000).toISOString() }),
    );
    assert.match(await provisionLine(port, "cx-old"), /^DENIED CONNACK 5/);
    assert.equal((await status(s, "cx-old"))?.status, "ABANDONED");
    assert.equal(s.audits.at(-1)?.reason, "expired");
    await s.running.manage(
      "add",
      requestFor("cx-later", { activatesOn: new Date(Date.now() + 3600000).toISOString() }),
    );
    assert.match(await provisionLine(port, "cx-later"), /^DENIED CONNACK 5/);
    assert.equal((await status(s, "cx-later"))?.status, "CREATED");
    // The right credentials still work for the request that was tried with wrong ones.
    assert.match(await provisionLine(port, "cx-1"), /^OK /);
    assert.deepEqual(secretsIn(JSON.stringify(s.audits), "cx-1"), []);
  });

  it("a wrong activation key is refused 403 and counted; retry-max-attempts exhausted makes the request FAILED", async () => {
    const s = await start({ failureLimit: { enabled: true, slowAfter: 100, lockAfter: 100 } });
    const port = s.running.port as number;
    await s.running.manage("add", requestFor("ak-1", { retryMaxAttempts: 2 }));
    assert.match(await provisionLine(port, "ak-1", { activationKey: WRONG_KEY }), /^DENIED 403/);
    assert.equal(s.audits.at(-1)?.reason, "wrong-activation-key");
    assert.deepEqual(await status(s, "ak-1").then((r) => [r?.status, r?.attempts]), ["CREATED", 1]);
    assert.match(await provisionLine(port, "ak-1", { activationKey: undefined }), /^DENIED 403/);
    assert.equal((await status(s, "ak-1"))?.status, "FAILED");
    // No attempts left: the right key does not even get a session.
    assert.match(await provisionLine(port, "ak-1"), /^DENIED CONNACK 5/);
    assert.equal(s.audits.at(-1)?.reason, "failed");
    assert.deepEqual(secretsIn(JSON.stringify(s.audits), "ak-1"), []);
  });

  it("wrong activation keys count against the failure guard: locked, then refused at CONNECT", async () => {
    const s = await start({ failureLimit: { enabled: true, slowAfter: 100, lockAfter: 2, lockMs: 60000 } });
    const port = s.running.port as number;
    await s.running.manage("add", requestFor("lk-1", { retryMaxAttempts: -1 }));
    for (let i = 0; i < 2; i++)
      assert.match(await provisionLine(port, "lk-1", { activationKey: WRONG_KEY }), /^DENIED 403/);
    assert.ok(
      s.audits.some((e) => e.outcome === "locked"),
      JSON.stringify(s.audits),
    );
    assert.match(await provisionLine(port, "lk-1"), /^DENIED CONNACK 5/);
    assert.ok(s.running.counts().locked >= 1);
  });

  it("a generated activation key is handed back once and works; without the key the device is refused", async () => {
    const s = await start();
    const port = s.running.port as number;
    const added = (await s.running.manage("add", requestFor("gen-1", { activationKey: "generate" }))) as {
      activationKey?: string;
    };
    assert.match(added.activationKey ?? "", /^[A-Za-z0-9]{32}$/);
    assert.ok(
      !JSON.stringify(await s.running.manage("get", { clientId: "gen-1" })).includes(
        added.activationKey as string,
      ),
    );
    assert.match(await provisionLine(port, "gen-1", { activationKey: ACTIVATION_KEY }), /^DENIED 403/);
    assert.match(await provisionLine(port, "gen-1", { activationKey: added.activationKey }), /^OK /);
  });

  it("dialog requests: a redeploy keeps a consumed one consumed; one taken out of the dialog is gone", async () => {
    const store = new MemoryBackend();
    const first = await startKura(undefined, { store }, [requestFor("dl-1"), requestFor("dl-2")]);
    started.push(first);
    await first.running.manage("add", requestFor("dl-msg"));
    assert.match(await provisionLine(first.running.port as number, "dl-1"), /^OK /);
    await first.stop();
    const second = await startKura(undefined, { store }, [requestFor("dl-1")]);
    started.push(second);
    const port = second.running.port as number;
    assert.match(await provisionLine(port, "dl-1"), /^DENIED CONNACK 5/);
    assert.equal((await status(second, "dl-1"))?.status, "COMPLETED");
    assert.equal(await status(second, "dl-2"), undefined);
    assert.match(await provisionLine(port, "dl-2"), /^DENIED CONNACK 5/);
    // Added by message, not by the dialog: kept.
    assert.match(await provisionLine(port, "dl-msg"), /^OK /);
  });

  it("a session may not read or write another device's topics", async () => {
    const s = await start();
    const url = `mqtt://127.0.0.1:${s.running.port as number}`;
    await s.running.manage("add", requestFor("pv-a"));
    await s.running.manage("add", requestFor("pv-b"));
    const b = await connectAsync(url, {
      protocolVersion: 4,
      clientId: "pv-b",
      username: usernameOf("pv-b"),
      password: PASSWORD,
      reconnectPeriod: 0,
    });
    try {
      const values = { account: ACCOUNT, clientId: "pv-a", appId: PROVISION_APP_ID, requestId: "r1" };
      for (const filter of [
        topicFor(DEFAULT_TOPICS.reply, values),
        `$EDC/${ACCOUNT}/+/${PROVISION_APP_ID}/REPLY/#`,
        "#",
      ]) {
        // MQTT.js rejects a SUBACK of 0x80 (MQTT 3.1.1, 3.9.3: failure).
        const refused = await b.subscribeAsync(filter, { qos: 1 }).then(
          (g) => g[0].qos === 128,
          (err: Error) => /Subscribe error/.test(err.message),
        );
        assert.ok(refused, filter);
      }
      const own = topicFor(DEFAULT_TOPICS.reply, { ...values, clientId: "pv-b" });
      assert.equal((await b.subscribeAsync(own, { qos: 1 }))[0].qos, 1);
      let seen = 0;
      b.on("message", () => seen++);
      assert.match(await provisionLine(s.running.port as number, "pv-a"), /^OK /);
      // pv-b heard nothing of pv-a's answer; publishing to pv-a's request topic ends pv-b's session.
      const closed = new Promise<void>((resolve) => b.once("close", () => resolve()));
      b.publish(topicFor(DEFAULT_TOPICS.request, values), Buffer.from("x"), { qos: 1 });
      await closed;
      assert.equal(seen, 0);
    } finally {
      b.end(true);
    }
  });
});
