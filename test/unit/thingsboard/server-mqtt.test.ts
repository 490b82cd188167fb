import assert from "node:assert/strict";
import { createConnection } from "node:net";
import { join } from "node:path";
import { after, before, describe, it } from "mocha";
import { MqttClient, connect } from "mqtt";
import { startTbMqttServer, type TbMqttServer } from "../../../lib/dialects/thingsboard/server-mqtt";
import { startTbMqttAttached } from "../../../lib/dialects/thingsboard/server-mqtt-attached";
import { RateLimiter } from "../../../lib/service/rate-limit";
import { startMosquitto, type Mosquitto } from "../../support/mosquitto";
import { PROJECT_ROOT } from "../../support/node-red";
import { makeTestPki, type TestPki } from "../../support/pki";
import { run } from "../../support/process";
import { KEY, makeService, mqttDevice, nextMessages, request, SECRET } from "../../support/tbserve-fixtures";

const FAILURE = '{"status":"FAILURE","errorMsg":"Failed to provision device!"}';
const PAHO_DEVICE = join(PROJECT_ROOT, "test", "support", "tbserve-paho-device.py");

function pahoDevice(port: number, name: string, pki: TestPki, extra: Record<string, unknown> = {}) {
  return run("/usr/bin/python3", [PAHO_DEVICE, "localhost", String(port), name], {
    env: {
      ...process.env,
      THINGSBOARD_PROVISION_DEVICE_KEY: KEY,
      THINGSBOARD_PROVISION_DEVICE_SECRET: SECRET,
      THINGSBOARD_CA_CERT: pki.caCertPath,
      TBSERVE_EXTRA_JSON: JSON.stringify(extra),
    },
  });
}

function reply(out: { code: number | null; stdout: Buffer; stderr: string }): string {
  const line = out.stdout
    .toString()
    .split("\n")
    .find((l) => l.startsWith("REPLY "));
  assert.ok(line, `no reply (exit ${out.code}): ${out.stdout.toString()} ${out.stderr}`);
  return line.slice(6);
}

describe("ThingsBoard provisioning over MQTT (embedded aedes)", () => {
  let pki: TestPki;
  before(() => {
    pki = makeTestPki("TbServe");
  });

  it("provisions the Edge Gateway's paho device over TLS, two at the same moment", async () => {
    const { service, audits } = makeService();
    const server = await startTbMqttServer(service, {
      port: 0,
      host: "127.0.0.1",
      tls: { key: pki.serverKey, cert: pki.serverCert },
      closeAfterMs: 500,
    });
    try {
      const [a, b] = await Promise.all([
        pahoDevice(server.port, "paho-a", pki),
        pahoDevice(server.port, "paho-b", pki),
      ]);
      for (const [out, name] of [
        [a, "paho-a"],
        [b, "paho-b"],
      ] as const) {
        assert.equal(out.code, 0, out.stderr);
        const res = JSON.parse(reply(out));
        assert.equal(res.status, "SUCCESS");
        assert.equal(res.credentialsType, "ACCESS_TOKEN");
        assert.equal((await service.registry.get("fleet", name))?.credentials?.token, res.credentialsValue);
      }
      assert.deepEqual(
        audits.map((e) => e.transport),
        ["mqtt", "mqtt"],
      );
      assert.ok(audits.every((e) => e.remote === "127.0.0.1"));
      const again = await pahoDevice(server.port, "paho-a", pki);
      assert.equal(reply(again), FAILURE);
    } finally {
      await server.close();
    }
  });

  it("gives each of 20 simultaneous devices only its own answer", async () => {
    const { service } = makeService();
    const server = await startTbMqttServer(service, { port: 0, closeAfterMs: 1500 });
    try {
      const url = `mqtt://127.0.0.1:${server.port}`;
      const devices = await Promise.all(Array.from({ length: 20 }, () => mqttDevice(url)));
      devices.forEach((d, i) =>
        d.client.publish("/provision/request", request({ deviceName: `many-${i}` }), { qos: 1 }),
      );
      // Each session is closed by the server after its answer: everything it was sent has arrived.
      await Promise.all(devices.map((d) => d.closed));
      const tokens = new Set<string>();
      for (const [i, d] of devices.entries()) {
        assert.equal(d.messages.length, 1, `device ${i} got ${d.messages.length} messages`);
        const res = JSON.parse(d.messages[0].payload);
        assert.equal(
          (await service.registry.get("fleet", `many-${i}`))?.credentials?.token,
          res.credentialsValue,
        );
        tokens.add(res.credentialsValue);
      }
      assert.equal(tokens.size, 20);
    } finally {
      await server.close();
    }
  });

  it("a device that leaves after its answer takes its session along: nothing waits out Close after", async () => {
    const { service } = makeService();
    const server = await startTbMqttServer(service, { port: 0, closeAfterMs: 60000 });
    const url = `mqtt://127.0.0.1:${server.port}`;
    /** Until the server has seen what the devices did (its own hooks run on its sockets' events). */
    const settled = async (check: () => boolean) => {
      for (let i = 0; i < 1000 && !check(); i++) await new Promise((r) => setImmediate(r));
      return check();
    };
    try {
      const staying = await mqttDevice(url);
      staying.client.publish("/provision/request", request({ deviceName: "stays" }), { qos: 1 });
      await nextMessages(staying, 1);
      assert.ok(await settled(() => server.waitingToClose() === 1), "an answered session waits to be closed");
      for (let i = 0; i < 20; i++) {
        const d = await mqttDevice(url);
        d.client.publish("/provision/request", request({ deviceName: `leaves-${i}` }), { qos: 1 });
        await nextMessages(d, 1);
        await d.client.endAsync(true);
      }
      assert.ok(await settled(() => server.sessions() === 1), `sessions left: ${server.sessions()}`);
      // Before, each of the 20 kept a timer holding its session, socket and buffers for 60 s.
      assert.equal(server.waitingToClose(), 1, "only the device still connected is waited for");
      await staying.client.endAsync(true);
      assert.ok(await settled(() => server.waitingToClose() === 0));
    } finally {
      await server.close();
    }
  });

  it("refuses other users, other topics, wills, and garbage; keeps serving", async () => {
    const { service } = makeService();
    const server = await startTbMqttServer(service, { port: 0, closeAfterMs: 60000 });
    const url = `mqtt://127.0.0.1:${server.port}`;
    try {
      await assert.rejects(
        mqttDevice(url, { username: "tenant-admin" }),
        /Not authorized|closed before CONNACK/,
      );

      const watcher = await mqttDevice(url);
      // SUBACK 0x80: mqtt.js turns the refusal into an error; the session stays up.
      await assert.rejects(watcher.client.subscribeAsync("#", { qos: 0 }), /Subscribe error/);
      await assert.rejects(
        watcher.client.subscribeAsync("/provision/request", { qos: 0 }),
        /Subscribe error/,
      );
      assert.ok(watcher.client.connected);

      const bad = await mqttDevice(url);
      bad.client.publish("v1/devices/me/telemetry", "{}");
      await bad.closed;

      const forger = await mqttDevice(url, {
        will: {
          topic: "/provision/response",
          payload: Buffer.from('{"status":"SUCCESS"}'),
          qos: 0,
          retain: false,
        },
      });
      forger.client.stream.destroy();
      await forger.closed;

      const junk = await mqttDevice(url);
      junk.client.publish("/provision/request", "this is not json", { qos: 1 });
      assert.equal((await nextMessages(junk))[0].payload, FAILURE);

      const big = await mqttDevice(url);
      big.client.publish("/provision/request", request({ deviceName: "b".repeat(70 * 1024) }), { qos: 1 });
      assert.equal((await nextMessages(big))[0].payload, FAILURE);

      const huge = await mqttDevice(url);
      huge.client.publish("/provision/request", Buffer.alloc(1024 * 1024, 0x7b), { qos: 0 });
      await huge.closed;
      assert.equal(huge.messages.length, 0);

      const good = await mqttDevice(url);
      good.client.publish("/provision/request", request({ deviceName: "after-garbage" }), { qos: 1 });
      assert.equal(JSON.parse((await nextMessages(good))[0].payload).status, "SUCCESS");
      // The watcher (subscribed to /provision/response) saw none of the answers, nor the forged will.
      assert.equal(watcher.messages.length, 0);
      for (const d of [watcher, junk, big, good]) d.client.end(true);
    } finally {
      await server.close();
    }
  });

  it("survives a flood: sessions and remotes over their limits are cut, others are served", async () => {
    const { service, audits } = makeService();
    const violations: string[] = [];
    const server: TbMqttServer = await startTbMqttServer(service, {
      port: 0,
      closeAfterMs: 60000,
      connectLimiter: new RateLimiter({ perSecond: 0.001, burst: 6 }),
      onViolation: (what) => violations.push(what),
    });
    const url = `mqtt://127.0.0.1:${server.port}`;
    try {
      const flooder = await mqttDevice(url);
      for (let i = 0; i < 10; i++)
        flooder.client.publish("/provision/request", request({ deviceName: `flood-${i}` }), { qos: 0 });
      await flooder.closed;
      // The three allowed are answered, every later one gets FAILURE; then the session ends.
      assert.equal(flooder.messages.length, 10);
      assert.ok(flooder.messages.slice(0, 3).every((m) => JSON.parse(m.payload).status === "SUCCESS"));
      assert.ok(flooder.messages.slice(3).every((m) => m.payload === FAILURE));
      assert.ok(violations.includes("too many requests in one session"));

      const attempts = await Promise.allSettled(Array.from({ length: 8 }, () => mqttDevice(url, {}, false)));
      const refused = attempts.filter((a) => a.status === "rejected");
      assert.ok(refused.length >= 3, `only ${refused.length} of 8 connections refused`);
      // Refused promptly with CONNACK 3 (server unavailable), not closed unread.
      for (const r of refused)
        assert.match(String((r as PromiseRejectedResult).reason), /Server unavailable/);
      for (const a of attempts) if (a.status === "fulfilled") a.value.client.end(true);

      // Another remote (127.0.0.2 is loopback too) is served as usual.
      const other = new MqttClient(
        () => createConnection({ host: "127.0.0.1", port: server.port, localAddress: "127.0.0.2" }),
        {
          username: "provision",
          protocolVersion: 4,
          reconnectPeriod: 0,
        },
      );
      await new Promise<void>((resolve, reject) => {
        other.once("connect", () => resolve());
        other.once("error", reject);
      });
      await other.subscribeAsync("/provision/response", { qos: 1 });
      const got = new Promise<string>((resolve) => other.once("message", (_t, p) => resolve(p.toString())));
      other.publish("/provision/request", request({ deviceName: "calm" }), { qos: 1 });
      assert.equal(JSON.parse(await got).status, "SUCCESS");
      other.end(true);

      // At most the three requests the session was allowed made devices; nothing else was touched.
      const names = (await service.registry.list()).map((d) => d.name);
      assert.ok(names.includes("calm"));
      assert.ok(names.length <= 4, names.join());
      assert.ok(
        names.every((n) => ["calm", "flood-0", "flood-1", "flood-2"].includes(n)),
        names.join(),
      );
      assert.ok(audits.every((a) => a.outcome !== "error"));
    } finally {
      await server.close();
    }
  });
});

describe("ThingsBoard provisioning through an external broker (attached, mosquitto)", () => {
  let mosq: Mosquitto;
  before(async () => {
    mosq = await startMosquitto();
  });
  after(async () => {
    await mosq.stop();
  });

  it("answers an MQTT 3.1.1 device on /provision/response and an MQTT 5 device on its own response topic", async () => {
    const { service } = makeService();
    const attached = startTbMqttAttached(service, {
      url: mosq.url,
      client: { clientId: "tb-provision-server" },
    });
    try {
      await attached.ready;
      const v4 = await mqttDevice(mosq.url, { username: undefined });
      v4.client.publish("/provision/request", request({ deviceName: "via-mosquitto" }), { qos: 1 });
      const res = JSON.parse((await nextMessages(v4))[0].payload);
      assert.equal(res.status, "SUCCESS");
      assert.equal(
        (await service.registry.get("fleet", "via-mosquitto"))?.credentials?.token,
        res.credentialsValue,
      );

      // The MQTT 5 device names a private response topic; the v4 device (on the shared topic) sees nothing.
      const v5 = connect(mosq.url, { protocolVersion: 5, reconnectPeriod: 0 });
      await new Promise<void>((resolve) => v5.once("connect", () => resolve()));
      await v5.subscribeAsync("/provision/response/v5-dev", { qos: 1 });
      const got = new Promise<{ payload: string; corr?: string }>((resolve) =>
        v5.once("message", (_t, p, packet) =>
          resolve({ payload: p.toString(), corr: packet.properties?.correlationData?.toString() }),
        ),
      );
      v5.publish("/provision/request", request({ deviceName: "v5-dev" }), {
        qos: 1,
        properties: { responseTopic: "/provision/response/v5-dev", correlationData: Buffer.from("c-42") },
      });
      const answer = await got;
      assert.equal(JSON.parse(answer.payload).status, "SUCCESS");
      assert.equal(answer.corr, "c-42");
      // A round trip on the v4 session orders after anything mosquitto would have sent it.
      await v4.client.subscribeAsync("/provision/response", { qos: 1 });
      assert.equal(v4.messages.length, 1);
      v4.client.end(true);
      v5.end(true);
    } finally {
      await attached.close();
    }
  });
});
