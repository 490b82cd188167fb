/**
 * The Azure DPS dialogs' fields as the dialects get them: provision-response's enrollments
 * (keys kept apart in one credential, `${NAME}` from the environment as the demo's group
 * key), its linked hubs with weights, and provision-request's X.509 registration id (the
 * certificate's CN) and the refusal reason its status shows; and the demo PKI the two
 * "demo" boxes share.
 */
import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import { mkdtempSync, readFileSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "mocha";
import { ProvisioningError } from "../../../lib/model/errors";
import { ensureAzureDemoPki } from "../../../lib/pki/azure-demo-pki";
import { azureReasonOf, commonNameOf } from "../../../nodes/shared/azure-device-settings";
import { azureEnrollmentsOf, azureHubsOf, azureKeysOf } from "../../../nodes/shared/azure-serving-settings";

describe("unit/azure-dps/node-settings", () => {
  const env: Record<string, string> = {
    AZURE_DPS_GROUP_KEY: "Z3JvdXAta2V5LWdyb3VwLWtleS0xMjM0NTY3OA==",
    HUB: "h2.example",
  };
  const lookup = (name: string) => env[name];

  it("enrollments get their keys from the credential, by kind and id, references resolved", () => {
    const keys = azureKeysOf(
      JSON.stringify({
        "group:demo-group": { primaryKey: "${AZURE_DPS_GROUP_KEY}" },
        "individual:dev-1": { primaryKey: "cHJpbWFyeQ==", secondaryKey: "c2Vjb25kYXJ5" },
      }),
      "broken",
    );
    const [group, one, none] = azureEnrollmentsOf(
      [
        {
          kind: "group",
          id: "demo-group",
          attestation: "symmetric-key",
          enabled: true,
          reprovision: "reset",
        },
        {
          kind: "individual",
          id: "dev-1",
          attestation: "symmetric-key",
          enabled: false,
          allocation: "static",
          iotHubs: "h1.example, ${HUB}",
          deviceId: "device-one",
          initialTwin: '{"tags":{"site":"a"}}',
        },
        // An individual enrollment of the same id as the group: its keys are not the group's.
        { kind: "individual", id: "demo-group", attestation: "x509", certificates: "" },
      ],
      keys,
      lookup,
    );
    assert.deepEqual(group, {
      kind: "group",
      id: "demo-group",
      attestation: "symmetric-key",
      primaryKey: env.AZURE_DPS_GROUP_KEY,
      secondaryKey: undefined,
      enabled: true,
      reprovision: "reset",
    });
    assert.equal(one.primaryKey, "cHJpbWFyeQ==");
    assert.equal(one.secondaryKey, "c2Vjb25kYXJ5");
    assert.equal(one.enabled, false);
    assert.equal(one.allocation, "static");
    assert.deepEqual(one.iotHubs, ["h1.example", "h2.example"]);
    assert.equal(one.deviceId, "device-one");
    assert.deepEqual(one.initialTwin, { tags: { site: "a" } });
    assert.equal(none.primaryKey, undefined);
    assert.equal(none.attestation, "x509");
  });

  it("a broken keys credential, or a twin that is not JSON, is a CONFIG error that quotes none of it", () => {
    assert.throws(
      () => azureKeysOf('{"group:g": {"primaryKey": "SECRET-VALUE"', "the keys cannot be read"),
      (e: unknown) =>
        e instanceof ProvisioningError &&
        e.code === "CONFIG" &&
        e.message === "the keys cannot be read" &&
        !e.message.includes("SECRET"),
    );
    assert.throws(
      () =>
        azureEnrollmentsOf(
          [{ kind: "group", id: "g", initialTwin: "{nope" }],
          {},
          lookup,
          (id) => `twin of ${id}`,
        ),
      (e: unknown) => e instanceof ProvisioningError && e.code === "CONFIG" && e.message === "twin of g",
    );
  });

  it("linked hubs: one per line or comma, an optional weight, duplicates once, references resolved", () => {
    assert.deepEqual(azureHubsOf("h1.example 3\n${HUB}\n\n h1.example, h3.example x", lookup), {
      linkedHubs: ["h1.example", "h2.example", "h3.example"],
      hubWeights: { "h1.example": 3 },
    });
    assert.deepEqual(azureHubsOf(undefined), { linkedHubs: [], hubWeights: {} });
  });

  it("the demo PKI: a CA and a server certificate for localhost and 127.0.0.1, keys 0600, made once", () => {
    const dir = join(mkdtempSync(join(tmpdir(), "azure-pki-")), "azure-dps-demo-pki");
    const made = ensureAzureDemoPki(dir);
    assert.equal(made.created, true);
    const ca = new X509Certificate(readFileSync(made.caCert));
    const server = new X509Certificate(readFileSync(made.serverCert));
    assert.ok(server.verify(ca.publicKey), "the server certificate is signed by the CA");
    assert.ok(server.checkHost("localhost"), "valid for localhost");
    assert.ok(server.checkIP("127.0.0.1"), "valid for 127.0.0.1");
    assert.match(ca.subject, /FOR TRYING OUT ONLY/);
    for (const key of [made.caKey, made.serverKey]) assert.equal(statSync(key).mode & 0o777, 0o600);
    const again = ensureAzureDemoPki(dir);
    assert.equal(again.created, false);
    assert.equal(
      readFileSync(again.caCert, "utf8"),
      readFileSync(made.caCert, "utf8"),
      "kept, not made anew",
    );
    assert.equal(commonNameOf(readFileSync(made.serverCert, "utf8")), "localhost");
    assert.equal(commonNameOf("not a certificate"), undefined);
  });

  it("a refusal's status names the code and Azure's error code, never the message text", () => {
    const e = new ProvisioningError("DENIED", "401002 The device is unauthorized for service.", {
      status: 401,
    });
    assert.equal(azureReasonOf(e), "DENIED 401002");
    assert.equal(azureReasonOf(new ProvisioningError("TIMEOUT", "no answer")), "TIMEOUT");
    assert.equal(azureReasonOf(new ProvisioningError("BUSY", "throttled", { status: 429 })), "BUSY 429");
  });
});
