import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "mocha";
import { connectAsync } from "mqtt";
import {
  defaultKuraClientId,
  defaultKuraUsername,
  DENIED_AT_CONNECT,
  provisionKuraDevice,
  type KuraDeviceSettings,
} from "../../../lib/dialects/kura/device";
import { DEFAULT_TOPICS } from "../../../lib/dialects/kura/namespace";
import { packetSizeGuard } from "../../../lib/transports/mqtt-packet-guard";
import { ProvisioningError } from "../../../lib/model/errors";
import { AbortedError } from "../../../lib/retry/run";
import { startMosquitto, type Mosquitto } from "../../support/mosquitto";
import { KuraResponder, RESPONDER_FILTER } from "../../support/kura-responder";
import { makeTestPki, type TestPki } from "../../support/pki";

const CLIENT_ID = "00E04C681234";
const USERNAME = "00E04C681234-SN4711";
const PASSWORD = "provision-pass";

function coded(code: string, final: boolean, match?: RegExp, status?: string | number) {
  return (err: unknown) => {
    assert.ok(err instanceof ProvisioningError, String(err));
    assert.equal(err.code, code, err.message);
    assert.equal(err.final, final, err.message);
    if (match) assert.match(err.message, match);
    if (status !== undefined) assert.equal(err.status, status);
    assert.ok(!err.message.includes(PASSWORD), "the password is in the message");
    return true;
  };
}

describe("kura: the device side against Debian's mosquitto", () => {
  let broker: Mosquitto;
  let pki: TestPki;
  let foreign: TestPki;
  let responder: KuraResponder;
  let settings: KuraDeviceSettings;

  before(async () => {
    pki = makeTestPki("Kura account");
    foreign = makeTestPki("Someone else");
    const dir = mkdtempSync(join(tmpdir(), "kura-mosq-"));
    const passwd = join(dir, "passwd");
    execFileSync("mosquitto_passwd", ["-b", "-c", passwd, USERNAME, PASSWORD]);
    execFileSync("mosquitto_passwd", ["-b", passwd, "service", "service-pass"]);
    broker = await startMosquitto({
      extraConfig: `allow_anonymous false\npassword_file ${passwd}`,
      tls: { certPath: pki.serverCertPath, keyPath: pki.serverKeyPath },
    });
    const client = await connectAsync(broker.url, {
      username: "service",
      password: "service-pass",
      protocolVersion: 4,
      reconnectPeriod: 0,
    });
    await client.subscribeAsync(RESPONDER_FILTER, { qos: 1 });
    responder = new KuraResponder(
      client,
      () => ({
        certificateChain: [pki.serverCert, pki.caCert],
        configuration: {
          brokerUrl: "mqtts://account.example.com:8883",
          accountName: "acme",
          username: "acme-device",
          password: "account-pass",
          clientId: CLIENT_ID,
        },
        applications: [{ name: "telemetry", version: "2.1.0", uri: "https://repo.example.com/telemetry.dp" }],
      }),
      [foreign.serverCert, foreign.caCert],
    );
    settings = {
      brokerUrl: broker.url,
      accountName: "acme-provision",
      clientId: CLIENT_ID,
      username: USERNAME,
      password: PASSWORD,
      activationKey: "Zq7nP4kVt2xWb9sLc3mRd8yFh5jGa6eU",
      identity: {
        modelName: "Node-RED",
        serialNumber: "SN4711",
        firmwareVersion: "4.1.0",
        osVersion: "6.1",
        applicationIds: ["PROV-V1"],
      },
      caAuthentication: true,
      trustedCas: [pki.caCert],
    };
  });

  after(async () => {
    await responder?.client.endAsync();
    await broker?.stop();
  });

  it("connects, asks, receives the chain, configuration and applications, says it holds them, and disconnects", async () => {
    responder.behaviour = "answer";
    let requesting = 0;
    const result = await provisionKuraDevice(settings, {
      timeoutMs: 10_000,
      onRequesting: () => requesting++,
    });
    assert.equal(requesting, 1);
    const seen = responder.requests.at(-1)!;
    assert.equal(seen.topic, `$EDC/acme-provision/${CLIENT_ID}/PROV-V1/EXEC/provision`);
    assert.equal(seen.request.requesterClientId, CLIENT_ID);
    assert.equal(seen.request.activationKey, settings.activationKey);
    assert.deepEqual(seen.request.identity, settings.identity);
    await responder.completion(seen.request.requestId);
    assert.equal(
      responder.completed.at(-1)!.topic,
      `$EDC/acme-provision/${CLIENT_ID}/PROV-V1/EXEC/provisioned`,
    );
    assert.deepEqual(
      { ...result, obtainedAt: "" },
      {
        dialect: "kura",
        endpoint: broker.url,
        device: { name: CLIENT_ID, id: CLIENT_ID },
        proof: "provision-request",
        credentials: {
          type: "MQTT_BASIC",
          clientId: CLIENT_ID,
          username: "acme-device",
          password: "account-pass",
          caCertificates: [pki.serverCert, pki.caCert],
        },
        configuration: {
          servers: [{ uri: "mqtts://account.example.com:8883" }],
          accountName: "acme",
          applications: [
            { name: "telemetry", version: "2.1.0", uri: "https://repo.example.com/telemetry.dp" },
          ],
        },
        obtainedAt: "",
        reused: false,
      },
    );
    assert.ok(!Number.isNaN(Date.parse(result.obtainedAt)));
  });

  it("every attempt asks with a fresh request id", async () => {
    responder.behaviour = "answer";
    await provisionKuraDevice({ ...settings, caAuthentication: false }, { timeoutMs: 10_000 });
    await provisionKuraDevice({ ...settings, caAuthentication: false }, { timeoutMs: 10_000 });
    const [a, b] = responder.requests.slice(-2).map((s) => s.request.requestId);
    assert.notEqual(a, b);
  });

  it("a refused CONNECT (wrong password, unknown user) is DENIED in Everyware's words, not a network error", async () => {
    const denied = new RegExp(DENIED_AT_CONNECT);
    await assert.rejects(
      provisionKuraDevice({ ...settings, password: "wrong" }, { timeoutMs: 10_000 }),
      coded("DENIED", true, denied),
    );
    await assert.rejects(
      provisionKuraDevice({ ...settings, username: "nobody", password: "x" }, { timeoutMs: 10_000 }),
      coded("DENIED", true, denied),
    );
  });

  it("ca-authentication: a chain that does not end in the trusted CA is refused with its reason; off, it is taken", async () => {
    responder.behaviour = "untrusted";
    await assert.rejects(
      provisionKuraDevice(settings, { timeoutMs: 10_000 }),
      coded(
        "TLS",
        true,
        /ca-authentication refused the answer: the certificate chain does not end in a trusted root/,
        "CHAIN_UNTRUSTED",
      ),
    );
    const taken = await provisionKuraDevice({ ...settings, caAuthentication: false }, { timeoutMs: 10_000 });
    assert.deepEqual(taken.credentials.caCertificates, [foreign.serverCert, foreign.caCert]);
  });

  it("the service's refusal carries its response code; an answer that is not KuraPayload or lacks the configuration is INVALID_ANSWER", async () => {
    responder.behaviour = "refuse";
    await assert.rejects(
      provisionKuraDevice(settings, { timeoutMs: 10_000 }),
      coded("DENIED", true, /403: wrong activation key/, 403),
    );
    responder.behaviour = "garbage";
    await assert.rejects(
      provisionKuraDevice(settings, { timeoutMs: 10_000 }),
      coded("INVALID_ANSWER", true, /does not inflate/),
    );
    responder.behaviour = "no-configuration";
    await assert.rejects(
      provisionKuraDevice(settings, { timeoutMs: 10_000 }),
      coded("INVALID_ANSWER", true, /no account configuration/),
    );
  });

  it("no answer is a TIMEOUT that may be retried; an abort stops the attempt", async () => {
    responder.behaviour = "silent";
    await assert.rejects(provisionKuraDevice(settings, { timeoutMs: 500 }), coded("TIMEOUT", false));
    const ac = new AbortController();
    const attempt = provisionKuraDevice(settings, {
      timeoutMs: 10_000,
      signal: ac.signal,
      onRequesting: () => ac.abort(),
    });
    await assert.rejects(attempt, (err) => err instanceof AbortedError);
  });

  it("settings that cannot work are CONFIG before any connection", async () => {
    const bad: Array<Partial<KuraDeviceSettings>> = [
      { brokerUrl: "http://127.0.0.1:1" },
      { brokerUrl: "mqtt://user:pw@127.0.0.1:1" },
      { clientId: "a/b" },
      { accountName: "#" },
      { password: "" },
      { trustedCas: [] },
      { trustedCas: ["not a certificate"] },
      { topics: { ...DEFAULT_TOPICS, reply: "$EDC/{account}/{clientId}/x" } },
    ];
    for (const b of bad)
      await assert.rejects(
        provisionKuraDevice({ ...settings, ...b }, { timeoutMs: 1000 }),
        coded("CONFIG", true),
      );
  });

  it("the default client id is the main interface's MAC without colons, upper case; the user name adds the serial number", async () => {
    const nic = (mac: string, family: "IPv4" | "IPv6", internal = false) => ({
      address: family === "IPv4" ? "10.0.0.2" : "fe80::1",
      netmask: "255.255.255.0",
      family,
      mac,
      internal,
      cidr: null,
      ...(family === "IPv6" ? { scopeid: 0 } : {}),
    });
    const ifaces = {
      lo: [nic("00:00:00:00:00:00", "IPv4", true)],
      wlan0: [nic("aa:bb:cc:00:00:01", "IPv6")],
      eth0: [nic("00:e0:4c:68:12:34", "IPv4"), nic("00:e0:4c:68:12:34", "IPv6")],
    } as unknown as Parameters<typeof defaultKuraClientId>[1];
    assert.equal(defaultKuraClientId(undefined, ifaces), "00E04C681234");
    assert.equal(defaultKuraClientId("wlan0", ifaces), "AABBCC000001");
    assert.equal(defaultKuraClientId("nope", ifaces), "00E04C681234");
    assert.equal(defaultKuraClientId(undefined, { lo: ifaces!.lo }), undefined);
    assert.equal(defaultKuraUsername("00E04C681234", "SN4711"), "00E04C681234-SN4711");
    assert.equal(defaultKuraUsername("00E04C681234"), "00E04C681234");
  });

  it("a packet larger than the answer's limit drops the connection at its header, before mqtt.js reads it", async () => {
    responder.behaviour = "huge";
    await assert.rejects(
      provisionKuraDevice(settings, { timeoutMs: 10_000 }),
      coded("TOO_LARGE", true, /sent an MQTT packet of \d+ bytes, more than 1114112/),
    );
    // The guard itself, fed one byte at a time and in one piece: a PUBLISH of 200 bytes
    // (remaining length 0xc8 0x01), then a PINGRESP, then a header announcing 2^21 bytes.
    const stream = Buffer.concat([
      Buffer.from([0x30, 0xc8, 0x01]),
      Buffer.alloc(200),
      Buffer.from([0xd0, 0x00]),
      Buffer.from([0x30, 0x80, 0x80, 0x80, 0x01]),
    ]);
    for (const pieces of [[stream], [...stream].map((b) => Buffer.from([b]))]) {
      const seen: Array<number | undefined> = [];
      const guard = packetSizeGuard(1000, (size) => seen.push(size));
      for (const p of pieces) guard(p);
      assert.deepEqual(seen, [2 ** 21]);
    }
    const seen: Array<number | undefined> = [];
    packetSizeGuard(1000, (size) => seen.push(size))(Buffer.from([0x30, 0xff, 0xff, 0xff, 0xff]));
    assert.deepEqual(seen, [undefined]);
    const none: Array<number | undefined> = [];
    packetSizeGuard(200, (size) => none.push(size))(stream.subarray(0, 205));
    assert.deepEqual(none, []);
  });

  it("mqtts: the provision broker's certificate is verified against the tls-config CA", async () => {
    responder.behaviour = "answer";
    const tlsSettings = { ...settings, brokerUrl: broker.tlsUrl! };
    const result = await provisionKuraDevice(tlsSettings, { timeoutMs: 10_000, tls: { ca: pki.caCert } });
    assert.equal(result.endpoint, broker.tlsUrl);
    assert.equal(result.credentials.username, "acme-device");
    await assert.rejects(
      provisionKuraDevice(tlsSettings, { timeoutMs: 10_000, tls: { ca: foreign.caCert } }),
      coded("TLS", true),
    );
  });
});
