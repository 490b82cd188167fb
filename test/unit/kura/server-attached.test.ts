/**
 * The Kura serving side through an external broker (attached mode): Debian's mosquitto,
 * the package's own device core as the device. The broker decides CONNECTs there; the
 * service still checks the request, its attempts and the activation key per message.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "mocha";
import { ACTIVATION_KEY, provisionLine, requestFor, WRONG_KEY } from "../../support/kserve-peers";
import { startKura, type StartedKura } from "../../support/kserve-service";
import { startMosquitto, type Mosquitto } from "../../support/mosquitto";

describe("kura serving: attached to mosquitto", () => {
  let mosquitto: Mosquitto;
  let kura: StartedKura;
  before(async () => {
    mosquitto = await startMosquitto();
    kura = await startKura({ mode: "attached", url: mosquitto.url }, {}, [
      requestFor("att-1"),
      requestFor("att-2", { retryMaxAttempts: 1 }),
    ]);
    await kura.running.ready;
  });
  after(async () => {
    await kura?.stop();
    await mosquitto?.stop();
  });

  /** Resolves when `clientId`'s request is written with `status`. */
  const reaches = (clientId: string, status: string) =>
    new Promise<void>((resolve) => {
      const off = kura.running.service.watch((id, s) => {
        if (id === clientId && s === status) {
          off();
          resolve();
        }
      });
    });

  it("round trip through mosquitto; the request is consumed; unknown and failed requests get 404", async () => {
    // Through another broker the confirmation is acknowledged by it, not once stored here.
    const completed = reaches("att-1", "COMPLETED");
    assert.match(
      await provisionLine(mosquitto.port, "att-1", { activationKey: ACTIVATION_KEY }),
      /^OK account-pass-of-att-1$/,
    );
    await completed;
    // mosquitto lets anyone in: the service answers what it cannot refuse at CONNECT.
    assert.match(await provisionLine(mosquitto.port, "att-1"), /^NOT_FOUND 404/);
    assert.match(await provisionLine(mosquitto.port, "att-nobody"), /^NOT_FOUND 404/);
    assert.match(await provisionLine(mosquitto.port, "att-2", { activationKey: WRONG_KEY }), /^DENIED 403/);
    assert.match(await provisionLine(mosquitto.port, "att-2"), /^NOT_FOUND 404/);
    const failed = (await kura.running.manage("get", { clientId: "att-2" })) as {
      request?: { status: string };
    };
    assert.equal(failed.request?.status, "FAILED");
    assert.deepEqual(
      kura.audits.map((e) => [e.transport, e.outcome, e.reason ?? ""]),
      [
        ["mqtt-attached", "provisioned", ""],
        ["mqtt-attached", "refused", "already-provisioned"],
        ["mqtt-attached", "refused", "not-found"],
        ["mqtt-attached", "refused", "wrong-activation-key"],
        ["mqtt-attached", "refused", "not-found"],
      ],
    );
  });
});
