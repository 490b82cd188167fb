/**
 * The Azure DPS MQTT listener against peers that do what Microsoft's SDK never does,
 * written with MQTT.js over TLS: CONNECTs with another scope, another client id, a wrong
 * token; subscriptions and publishes outside DPS's topics; two devices on one port, each
 * hearing only its own answers; a request past the size limit; a connection that says
 * nothing; plain MQTT on the TLS port.
 */
import assert from "node:assert/strict";
import { once } from "node:events";
import { connect as tcpConnect } from "node:net";
import { connect as tlsConnect } from "node:tls";
import { readFileSync } from "node:fs";
import { after, before, describe, it } from "mocha";
import { connectAsync, type IClientOptions, type MqttClient } from "mqtt";
import { deriveDeviceKey, dpsResource, signSas } from "../../../lib/dialects/azure-dps/sas";
import {
  mqttUserName,
  operationStatusTopic,
  parseResponseTopic,
  registerTopic,
  RESPONSE_FILTER,
} from "../../../lib/dialects/azure-dps/wire";
import { makeAzurePki, randomLoopback, type AzurePki } from "../../support/azure-dps-fixtures";
import {
  enrollments,
  HUB_A,
  HUB_B,
  ID_SCOPE,
  KEYS,
  startTestService,
  type TestService,
} from "../../support/azure-dps-service";

describe("Azure DPS serving over MQTT: hostile and careless peers", () => {
  let ip = "";
  let pki: AzurePki;
  let s: TestService;
  const clients: MqttClient[] = [];

  before(async () => {
    ip = randomLoopback();
    pki = makeAzurePki(ip);
    s = await startTestService({
      idScope: ID_SCOPE,
      linkedHubs: [HUB_A, HUB_B],
      enrollments: enrollments(pki).filter((e) => e.allocation !== "custom"),
      retryAfterS: 0,
      mqtt: {
        host: ip,
        port: 0,
        tls: { key: pki.serverKey, cert: pki.serverCert },
        limits: { connectTimeoutMs: 500 },
      },
    });
  });
  after(async () => {
    await Promise.allSettled(clients.map((c) => c.endAsync(true)));
    await s?.stop();
  });

  const port = () => s.running.mqttPort as number;
  const tokenFor = (id: string) =>
    signSas(dpsResource(ID_SCOPE, id), deriveDeviceKey(KEYS.groupPrimary, id), Date.now() / 1000 + 600);
  const options = (id: string, over: Partial<IClientOptions> = {}): IClientOptions => ({
    host: ip,
    port: port(),
    protocol: "mqtts",
    ca: readFileSync(pki.serverCaPath),
    clientId: id,
    username: `${mqttUserName(ID_SCOPE, id)}&ClientVersion=${encodeURIComponent("test/1.0")}`,
    password: tokenFor(id),
    protocolVersion: 4,
    reconnectPeriod: 0,
    connectTimeout: 5000,
    ...over,
  });
  const open = async (id: string, over: Partial<IClientOptions> = {}) => {
    const c = await connectAsync(options(id, over));
    clients.push(c);
    return c;
  };
  const refusedWith = async (id: string, over: Partial<IClientOptions>) => {
    const err = (await connectAsync(options(id, over)).then(
      () => assert.fail("connected"),
      (e: unknown) => e,
    )) as { code?: number };
    return err.code;
  };

  it("refuses a CONNECT of another id scope (5), another client id (4), a wrong token (5)", async () => {
    assert.equal(await refusedWith("m-1", { username: mqttUserName("0neOTHER", "m-1") }), 5);
    assert.equal(await refusedWith("m-1", { clientId: "m-2" }), 4);
    assert.equal(await refusedWith("m-1", { password: tokenFor("m-2") }), 5);
    assert.equal(s.audits.at(-1)?.reason, "unauthorized");
  });

  it("takes only the DPS response filter; a publish elsewhere closes the session", async () => {
    const c = await open("m-3");
    // MQTT.js rejects a SUBACK of 128 (failure, MQTT 3.1.1 section 3.9.3).
    await assert.rejects(c.subscribeAsync("#", { qos: 1 }), /Subscribe error/u);
    await assert.rejects(c.subscribeAsync("$dps/registrations/res/+", { qos: 1 }), /Subscribe error/u);
    const ok = await c.subscribeAsync(RESPONSE_FILTER, { qos: 1 });
    assert.equal(ok[0].qos, 1);
    const closed = new Promise<void>((resolve) => c.once("close", () => resolve()));
    c.publish("devices/m-3/messages/events/", "hello", { qos: 1 });
    await closed;
  });

  it("two devices on one port each hear only their own answers", async () => {
    const a = await open("m-4");
    const b = await open("m-5");
    const heard: Record<string, string[]> = { a: [], b: [] };
    const ended = (c: MqttClient, who: "a" | "b") =>
      new Promise<string>((resolve) =>
        c.on("message", (topic, payload) => {
          heard[who].push(topic);
          const body = JSON.parse(payload.toString()) as {
            status?: string;
            registrationState?: { registrationId: string };
          };
          if (body.status === "assigning") {
            const t = parseResponseTopic(topic);
            c.publish(
              operationStatusTopic(
                `${t?.rid}-poll`,
                (body as unknown as { operationId: string }).operationId,
              ),
              " ",
              { qos: 1 },
            );
          } else resolve(body.registrationState?.registrationId ?? "");
        }),
      );
    await a.subscribeAsync(RESPONSE_FILTER, { qos: 1 });
    await b.subscribeAsync(RESPONSE_FILTER, { qos: 1 });
    const doneA = ended(a, "a");
    const doneB = ended(b, "b");
    // The same rid on both: only the session an answer belongs to may get it.
    a.publish(registerTopic("1"), JSON.stringify({ registrationId: "m-4" }), { qos: 1 });
    b.publish(registerTopic("1"), JSON.stringify({ registrationId: "m-5" }), { qos: 1 });
    assert.deepEqual(await Promise.all([doneA, doneB]), ["m-4", "m-5"]);
    assert.equal(heard.a.length, 2);
    assert.equal(heard.b.length, 2);
  });

  it("a request larger than 64 KiB is answered 413 on the response topic", async () => {
    const c = await open("m-6");
    await c.subscribeAsync(RESPONSE_FILTER, { qos: 1 });
    const got = new Promise<[string, Buffer]>((resolve) => c.once("message", (t, p) => resolve([t, p])));
    c.publish(
      registerTopic("big"),
      JSON.stringify({ registrationId: "m-6", payload: "x".repeat(70 * 1024) }),
      { qos: 1 },
    );
    const [topic, payload] = await got;
    assert.equal(parseResponseTopic(topic)?.status, 413);
    assert.equal((JSON.parse(payload.toString()) as { errorCode: number }).errorCode, 413001);
  });

  it("a connection past its byte budget is cut", async () => {
    const c = await open("m-7");
    const closed = new Promise<void>((resolve) => c.once("close", () => resolve()));
    c.publish(registerTopic("huge"), Buffer.alloc(400 * 1024, 0x20), { qos: 0 });
    await closed;
  });

  it("a TLS connection that sends no CONNECT is closed, and plain MQTT on the TLS port too", async () => {
    const silent = tlsConnect({
      host: ip,
      port: port(),
      ca: readFileSync(pki.serverCaPath),
      servername: "localhost",
    });
    silent.on("error", () => undefined);
    await once(silent, "secureConnect");
    await once(silent, "close");
    const plain = tcpConnect({ host: ip, port: port() });
    plain.on("error", () => undefined);
    await once(plain, "connect");
    plain.write(
      Buffer.from([0x10, 0x0c, 0x00, 0x04, 0x4d, 0x51, 0x54, 0x54, 0x04, 0x02, 0x00, 0x3c, 0x00, 0x00]),
    );
    await once(plain, "close");
  });

  it("labels its listener 'mqtts :<port>'", () => {
    assert.deepEqual(s.running.labels, [`mqtts :${port()}`]);
  });
});

describe("Azure DPS serving over MQTT: failed proofs lock, floods are refused at CONNECT", () => {
  let ip = "";
  let pki: AzurePki;
  const started: TestService[] = [];
  before(() => {
    ip = randomLoopback();
    pki = makeAzurePki(ip);
  });
  after(async () => {
    await Promise.allSettled(started.map((t) => t.stop()));
  });

  const serve = async (over: Parameters<typeof startTestService>[1]) => {
    const t = await startTestService(
      {
        idScope: ID_SCOPE,
        linkedHubs: [HUB_A, HUB_B],
        enrollments: enrollments(pki).filter((e) => e.allocation !== "custom"),
        mqtt: { host: ip, port: 0, tls: { key: pki.serverKey, cert: pki.serverCert } },
      },
      over,
    );
    started.push(t);
    return t;
  };
  const connackOf = async (t: TestService, id: string, password: string) => {
    const opts: IClientOptions = {
      host: ip,
      port: t.running.mqttPort as number,
      protocol: "mqtts",
      ca: readFileSync(pki.serverCaPath),
      clientId: id,
      username: mqttUserName(ID_SCOPE, id),
      password,
      reconnectPeriod: 0,
    };
    try {
      const c = await connectAsync(opts);
      await c.endAsync(true);
      return 0;
    } catch (err) {
      return (err as { code?: number }).code;
    }
  };
  const token = (id: string, k: string) => signSas(dpsResource(ID_SCOPE, id), k, Date.now() / 1000 + 600);

  it("after the lock threshold the right key gets CONNACK 3 unread, audited 'locked'", async () => {
    const t = await serve({ failureLimit: { enabled: true, slowAfter: 100, lockAfter: 2, lockMs: 60000 } });
    const wrong = token("dev-individual", deriveDeviceKey(KEYS.groupPrimary, "x"));
    assert.equal(await connackOf(t, "dev-individual", wrong), 5);
    assert.equal(await connackOf(t, "dev-individual", wrong), 5);
    assert.equal(await connackOf(t, "dev-individual", token("dev-individual", KEYS.individualPrimary)), 3);
    assert.ok(t.audits.some((e) => e.outcome === "locked"));
    assert.ok(t.running.counts().locked >= 1);
  });

  it("CONNECTs past the per-address rate get CONNACK 3", async () => {
    const t = await serve({ rateLimit: { perSecond: 0.01, burst: 2 } });
    const good = token("dev-individual", KEYS.individualPrimary);
    const codes = [];
    for (let i = 0; i < 3; i++) codes.push(await connackOf(t, "dev-individual", good));
    assert.deepEqual(codes, [0, 0, 3]);
  });
});
