/**
 * SAS tokens as Azure DPS takes them (lib/dialects/azure-dps/sas.ts): tokens made by
 * Microsoft's own code (azure-iot-common's SharedAccessSignature.create, the one
 * azure-iot-security-symmetric-key calls) are accepted; `sr` raw, `%2f` and `%2F` (the Node,
 * Embedded C and Python SDKs) each verify over what was sent; expiry, key, resource, key
 * name and tampering are refused; the secondary key is found; group keys are derived as
 * openssl computes the same HMAC.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { SharedAccessSignature } from "azure-iot-common";
import { SymmetricKeySecurityClient } from "azure-iot-security-symmetric-key";
import { describe, it } from "mocha";
import { deriveDeviceKey, dpsResource, signSas, verifySas } from "../../../lib/dialects/azure-dps/sas";

const scope = "0ne00AB12CD";
const id = "device-0001";
const resource = dpsResource(scope, id);
const primary = randomBytes(32).toString("base64");
const secondary = randomBytes(32).toString("base64");
const nowMs = Date.now();
const inAnHour = Math.floor(nowMs / 1000) + 3600;

describe("Azure DPS SAS tokens, serving side", () => {
  it("accepts a token made by azure-iot-common's SharedAccessSignature.create", () => {
    const token = SharedAccessSignature.create(resource, "registration", primary, inAnHour).toString();
    assert.deepEqual(verifySas(token, resource, [primary, secondary], nowMs), { ok: true, keyIndex: 0 });
  });

  it("accepts the token Microsoft's symmetric-key security client makes for the device", async () => {
    const client = new SymmetricKeySecurityClient(id, secondary);
    const token = await new Promise<string>((resolve, reject) =>
      client.createSharedAccessSignature(scope, (err, sas) => (err ? reject(err) : resolve(String(sas)))),
    );
    assert.deepEqual(verifySas(token, resource, [primary, secondary], nowMs), { ok: true, keyIndex: 1 });
  });

  for (const encoding of ["raw", "lower", "upper"] as const)
    it(`verifies sr ${encoding === "raw" ? "raw" : encoding === "lower" ? "as %2f" : "as %2F"} over what was sent`, () => {
      const token = signSas(resource, primary, inAnHour, { encoding });
      if (encoding === "lower") assert.ok(token.includes("%2f"));
      if (encoding === "upper") assert.ok(token.includes("%2F"));
      assert.deepEqual(verifySas(token, resource, [primary], nowMs), { ok: true, keyIndex: 0 });
    });

  it("compares the decoded resource case-insensitively", () => {
    const token = signSas(resource.toUpperCase(), primary, inAnHour);
    assert.equal(verifySas(token, resource, [primary], nowMs).ok, true);
  });

  it("accepts the secondary key, and says which key matched", () => {
    assert.deepEqual(
      verifySas(signSas(resource, secondary, inAnHour), resource, [primary, secondary], nowMs),
      {
        ok: true,
        keyIndex: 1,
      },
    );
  });

  it("refuses an expired token, and one that lives longer than a year", () => {
    const expired = signSas(resource, primary, Math.floor(nowMs / 1000) - 1);
    assert.deepEqual(verifySas(expired, resource, [primary], nowMs), { ok: false, reason: "expired" });
    const forever = signSas(resource, primary, Math.floor(nowMs / 1000) + 400 * 24 * 3600);
    assert.deepEqual(verifySas(forever, resource, [primary], nowMs), { ok: false, reason: "expired" });
  });

  it("refuses a wrong key", () => {
    const token = signSas(resource, randomBytes(32).toString("base64"), inAnHour);
    assert.deepEqual(verifySas(token, resource, [primary, secondary], nowMs), {
      ok: false,
      reason: "signature",
    });
  });

  it("refuses a token for another registration, even signed with the right key", () => {
    const token = signSas(dpsResource(scope, "device-0002"), primary, inAnHour);
    assert.deepEqual(verifySas(token, resource, [primary], nowMs), { ok: false, reason: "resource" });
  });

  it("refuses another key name (skn), and accepts none", () => {
    const other = signSas(resource, primary, inAnHour, { keyName: "iothubowner" });
    assert.deepEqual(verifySas(other, resource, [primary], nowMs), { ok: false, reason: "key-name" });
    const none = signSas(resource, primary, inAnHour, { keyName: "" });
    assert.equal(verifySas(none, resource, [primary], nowMs).ok, true);
  });

  it("refuses a tampered token: sr re-encoded after signing, se moved, sig changed", () => {
    const raw = signSas(resource, primary, inAnHour);
    const reencoded = raw.replace(`sr=${resource}`, `sr=${encodeURIComponent(resource)}`);
    assert.notEqual(reencoded, raw);
    assert.deepEqual(verifySas(reencoded, resource, [primary], nowMs), { ok: false, reason: "signature" });
    const later = raw.replace(`se=${inAnHour}`, `se=${inAnHour + 60}`);
    assert.deepEqual(verifySas(later, resource, [primary], nowMs), { ok: false, reason: "signature" });
    const sig = /sig=([^&]+)/u.exec(raw)?.[1] as string;
    const flipped = decodeURIComponent(sig);
    const other = (flipped[0] === "A" ? "B" : "A") + flipped.slice(1);
    const tampered = raw.replace(`sig=${sig}`, `sig=${encodeURIComponent(other)}`);
    assert.deepEqual(verifySas(tampered, resource, [primary], nowMs), { ok: false, reason: "signature" });
  });

  it("refuses what is not a token", () => {
    for (const t of [undefined, "", "Bearer x", "SharedAccessSignature sr=a", 42, "x".repeat(5000)])
      assert.deepEqual(verifySas(t, resource, [primary], nowMs), { ok: false, reason: "malformed" });
  });

  it("derives a group member's key as openssl computes HMAC-SHA256 over the registration id", () => {
    const groupKey = randomBytes(64).toString("base64");
    const hex = Buffer.from(groupKey, "base64").toString("hex");
    const out = execFileSync(
      "openssl",
      ["dgst", "-sha256", "-mac", "HMAC", "-macopt", `hexkey:${hex}`, "-binary"],
      {
        input: id,
      },
    );
    assert.equal(deriveDeviceKey(groupKey, id), out.toString("base64"));
  });
});
