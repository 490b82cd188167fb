/**
 * The Azure DPS serving side over HTTPS against Microsoft's device SDK (the shared cases
 * of test/support/azure-sdk-suite.ts), and what the SDK does not send: the Device
 * Registration Status Lookup, the Retry-After header of a 429, bad bodies, unknown paths,
 * written with node:https as a REST client would.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { Agent, request } from "node:https";
import { it } from "mocha";
import { deriveDeviceKey, dpsResource, signSas } from "../../../lib/dialects/azure-dps/sas";
import { httpLookupPath, httpRegisterPath, httpStatusPath } from "../../../lib/dialects/azure-dps/wire";
import { ID_SCOPE, KEYS } from "../../support/azure-dps-service";
import { azureSdkSuite, type SdkSuiteContext } from "../../support/azure-sdk-suite";

interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Record<string, unknown>;
}

function call(
  c: SdkSuiteContext,
  method: string,
  path: string,
  auth?: string,
  body?: string | Buffer,
  client?: { cert: string; key: string; agent: Agent },
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: c.ip(),
        port: 443,
        method,
        path,
        ca: readFileSync(c.pki().serverCaPath),
        headers: { "content-type": "application/json", ...(auth ? { authorization: auth } : {}) },
        agent: client?.agent ?? false,
        ...(client ? { cert: client.cert, key: client.key } : {}),
      },
      (res) => {
        let text = "";
        res.on("data", (d: Buffer) => (text += d.toString()));
        res.on("end", () =>
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body: text ? (JSON.parse(text) as Record<string, unknown>) : {},
          }),
        );
      },
    );
    req.on("error", reject);
    req.end(body);
  });
}

const memberToken = (id: string) =>
  signSas(dpsResource(ID_SCOPE, id), deriveDeviceKey(KEYS.groupPrimary, id), Date.now() / 1000 + 600, {
    encoding: "upper",
  });

azureSdkSuite("https", (c) => {
  it("the Device Registration Status Lookup answers a registered device's state, 404 for one never registered", async () => {
    const known = await call(
      c,
      "POST",
      httpLookupPath(ID_SCOPE, "group-member-1"),
      memberToken("group-member-1"),
      "{}",
    );
    assert.equal(known.status, 200, JSON.stringify(known.body));
    assert.equal(known.body.registrationId, "group-member-1");
    assert.equal(known.body.status, "assigned");
    assert.deepEqual(known.body.symmetricKey, { enrollmentGroupId: "group-sym" });
    const never = await call(
      c,
      "POST",
      httpLookupPath(ID_SCOPE, "group-member-9"),
      memberToken("group-member-9"),
      "{}",
    );
    assert.equal(never.status, 404);
    assert.equal(never.body.errorCode, 404201);
  });

  it("register answers 202 with a Retry-After header; polls past the limit get 429 with Retry-After, then 200", async () => {
    const id = "raw-member-1";
    const token = memberToken(id);
    const reg = await call(
      c,
      "PUT",
      httpRegisterPath(ID_SCOPE, id),
      token,
      JSON.stringify({ registrationId: id }),
    );
    assert.equal(reg.status, 202);
    assert.equal(reg.headers["retry-after"], "0");
    assert.equal(reg.body.status, "assigning");
    const op = reg.body.operationId as string;
    const answers: Reply[] = [];
    for (let i = 0; i < 4; i++) answers.push(await call(c, "GET", httpStatusPath(ID_SCOPE, id, op), token));
    // The limit is 3 polls per 3 s: the fourth is 429, with Azure's error body.
    assert.deepEqual(
      answers
        .slice(0, 3)
        .map((a) => a.status)
        .filter((s) => s !== 200 && s !== 202),
      [],
    );
    assert.equal(answers[3].status, 429);
    assert.ok(Number(answers[3].headers["retry-after"]) >= 1);
    assert.equal(answers[3].body.errorCode, 429001);
    const done = answers.find((a) => a.status === 200);
    assert.equal((done?.body.registrationState as Record<string, unknown>).status, "assigned");
  });

  it("another device's operation id is not found (404202); a bad body is 400, a large one 413; no key, 401", async () => {
    const token = memberToken("raw-member-2");
    const other = await call(
      c,
      "PUT",
      httpRegisterPath(ID_SCOPE, "raw-member-2"),
      token,
      JSON.stringify({ registrationId: "raw-member-2" }),
    );
    assert.equal(other.status, 202);
    const stolen = await call(
      c,
      "GET",
      httpStatusPath(ID_SCOPE, "raw-member-3", other.body.operationId as string),
      memberToken("raw-member-3"),
    );
    assert.equal(stolen.status, 404);
    assert.equal(stolen.body.errorCode, 404202);
    const bad = await call(c, "PUT", httpRegisterPath(ID_SCOPE, "raw-member-2"), token, "not json");
    assert.equal(bad.status, 400);
    const big = await call(
      c,
      "PUT",
      httpRegisterPath(ID_SCOPE, "raw-member-2"),
      token,
      Buffer.alloc(200 * 1024, 0x20),
    );
    assert.equal(big.status, 413);
    const none = await call(c, "PUT", httpRegisterPath(ID_SCOPE, "raw-member-2"), undefined, "{}");
    assert.equal(none.status, 401);
    assert.equal(none.body.errorCode, 401002);
    const path = await call(c, "GET", "/nothing/here", token);
    assert.equal(path.status, 404);
  });

  it("X.509 over a client that resumes TLS sessions: every request still shows its whole chain", async () => {
    // Node's https.Agent resumes sessions, and a resumed session carries no chain: the
    // service turns resumption off, so the poll proves the intermediate again.
    const d = c.pki().device("x509-resume-1", "intermediate");
    const client = {
      cert: d.cert,
      key: d.key,
      agent: new Agent({ keepAlive: false, maxCachedSessions: 10 }),
    };
    const id = "x509-resume-1";
    const reg = await call(
      c,
      "PUT",
      httpRegisterPath(ID_SCOPE, id),
      undefined,
      JSON.stringify({ registrationId: id }),
      client,
    );
    assert.equal(reg.status, 202, JSON.stringify(reg.body));
    const poll = await call(
      c,
      "GET",
      httpStatusPath(ID_SCOPE, id, reg.body.operationId as string),
      undefined,
      undefined,
      client,
    );
    assert.equal(poll.status, 200, JSON.stringify(poll.body));
    assert.equal(poll.body.status, "assigned");
    client.agent.destroy();
  });
});
