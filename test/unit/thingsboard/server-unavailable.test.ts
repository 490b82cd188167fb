/**
 * A registry that cannot be read or written (its database restarting) is no verdict on the
 * device: ThingsBoard's FAILURE is final to its devices, so each transport answers in its
 * own "try again" words instead, and the same device is served once the store is back.
 */
import assert from "node:assert/strict";
import { describe, it } from "mocha";
import { startTbCoapServer } from "../../../lib/dialects/thingsboard/server-coap";
import { answerHttp } from "../../../lib/dialects/thingsboard/server-http";
import { startTbMqttServer } from "../../../lib/dialects/thingsboard/server-mqtt";
import { StoreError, type StoreBackend } from "../../../lib/stores/backend";
import { MemoryBackend } from "../../../lib/stores/memory";
import { freeUdpPort } from "../../support/ports";
import { run } from "../../support/process";
import { makeService, mqttDevice, nextMessages, request } from "../../support/tbserve-fixtures";

/** A memory backend whose every operation fails with IO while `down` is set. */
function flakyBackend(): { backend: StoreBackend; setDown: (down: boolean) => void } {
  const inner = new MemoryBackend();
  let down = false;
  const backend = new Proxy(inner, {
    get(target, prop, receiver) {
      const v = Reflect.get(target, prop, receiver) as unknown;
      if (typeof v !== "function") return v;
      return (...args: unknown[]) =>
        down && prop !== "close"
          ? Promise.reject(new StoreError("IO", "connection to the database lost"))
          : (v as (...a: unknown[]) => unknown).apply(target, args);
    },
  });
  return { backend, setDown: (d) => (down = d) };
}

describe("ThingsBoard serving while the registry is unavailable", () => {
  it("HTTP: 503 with Retry-After, an audit event of the store failure, then SUCCESS for the same device", async () => {
    const { backend, setDown } = flakyBackend();
    const { service, audits } = makeService({ backend });
    setDown(true);
    const refused = await answerHttp(service, request({ deviceName: "u1" }));
    assert.equal(refused.status, 503);
    assert.equal(refused.headers?.["retry-after"], "2");
    assert.equal(audits.at(-1)?.outcome, "error");
    assert.match(String(audits.at(-1)?.detail), /^registry: /);
    setDown(false);
    const served = await answerHttp(service, request({ deviceName: "u1" }));
    assert.equal(served.status, 200);
    assert.equal(JSON.parse(served.body).status, "SUCCESS");
  });

  it("MQTT: the session is closed without an answer (never FAILURE); the next session is served", async () => {
    const { backend, setDown } = flakyBackend();
    const { service } = makeService({ backend });
    const server = await startTbMqttServer(service, { port: 0, host: "127.0.0.1" });
    const url = `mqtt://127.0.0.1:${server.port}`;
    try {
      setDown(true);
      const dev = await mqttDevice(url);
      dev.client.publish("/provision/request", request({ deviceName: "u2" }), { qos: 1 });
      await assert.rejects(nextMessages(dev), /session closed without an answer/);
      assert.deepEqual(dev.messages, []);
      setDown(false);
      const again = await mqttDevice(url);
      again.client.publish("/provision/request", request({ deviceName: "u2" }), { qos: 1 });
      const [answer] = await nextMessages(again);
      assert.equal(JSON.parse(answer!.payload).status, "SUCCESS");
      again.client.end(true);
    } finally {
      await server.close();
    }
  });

  it("CoAP: 5.03 Service Unavailable with Max-Age (libcoap's coap-client), then 2.01", async () => {
    const { backend, setDown } = flakyBackend();
    const { service } = makeService({ backend });
    const port = await freeUdpPort();
    const server = await startTbCoapServer(service, { port });
    const coap = async () => {
      const out = await run("coap-client-notls", [
        "-m",
        "post",
        "-t",
        "application/json",
        "-e",
        request({ deviceName: "u3" }),
        "-B",
        "10",
        "-v",
        "6",
        `coap://127.0.0.1:${port}/api/v1/provision`,
      ]);
      const text = out.stdout.toString();
      const m = /t:ACK c:(\d\.\d\d)([^\n]*)\n/.exec(text);
      assert.ok(m, text);
      return { code: m[1], line: m[2] ?? "" };
    };
    try {
      setDown(true);
      const refused = await coap();
      assert.equal(refused.code, "5.03");
      assert.match(refused.line, /Max-Age:2\b/);
      setDown(false);
      assert.equal((await coap()).code, "2.01");
    } finally {
      await server.close();
    }
  });
});
