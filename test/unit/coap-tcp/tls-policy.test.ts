import assert from "node:assert/strict";
import { constants } from "node:crypto";
import { describe, it } from "mocha";
import type { TlsOptions } from "node:tls";
import { SERVER_CIPHERS, serverTlsOptions } from "../../../lib/transports/tls-policy";

describe("TLS policy for listeners", () => {
  it("raises an old minimum to TLS 1.2, keeps a stricter one, and always refuses renegotiation", () => {
    assert.equal(serverTlsOptions<TlsOptions>({}).minVersion, "TLSv1.2");
    assert.equal(serverTlsOptions({ minVersion: "TLSv1" }).minVersion, "TLSv1.2");
    assert.equal(serverTlsOptions({ minVersion: "TLSv1.3" }).minVersion, "TLSv1.3");
    const o = serverTlsOptions({ secureOptions: constants.SSL_OP_NO_TICKET });
    assert.ok((o.secureOptions ?? 0) & constants.SSL_OP_NO_RENEGOTIATION);
    assert.ok((o.secureOptions ?? 0) & constants.SSL_OP_NO_TICKET);
  });

  it("names AEAD suites only", () => {
    for (const c of SERVER_CIPHERS.split(":")) assert.match(c, /GCM|CHACHA20-POLY1305|CHACHA20_POLY1305/);
  });
});
