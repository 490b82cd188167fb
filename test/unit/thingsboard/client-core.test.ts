import { describe, it } from "mocha";
import assert from "node:assert/strict";
import { createPrivateKey, X509Certificate } from "node:crypto";
import { resolveIdentity, type NameSources } from "../../../lib/client/identity";

const TB_IDENTITY = {
  messageProperty: "deviceName",
  envVar: "THINGSBOARD_DEVICE_NAME",
  hostname: true,
  randomPrefix: "teg-",
};
const resolveDeviceName = (src: NameSources) => resolveIdentity(TB_IDENTITY, src);
import { credentialValue, resolveEnvRefs } from "../../../lib/client/env-ref";
import { findReusable, saveResult, storeKeyFor } from "../../../lib/client/reuse";
import { createDeviceCertificate, certificateNotAfter } from "../../../lib/pki/self-signed";
import { MemoryBackend } from "../../../lib/stores/memory";
import {
  endpointUri,
  prepareRequest,
  resultFromAnswer,
  type TbProvisionInput,
} from "../../../lib/dialects/thingsboard/client";
import { provision } from "../../../lib/dialects/thingsboard/device-dialect";
import { parseResponse } from "../../../lib/dialects/thingsboard/wire";
import { isFinal } from "../../../lib/retry/run";

describe("unit/thingsboard/client-core", () => {
  const env = (vars: Record<string, string>) => (n: string) => vars[n];

  it("device name: message, setting, THINGSBOARD_DEVICE_NAME, hostname, teg- + 7 digits", () => {
    const all = {
      message: " msg-dev ",
      setting: "set-dev",
      env: env({ THINGSBOARD_DEVICE_NAME: "env-dev" }),
      hostname: () => "host-dev",
      randomInt: () => 1234567,
    };
    assert.deepEqual(resolveDeviceName(all), { name: "msg-dev", source: "message" });
    assert.deepEqual(resolveDeviceName({ ...all, message: 42 }), { name: "set-dev", source: "setting" });
    assert.deepEqual(resolveDeviceName({ ...all, message: "", setting: "  " }), {
      name: "env-dev",
      source: "env",
    });
    assert.deepEqual(resolveDeviceName({ ...all, message: undefined, setting: "", env: env({}) }), {
      name: "host-dev",
      source: "hostname",
    });
    assert.deepEqual(
      resolveDeviceName({ ...all, message: undefined, setting: "", env: env({}), hostname: () => "" }),
      { name: "teg-1234567", source: "random" },
    );
    const real = resolveDeviceName({ env: env({}), hostname: () => "" });
    assert.match(real.name, /^teg-\d{7}$/);
    // A dialect without fallbacks never borrows ThingsBoard's: no identity is a CONFIG error.
    assert.throws(
      () =>
        resolveIdentity({ messageProperty: "externalId" }, { env: env({ THINGSBOARD_DEVICE_NAME: "x" }) }),
      (e: Error & { code?: string }) => e.code === "CONFIG" && /externalId/.test(e.message),
    );
  });

  it("${NAME} references in credentials, with the variables of ThingsBoard's reference self-provisioning script as defaults", () => {
    const e = env({ THINGSBOARD_PROVISION_DEVICE_KEY: "k-env", OTHER: "o" });
    assert.equal(resolveEnvRefs("a-${OTHER}-${MISSING}-b", e), "a-o--b");
    assert.equal(credentialValue("", e, "THINGSBOARD_PROVISION_DEVICE_KEY"), "k-env");
    assert.equal(credentialValue(undefined, e, "THINGSBOARD_PROVISION_DEVICE_KEY"), "k-env");
    assert.equal(credentialValue("literal", e, "THINGSBOARD_PROVISION_DEVICE_KEY"), "literal");
    assert.equal(credentialValue("${OTHER}", e), "o");
    assert.equal(credentialValue("", e), "");
  });

  it("X.509: P-256 key and self-signed certificate with CN = device name, key never in the request", async () => {
    const made = await createDeviceCertificate("gw, child=1");
    const cert = new X509Certificate(made.certificate);
    assert.equal(cert.subject, "CN=gw\\, child=1");
    assert.equal(cert.issuer, cert.subject);
    assert.ok(cert.verify(cert.publicKey), "self-signed signature verifies");
    const key = createPrivateKey(made.privateKey);
    assert.equal(key.asymmetricKeyDetails?.namedCurve, "prime256v1");
    assert.ok(cert.checkPrivateKey(key));
    assert.equal(certificateNotAfter(made.certificate), made.notAfter);

    const prepared = await prepareRequest({
      endpoint: "mqtts://tb.example:8883",
      provisionDeviceKey: "key-abcd",
      provisionDeviceSecret: "secret-abcd",
      deviceName: "dev-x509",
      credentials: { type: "X509_CERTIFICATE" },
    });
    const body = JSON.stringify(prepared.request);
    assert.equal(prepared.request.credentialsType, "X509_CERTIFICATE");
    assert.equal(new X509Certificate(prepared.request.hash as string).subject, "CN=dev-x509");
    assert.ok(!body.includes("PRIVATE KEY"), "the private key stays on the device");
    const result = resultFromAnswer(
      prepared,
      parseResponse(
        JSON.stringify({
          status: "SUCCESS",
          credentialsType: "X509_CERTIFICATE",
          credentialsValue: "MIIB...",
        }),
      ),
    );
    assert.equal(result.credentials.certificate, prepared.certificate);
    assert.equal(result.credentials.privateKey, prepared.privateKey);
    assert.equal(result.expiresAt, prepared.certificateNotAfter);
  });

  it("answers map to the neutral result; both field-name generations accepted", async () => {
    const prepared = await prepareRequest({
      endpoint: "https://tb.example/base/",
      provisionDeviceKey: "key-abcd",
      provisionDeviceSecret: "secret-abcd",
      deviceName: "dev-1",
      gateway: true,
    });
    const now = new Date("2026-01-02T03:04:05.000Z");
    const r = resultFromAnswer(
      prepared,
      parseResponse('{"provisionDeviceStatus":"SUCCESS","accessToken":"tok-1"}'),
      now,
    );
    assert.deepEqual(r, {
      dialect: "thingsboard",
      endpoint: "https://tb.example/base/api/v1/provision",
      device: { name: "dev-1" },
      proof: "provision-key",
      credentials: { type: "ACCESS_TOKEN", token: "tok-1" },
      configuration: { gateway: true },
      obtainedAt: now.toISOString(),
      reused: false,
    });
    const basic = resultFromAnswer(
      prepared,
      parseResponse(
        '{"status":"SUCCESS","credentialsType":"MQTT_BASIC","credentialsValue":{"clientId":"c","userName":"u","password":"p"}}',
      ),
    );
    assert.deepEqual(basic.credentials, { type: "MQTT_BASIC", clientId: "c", username: "u", password: "p" });
  });

  it("NOT_FOUND and FAILURE are final with neutral codes and ThingsBoard's word as status; the secret never shows", async () => {
    const prepared = await prepareRequest({
      endpoint: "coap://tb.example",
      provisionDeviceKey: "key-abcd",
      provisionDeviceSecret: "secret-abcd",
      deviceName: "dev-1",
    });
    for (const [status, code] of [
      ["NOT_FOUND", "NOT_FOUND"],
      ["FAILURE", "REFUSED"],
    ]) {
      assert.throws(
        () =>
          resultFromAnswer(prepared, parseResponse(JSON.stringify({ status, errorMsg: "bad secret-abcd" }))),
        (err: Error & { code?: string; status?: string }) => {
          assert.equal(err.code, code);
          assert.equal(err.status, status);
          assert.ok(isFinal(err));
          assert.ok(!err.message.includes("secret-abcd"));
          return true;
        },
      );
    }
    assert.throws(
      () => resultFromAnswer(prepared, parseResponse("<html>")),
      (err: Error & { code?: string }) => err.code === "INVALID_ANSWER",
    );
  });

  it("bad input is refused before anything is sent (CONFIG, final)", async () => {
    const base: TbProvisionInput = {
      endpoint: "mqtts://tb.example:8883",
      provisionDeviceKey: "k",
      provisionDeviceSecret: "s",
      deviceName: "d",
    };
    const code = async (input: TbProvisionInput) => {
      try {
        await prepareRequest(input);
        return "ok";
      } catch (err) {
        return (err as { code?: string }).code;
      }
    };
    assert.equal(await code({ ...base, provisionDeviceKey: "" }), "CONFIG");
    assert.equal(await code({ ...base, provisionDeviceSecret: "" }), "CONFIG");
    assert.equal(await code({ ...base, deviceName: "  " }), "CONFIG");
    assert.equal(await code({ ...base, endpoint: "ftp://x" }), "CONFIG");
    assert.equal(await code({ ...base, credentials: { type: "MQTT_BASIC" } }), "CONFIG");
    assert.equal(
      await code({ ...base, credentials: { type: "X509_CERTIFICATE", certificate: "nope" } }),
      "CONFIG",
    );
    assert.throws(() => endpointUri("mqtts", ""), /no server host/);
    assert.equal(endpointUri("mqtts", "::1"), "mqtts://[::1]:8883");
    assert.equal(endpointUri("coap", "h", "15683"), "coap://h:15683");
    await assert.rejects(
      provision(base, { policy: { intervals: [] } }),
      (e: { code?: string }) => e.code === "CONFIG",
    );
  });

  it("reuse: stored results, bare token strings of ThingsBoard's reference script, expiry, default key", async () => {
    const store = new MemoryBackend();
    const fb = { dialect: "thingsboard" as const, endpoint: "mqtts://h:8883", deviceName: "d1" };
    assert.equal(storeKeyFor("thingsboard", "d1"), "thingsboard/d1");
    assert.equal(storeKeyFor("thingsboard", "d1", "gw/{deviceName}/tb"), "gw/d1/tb");
    assert.equal(await findReusable(store, "thingsboard/d1", fb), undefined);
    await store.set("tok", "abc");
    assert.equal(
      await findReusable(store, "tok", fb),
      undefined,
      "3 characters are not a token (ThingsBoard's reference script)",
    );
    await store.set("tok", "abcd");
    assert.deepEqual((await findReusable(store, "tok", fb))?.credentials, {
      type: "ACCESS_TOKEN",
      token: "abcd",
    });
    const result = {
      dialect: "thingsboard" as const,
      endpoint: "mqtts://h:8883",
      device: { name: "d1" },
      proof: "provision-key" as const,
      credentials: { type: "ACCESS_TOKEN" as const, token: "t-1" },
      configuration: {},
      obtainedAt: new Date().toISOString(),
      reused: false,
    };
    await saveResult(store, "thingsboard/d1", result);
    const entry = await store.get("thingsboard/d1");
    assert.equal(entry?.meta.protocol, "thingsboard");
    assert.equal(entry?.meta.endpoint, "mqtts://h:8883");
    assert.deepEqual(await findReusable(store, "thingsboard/d1", fb), { ...result, reused: true });
    await saveResult(store, "thingsboard/d1", {
      ...result,
      expiresAt: new Date(Date.now() - 1000).toISOString(),
    });
    assert.equal(await findReusable(store, "thingsboard/d1", fb), undefined, "expired is not reused");
  });
});
