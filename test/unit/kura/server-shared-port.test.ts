/**
 * One embedded broker, two dialects: ThingsBoard and Everyware / Kura attached to the same
 * port (lib/transports/mqtt-listener.ts), each claiming its own sessions at CONNECT, a
 * ThingsBoard device and a Kura device both provisioned, neither hearing the other.
 */
import assert from "node:assert/strict";
import { afterEach, describe, it } from "mocha";
import { connectAsync } from "mqtt";
import { thingsboardServing, type TbRunningService } from "../../../lib/dialects/thingsboard/serving";
import { buildServiceContext } from "../../../lib/service/context";
import { provisionLine, requestFor } from "../../support/kserve-peers";
import { startKura, type StartedKura } from "../../support/kserve-service";
import { freeTcpPort } from "../../support/ports";
import { KEY, profile, SECRET } from "../../support/tbserve-fixtures";

describe("kura serving: one port shared with ThingsBoard", () => {
  const stops: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const stop of stops.splice(0).reverse()) await stop();
  });

  async function tbDevice(port: number, deviceName: string): Promise<string> {
    const c = await connectAsync(`mqtt://127.0.0.1:${port}`, {
      protocolVersion: 4,
      username: "provision",
      reconnectPeriod: 0,
    });
    try {
      await c.subscribeAsync("/provision/response", { qos: 1 });
      const answer = new Promise<string>((resolve) => c.once("message", (_t, m) => resolve(m.toString())));
      await c.publishAsync(
        "/provision/request",
        JSON.stringify({ deviceName, provisionDeviceKey: KEY, provisionDeviceSecret: SECRET }),
        { qos: 1 },
      );
      return await answer;
    } finally {
      c.end(true);
    }
  }

  it("a ThingsBoard device and a Kura device are both provisioned on one port", async () => {
    const port = await freeTcpPort();
    const tbBuilt = buildServiceContext({
      dialect: "thingsboard",
      lockAccount: "profile",
      rateLimit: false,
      failureLimit: { enabled: false },
    });
    const tb: TbRunningService = await thingsboardServing.start(
      { profiles: [profile()], mqtt: { mode: "embedded", host: "127.0.0.1", port, closeAfterMs: 0 } },
      tbBuilt.ctx,
    );
    stops.push(() => tb.stop());
    const kura: StartedKura = await startKura({ mode: "embedded", host: "127.0.0.1", port }, {}, [
      requestFor("shared-1"),
    ]);
    stops.push(() => kura.stop());
    assert.equal(kura.running.port, port);

    const [tbAnswer, kuraAnswer] = await Promise.all([
      tbDevice(port, "tb-shared-1"),
      provisionLine(port, "shared-1"),
    ]);
    assert.equal((JSON.parse(tbAnswer) as { status: string }).status, "SUCCESS");
    assert.match(kuraAnswer, /^OK account-pass-of-shared-1$/);
    // Each dialect counted only its own device.
    assert.equal(tb.counts().provisioned, 1);
    assert.equal(kura.running.counts().provisioned, 1);
    assert.deepEqual(
      kura.audits.map((e) => [e.dialect, e.outcome]),
      [["kura", "provisioned"]],
    );
    // A client id neither dialect knows is refused by the port.
    assert.match(await provisionLine(port, "nobody-on-port"), /^DENIED CONNACK 5/);

    // Kura leaves; ThingsBoard keeps the port.
    await kura.stop();
    assert.equal((JSON.parse(await tbDevice(port, "tb-shared-2")) as { status: string }).status, "SUCCESS");
  });
});
