/**
 * provision-response's Kura requests from the dialog: a client id and secrets kept in the
 * environment (`${NAME}`, as the demo's EVERYWARE_* variables) reach the dialect resolved.
 */
import assert from "node:assert/strict";
import { describe, it } from "mocha";
import { kuraRequestsOf, kuraSecretsOf } from "../../../nodes/shared/kura-serving-settings";

describe("unit/kura/serving-settings", () => {
  const env: Record<string, string> = {
    ACCOUNT_PORT: "18840",
    EVERYWARE_CLIENT_ID: "AABBCCDDEEFF",
    EVERYWARE_USERNAME: "AABBCCDDEEFF-SN1",
    EVERYWARE_PASSWORD: "from-the-environment",
    EVERYWARE_ACTIVATION_KEY: "K".repeat(32),
  };
  const lookup = (name: string) => env[name];

  it("a request whose client id and secrets name environment variables gets their values", () => {
    const secrets = kuraSecretsOf(
      JSON.stringify({
        "${EVERYWARE_CLIENT_ID}": {
          password: "${EVERYWARE_PASSWORD}",
          activationKey: "${EVERYWARE_ACTIVATION_KEY}",
        },
        plain: { password: "literal" },
      }),
      "broken",
    );
    // Node-RED has already replaced a whole-value reference in the flow's plain fields.
    const [mine, plain] = kuraRequestsOf(
      [
        {
          clientId: "AABBCCDDEEFF",
          username: "${EVERYWARE_USERNAME}",
          brokerUrl: "mqtt://127.0.0.1:${ACCOUNT_PORT}",
          accountName: "acme",
          accountUsername: "acme-${EVERYWARE_CLIENT_ID}",
        },
        { clientId: "plain", username: "plain-user" },
      ],
      secrets,
      lookup,
    ) as unknown as Array<Record<string, unknown>>;
    assert.equal(mine.clientId, "AABBCCDDEEFF");
    assert.equal(mine.username, "AABBCCDDEEFF-SN1");
    assert.equal(mine.password, "from-the-environment");
    assert.equal(mine.activationKey, "K".repeat(32));
    assert.deepEqual(mine.configuration, {
      brokerUrl: "mqtt://127.0.0.1:18840",
      accountName: "acme",
      username: "acme-AABBCCDDEEFF",
      password: "",
      clientId: "AABBCCDDEEFF",
    });
    assert.equal(plain.password, "literal");
    assert.equal(plain.activationKey, undefined);
  });

  it("a broken secrets credential is a CONFIG error that quotes none of it", () => {
    assert.throws(
      () => kuraSecretsOf('{"dev": {"password": "hunter2"', "the secrets do not parse"),
      (e: Error) => !e.message.includes("hunter2") && /do not parse/.test(e.message),
    );
  });
});
