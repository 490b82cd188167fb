/**
 * Azure DPS device side over HTTPS: the shared cases (device-cases.ts), and what only
 * HTTPS has: the method, path, query and headers of each request, and Retry-After as a
 * header.
 */
import { after, before, describe, it } from "mocha";
import assert from "node:assert/strict";
import { attemptAzureDps } from "../../../lib/dialects/azure-dps/device-attempt";
import { USER_AGENT } from "../../../lib/dialects/azure-dps/device-https";
import { prepareAzureDevice } from "../../../lib/dialects/azure-dps/device-prepare";
import { httpRegisterPath, httpStatusPath } from "../../../lib/dialects/azure-dps/wire";
import {
  assigningThenAssigned,
  startAzureResponder,
  type AzureResponder,
} from "../../support/azure-responder";
import { makeTestPki } from "../../support/pki";
import { azureDeviceCases } from "./device-cases";

azureDeviceCases("https");

describe("Azure DPS device side: HTTPS specifics", () => {
  const pki = makeTestPki("Azure device HTTPS specifics");
  let r: AzureResponder;
  before(async () => {
    r = await startAzureResponder({ pki });
  });
  after(async () => {
    await r.stop();
  });

  it("PUT register and GET operations, with the api-version, JSON headers, User-Agent and the SAS in Authorization", async () => {
    r.script = assigningThenAssigned({ pollsBeforeAssigned: 1 });
    const regId = "https-wire-1";
    const from = r.seen.length;
    await attemptAzureDps(
      prepareAzureDevice(
        {
          host: r.httpsHost,
          transport: "https",
          idScope: "0ne00BEEF00",
          attestation: "symmetric-key",
          key: Buffer.alloc(32, 2).toString("base64"),
          payload: { a: 1 },
        },
        regId,
      ),
      { signal: new AbortController().signal, timeoutMs: 5000, tls: { ca: pki.caCert } },
    );
    const seen = r.seen.slice(from);
    assert.deepEqual(
      seen.map((s) => `${s.method} ${s.url}`),
      [
        `PUT ${httpRegisterPath("0ne00BEEF00", regId)}`,
        `GET ${httpStatusPath("0ne00BEEF00", regId, seen[1].operationId as string)}`,
        `GET ${httpStatusPath("0ne00BEEF00", regId, seen[1].operationId as string)}`,
      ],
    );
    assert.match(seen[0].url ?? "", /\?api-version=2019-03-31$/u);
    for (const s of seen) {
      assert.equal(s.headers?.accept, "application/json");
      assert.equal(s.headers?.["content-type"], "application/json; charset=utf-8");
      assert.equal(s.headers?.["user-agent"], USER_AGENT);
      assert.match(
        String(s.headers?.authorization),
        /^SharedAccessSignature sr=0ne00BEEF00\/registrations\/https-wire-1&/u,
      );
    }
    assert.equal(seen[0].body, JSON.stringify({ registrationId: regId, payload: { a: 1 } }));
    assert.equal(seen[0].headers?.["content-length"], String(Buffer.byteLength(seen[0].body)));
    assert.equal(seen[1].body, "{}", "the Node SDK's status GET body");
  });
});
