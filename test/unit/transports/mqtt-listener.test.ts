/**
 * One embedded broker per port, shared by the dialects attached to it: ThingsBoard's
 * provisioning next to a test-only second dialect ("echo", its own user name and topics),
 * with MQTT.js clients as the devices.
 */
import assert from "node:assert/strict";
import { createServer } from "node:net";
import { afterEach, describe, it } from "mocha";
import type { Client, PublishPacket } from "aedes";
import { connect, type MqttClient } from "mqtt";
import { startTbMqttServer, type TbMqttServer } from "../../../lib/dialects/thingsboard/server-mqtt";
import { isFinal, ProvisioningError } from "../../../lib/model/errors";
import {
  attachMqtt,
  type MqttAttachment,
  type MqttListenerSettings,
} from "../../../lib/transports/mqtt-listener";
import { makeTestPki } from "../../support/pki";
import { freeTcpPort } from "../../support/ports";
import { makeService, mqttDevice, nextMessages, request } from "../../support/tbserve-fixtures";

/** A second dialect for the test: sessions named "echo" may use echo/# only; echo/in is answered on echo/out. */
function echoDialect(settings: MqttListenerSettings): Promise<MqttAttachment> {
  return attachMqtt(settings, {
    name: "echo",
    claims: (c) => c.username === "echo",
    hooks: {
      authorizeSubscribe: (_client, sub, cb) => cb(null, sub.topic.startsWith("echo/") ? sub : null),
      authorizePublish: (client: Client | null, packet: PublishPacket, cb) => {
        if (!client || !packet.topic.startsWith("echo/")) return cb(new Error("echo topics only"));
        cb(null);
        if (packet.topic === "echo/in")
          client.publish(
            {
              cmd: "publish",
              topic: "echo/out",
              payload: Buffer.from(`echo ${packet.payload.toString()}`),
              qos: 0,
              dup: false,
              retain: false,
            },
            () => undefined,
          );
      },
      authorizeForward: (_client, packet) => (packet.topic.startsWith("echo/") ? packet : null),
    },
  });
}

async function client(port: number, username: string): Promise<MqttClient & { got: string[] }> {
  const c = connect(`mqtt://127.0.0.1:${port}`, {
    username,
    protocolVersion: 4,
    reconnectPeriod: 0,
    connectTimeout: 10000,
  }) as MqttClient & { got: string[] };
  c.got = [];
  c.on("message", (topic, payload) => c.got.push(`${topic} ${payload.toString()}`));
  c.on("error", () => undefined);
  await new Promise<void>((resolve, reject) => {
    c.once("connect", () => resolve());
    c.once("error", reject);
  });
  return c;
}

function message(c: MqttClient, topic: string): Promise<string> {
  return new Promise((resolve) => {
    const on = (t: string, payload: Buffer) => {
      if (t !== topic) return;
      c.off("message", on);
      resolve(payload.toString());
    };
    c.on("message", on);
  });
}

function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.once("error", () => resolve(false));
    srv.listen(port, "127.0.0.1", () => srv.close(() => resolve(true)));
  });
}

describe("one embedded MQTT broker per port, shared by dialects", () => {
  const cleanup: Array<() => Promise<unknown> | unknown> = [];
  afterEach(async () => {
    for (const c of cleanup.splice(0).reverse()) await Promise.resolve(c()).catch(() => undefined);
  });

  it("ThingsBoard and a second dialect on one port: each session is answered by its own, sees only its topics", async () => {
    const port = await freeTcpPort();
    const { service } = makeService();
    const tb: TbMqttServer = await startTbMqttServer(service, { host: "127.0.0.1", port });
    cleanup.push(() => tb.close());
    const echo = await echoDialect({
      host: "127.0.0.1",
      port,
      maxConnectionBytes: 4 * 64 * 1024 + 4096,
      limits: tbLimits(),
    });
    cleanup.push(() => echo.detach());
    assert.equal(echo.broker.port, tb.port);

    const device = await mqttDevice(`mqtt://127.0.0.1:${port}`);
    cleanup.push(() => device.client.end(true));
    const listener = await client(port, "echo");
    cleanup.push(() => listener.end(true));
    const talker = await client(port, "echo");
    cleanup.push(() => talker.end(true));

    // Routing inside one dialect still works: echo/broadcast reaches the other echo session.
    await listener.subscribeAsync("echo/#", { qos: 0 });
    const heard = message(listener, "echo/broadcast");
    await talker.publishAsync("echo/broadcast", "hello", { qos: 0 });
    assert.equal(await heard, "hello");
    const echoed = (async () => {
      await talker.subscribeAsync("echo/out", { qos: 0 });
      const answer = message(talker, "echo/out");
      await talker.publishAsync("echo/in", "ping", { qos: 0 });
      return answer;
    })();
    assert.equal(await echoed, "echo ping");

    device.client.publish("/provision/request", request({ deviceName: "shared-port" }), { qos: 1 });
    const [answer] = await nextMessages(device);
    assert.equal(answer.topic, "/provision/response");
    assert.equal(JSON.parse(answer.payload).status, "SUCCESS");
    // The ThingsBoard session heard nothing of echo's traffic; echo heard nothing of its answer.
    assert.deepEqual(
      device.messages.map((m) => m.topic),
      ["/provision/response"],
    );
    assert.ok(!listener.got.some((m) => m.includes("provision")), listener.got.join("\n"));

    // Neither may subscribe to the other's topics (SUBACK 0x80, which MQTT.js reports as an error).
    await assert.rejects(device.client.subscribeAsync("echo/#", { qos: 0 }), /Subscribe error/);
    await assert.rejects(listener.subscribeAsync("/provision/response", { qos: 0 }), /Subscribe error/);
    // A session nobody on the port claims is refused at CONNECT (5: not authorized).
    await assert.rejects(client(port, "stranger"), /Not authorized/i);
  });

  it("the first attach starts the broker, a detach keeps it for the others, the last detach frees the port", async () => {
    const port = await freeTcpPort();
    const settings = {
      host: "127.0.0.1",
      port,
      maxConnectionBytes: 4 * 64 * 1024 + 4096,
      limits: tbLimits(),
    };
    const echo = await echoDialect(settings);
    cleanup.push(() => echo.detach());
    const { service } = makeService();
    const tb = await startTbMqttServer(service, { host: "127.0.0.1", port });
    cleanup.push(() => tb.close());
    const device = await mqttDevice(`mqtt://127.0.0.1:${port}`);

    // ThingsBoard leaves: its waiting session is closed, echo goes on serving.
    await tb.close();
    await device.closed;
    const talker = await client(port, "echo");
    cleanup.push(() => talker.end(true));
    await talker.subscribeAsync("echo/out", { qos: 0 });
    const answer = message(talker, "echo/out");
    await talker.publishAsync("echo/in", "still here", { qos: 0 });
    assert.equal(await answer, "echo still here");
    await assert.rejects(mqttDevice(`mqtt://127.0.0.1:${port}`), /Not authorized/i);
    assert.equal(await portFree(port), false);

    await echo.detach();
    assert.equal(await portFree(port), true, "the last detach frees the port");
    // And the port can be served again from scratch.
    const again = await startTbMqttServer(makeService().service, { host: "127.0.0.1", port });
    cleanup.push(() => again.close());
    const d2 = await mqttDevice(`mqtt://127.0.0.1:${port}`);
    cleanup.push(() => d2.client.end(true));
    d2.client.publish("/provision/request", request({ deviceName: "again" }), { qos: 1 });
    assert.equal(JSON.parse((await nextMessages(d2))[0].payload).status, "SUCCESS");
  });

  it("incompatible settings on one port fail with a clear CONFIG error, as does the same dialect twice", async () => {
    const port = await freeTcpPort();
    const { service } = makeService();
    const tb = await startTbMqttServer(service, { host: "127.0.0.1", port });
    cleanup.push(() => tb.close());
    const base = { host: "127.0.0.1", port, maxConnectionBytes: 4 * 64 * 1024 + 4096, limits: tbLimits() };
    const pki = makeTestPki();
    const configError = (why: RegExp) => (err: unknown) =>
      err instanceof ProvisioningError && err.code === "CONFIG" && isFinal(err) && why.test(err.message);

    await assert.rejects(
      echoDialect({ ...base, tls: { key: pki.serverKey, cert: pki.serverCert } }),
      configError(new RegExp(`MQTT port ${port} is shared with thingsboard .*plain MQTT`)),
    );
    await assert.rejects(
      echoDialect({ ...base, limits: { ...base.limits, maxConnections: 7 } }),
      configError(/maxConnections there is 1000, not 7/),
    );
    await assert.rejects(
      startTbMqttServer(service, { host: "127.0.0.1", port }),
      configError(/already served by thingsboard/),
    );
    // The refused attaches left the running one alone.
    const device = await mqttDevice(`mqtt://127.0.0.1:${port}`);
    cleanup.push(() => device.client.end(true));
    device.client.publish("/provision/request", request({ deviceName: "unharmed" }), { qos: 1 });
    assert.equal(JSON.parse((await nextMessages(device))[0].payload).status, "SUCCESS");
  });
});

/** The limits startTbMqttServer gives the port by default, for a dialect that shares it. */
function tbLimits() {
  return { maxConnections: 1000, maxPerRemote: 100, firstRequestMs: 10000, maxLifetimeMs: 120000 };
}
