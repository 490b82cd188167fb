import { after, before, describe, it } from "mocha";
import assert from "node:assert/strict";
import { startEmbeddedBroker, type EmbeddedBroker } from "../../../lib/transports/embedded-broker";
import { makeTestPki, type TestPki } from "../../support/pki";
import { run } from "../../support/process";

/** What `openssl s_client` negotiated with 127.0.0.1:port: the cipher, or undefined. */
async function negotiated(port: number, caPath: string, extra: string[]): Promise<string | undefined> {
  const out = await run(
    "openssl",
    ["s_client", "-connect", `127.0.0.1:${port}`, "-CAfile", caPath, "-servername", "localhost", ...extra],
    { input: "" },
  );
  const text = out.stdout.toString() + out.stderr;
  const cipher = /Cipher is (\S+)/.exec(text)?.[1];
  return cipher && cipher !== "(NONE)" ? cipher : undefined;
}

describe("TLS listeners offer TLS 1.2 and later with AEAD suites only (openssl s_client)", () => {
  let pki: TestPki;
  let broker: EmbeddedBroker;

  before(async () => {
    pki = makeTestPki("Policy");
    broker = await startEmbeddedBroker({
      host: "127.0.0.1",
      port: 0,
      tls: { key: pki.serverKey, cert: pki.serverCert },
      hooks: {},
    });
  });
  after(async () => {
    await broker.close();
  });

  it("the embedded MQTT broker: TLS 1.3 and TLS 1.2 with GCM work", async () => {
    assert.ok(await negotiated(broker.port, pki.caCertPath, ["-tls1_3"]));
    assert.equal(
      await negotiated(broker.port, pki.caCertPath, ["-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256"]),
      "ECDHE-ECDSA-AES128-GCM-SHA256",
    );
  });

  it("the embedded MQTT broker refuses CBC suites and TLS 1.1", async () => {
    for (const cbc of ["ECDHE-ECDSA-AES128-SHA", "ECDHE-ECDSA-AES256-SHA384"])
      assert.equal(
        await negotiated(broker.port, pki.caCertPath, ["-tls1_2", "-cipher", cbc]),
        undefined,
        cbc,
      );
    assert.equal(
      await negotiated(broker.port, pki.caCertPath, ["-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"]),
      undefined,
    );
  });
});
