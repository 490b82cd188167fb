/**
 * The demo account broker: a device provisioned by the service reconnects to it with what
 * it was handed, and may use only its own `$EDC/<account>/<client id>/#` subtree; other
 * credentials, and credentials of a request not completed, are refused.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "mocha";
import { connectAsync, type MqttClient } from "mqtt";
import { createServer } from "node:net";
import { startKuraAccountBroker } from "../../../lib/dialects/kura/account-broker";
import { provisionKuraDevice } from "../../../lib/dialects/kura/device";
import { device, requestFor } from "../../support/kserve-peers";
import { startKura, type StartedKura } from "../../support/kserve-service";

describe("kura serving: the demo account broker", () => {
  let kura: StartedKura;
  before(async () => {
    kura = await startKura({ mode: "embedded", host: "127.0.0.1", port: 0 }, {}, []);
  });
  after(async () => {
    await kura?.stop();
  });

  /** A CONNECT's outcome: the client, or "CONNACK <code>". */
  async function connectTo(port: number, clientId: string, username: string, password: string) {
    try {
      return await connectAsync(`mqtt://127.0.0.1:${port}`, {
        protocolVersion: 4,
        clientId,
        username,
        password,
        reconnectPeriod: 0,
      });
    } catch (err) {
      return `CONNACK ${(err as { code?: number }).code}`;
    }
  }

  it("takes the handed-out credentials of a COMPLETED request only, and keeps each device in its subtree", async () => {
    const ab = await startKuraAccountBroker(kura.running.service, { port: 0 });
    try {
      await kura.running.manage("add", requestFor("ab-1"));
      await kura.running.manage("add", requestFor("ab-2"));
      // ab-2 is not provisioned yet: its account credentials are not accepted.
      assert.equal(await connectTo(ab.port, "ab-2", "acme-ab-2", "account-pass-of-ab-2"), "CONNACK 4");

      const r = await provisionKuraDevice(device(kura.running.port as number, "ab-1"), { timeoutMs: 15000 });
      const c = r.credentials;
      assert.equal(
        await connectTo(ab.port, c.clientId as string, c.username as string, "not-the-password"),
        "CONNACK 4",
      );
      assert.equal(
        await connectTo(ab.port, "someone-else", c.username as string, c.password as string),
        "CONNACK 4",
      );
      const dev = (await connectTo(
        ab.port,
        c.clientId as string,
        c.username as string,
        c.password as string,
      )) as MqttClient;
      assert.equal(typeof dev, "object");
      try {
        const mine = `$EDC/${r.configuration.accountName}/${c.clientId}/`;
        assert.equal((await dev.subscribeAsync(`${mine}#`, { qos: 1 }))[0].qos, 1);
        const got = new Promise<string>((resolve) => dev.once("message", (t) => resolve(t)));
        await dev.publishAsync(`${mine}MQTT/BIRTH`, Buffer.from("x"), { qos: 1 });
        assert.equal(await got, `${mine}MQTT/BIRTH`);
        const other = await dev.subscribeAsync(`$EDC/${r.configuration.accountName}/ab-2/#`, { qos: 1 }).then(
          (g) => g[0].qos === 128,
          (err: Error) => /Subscribe error/.test(err.message),
        );
        assert.ok(other, "another device's subtree is refused");
      } finally {
        dev.end(true);
      }
    } finally {
      await ab.close();
    }
  });

  it("runs beside the service when the settings ask for it, and stops with it", async () => {
    const s = await startKura({ mode: "embedded", host: "127.0.0.1", port: 0 }, {}, [], {
      accountBroker: { host: "127.0.0.1", port: 0 },
    });
    const port = s.running.accountBrokerPort as number;
    assert.ok(port > 0);
    assert.ok(s.running.labels.includes(`account :${port}`), s.running.labels.join(", "));
    await s.stop();
    // Its port is free again.
    await new Promise<void>((resolve, reject) => {
      const srv = createServer();
      srv.once("error", reject);
      srv.listen(port, "127.0.0.1", () => srv.close(() => resolve()));
    });
  });
});
