import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { before, describe, it } from "mocha";
import { ProvisioningError } from "../../../lib/model/errors";
import {
  buildProvisionAnswer,
  buildProvisionRefusal,
  buildProvisionRequest,
  DEFAULT_TOPICS,
  matchTopic,
  newRequestId,
  parseProvisionAnswer,
  parseProvisionRequest,
  PROVISION_APP_ID,
  templateError,
  topicFor,
  topicsError,
  type KuraProvisionAnswer,
  type KuraProvisionRequest,
} from "../../../lib/dialects/kura/namespace";
import { decodeKuraPayload, encodeKuraPayload, type KuraPayload } from "../../../lib/dialects/kura/payload";
import { protocDecode } from "../../support/protoc";
import { makeTestPki, type TestPki } from "../../support/pki";

const REQUEST: KuraProvisionRequest = {
  requestId: "0123456789abcdef0123456789abcdef",
  requesterClientId: "00E04C681234",
  activationKey: "Zq7nP4kVt2xWb9sLc3mRd8yFh5jGa6eU",
  identity: {
    displayName: "Line 3 gateway",
    modelName: "ReliaGATE 10-12",
    modelId: "RGATE-10-12",
    serialNumber: "SN-4711",
    firmwareVersion: "1.2.3",
    os: "Linux",
    osVersion: "6.1.0",
    osArch: "aarch64",
    applicationIds: ["CONF-V1", "DEPLOY-V2", "PROV-V1"],
  },
};

function coded(err: unknown, code: string, final: boolean, status?: number): boolean {
  assert.ok(err instanceof ProvisioningError, String(err));
  assert.equal(err.code, code, err.message);
  assert.equal(err.final, final);
  assert.equal(err.status, status);
  return true;
}

/** What the other side sees: through the wire format. */
function wire(p: KuraPayload): KuraPayload {
  return decodeKuraPayload(encodeKuraPayload(p));
}

describe("kura: the provisioning exchange in the Kura namespace", () => {
  let pki: TestPki;
  before(async () => {
    pki = makeTestPki("Kura namespace");
  });

  it("the default topics fill into the device's own $EDC subtree and read back into their values", async () => {
    assert.equal(topicsError(DEFAULT_TOPICS), undefined);
    const values = { account: "acme", clientId: "00E04C681234", appId: PROVISION_APP_ID, requestId: "r1" };
    assert.equal(topicFor(DEFAULT_TOPICS.request, values), "$EDC/acme/00E04C681234/PROV-V1/EXEC/provision");
    assert.equal(topicFor(DEFAULT_TOPICS.reply, values), "$EDC/acme/00E04C681234/PROV-V1/REPLY/r1");
    assert.equal(
      topicFor(DEFAULT_TOPICS.completed, values),
      "$EDC/acme/00E04C681234/PROV-V1/EXEC/provisioned",
    );
    assert.deepEqual(matchTopic(DEFAULT_TOPICS.reply, "$EDC/acme/00E04C681234/PROV-V1/REPLY/r1"), values);
    assert.equal(matchTopic(DEFAULT_TOPICS.request, "$EDC/acme/00E04C681234/PROV-V1/EXEC/other"), undefined);
    assert.equal(matchTopic(DEFAULT_TOPICS.request, "$EDC/acme//PROV-V1/EXEC/provision"), undefined);
    assert.equal(matchTopic(DEFAULT_TOPICS.request, "$EDC/acme/x/y/PROV-V1/EXEC/provision"), undefined);
  });

  it("templates a user sets are checked: whole-level placeholders, no wildcards, the client id, the reply's request id", async () => {
    assert.equal(templateError("prov/{account}/{clientId}/ask"), undefined);
    assert.match(templateError("prov/+/{clientId}") ?? "", /wildcard/);
    assert.match(templateError("prov/{clientId}/#") ?? "", /wildcard/);
    assert.match(templateError("prov/dev-{clientId}") ?? "", /whole level/);
    assert.match(templateError("prov/{client}/x") ?? "", /unknown placeholder \{client\}/);
    assert.match(templateError("prov/{clientId}/{clientId}") ?? "", /twice/);
    assert.match(templateError("prov/{account}/ask") ?? "", /lacks \{clientId\}/);
    assert.match(
      topicsError({ ...DEFAULT_TOPICS, reply: "$EDC/{account}/{clientId}/R" }) ?? "",
      /lacks \{requestId\}/,
    );
    assert.match(topicsError({ ...DEFAULT_TOPICS, completed: DEFAULT_TOPICS.request }) ?? "", /the same/);
  });

  it("a value that cannot stand in a topic level is a CONFIG error, never a wildcard in a topic", async () => {
    for (const clientId of ["a/b", "a+", "#", "", "a\0b", "x".repeat(257)])
      assert.throws(
        () => topicFor(DEFAULT_TOPICS.request, { account: "acme", clientId, appId: PROVISION_APP_ID }),
        (err) => coded(err, "CONFIG", true),
      );
    assert.throws(
      () => topicFor(DEFAULT_TOPICS.reply, { account: "acme", clientId: "c", appId: PROVISION_APP_ID }),
      (err) => coded(err, "CONFIG", true),
    );
  });

  it("the provision message carries the request metrics, the activation key and Kura's BIRTH names, as protoc reads them", async () => {
    const payload = buildProvisionRequest(REQUEST, 1764633600000);
    const text = await protocDecode(encodeKuraPayload(payload));
    for (const [name, value] of [
      ["request.id", REQUEST.requestId],
      ["requester.client.id", "00E04C681234"],
      ["activation.key", REQUEST.activationKey],
      ["model_name", "ReliaGATE 10-12"],
      ["serial_number", "SN-4711"],
      ["firmware_version", "1.2.3"],
      ["os_version", "6.1.0"],
      ["application_ids", "CONF-V1,DEPLOY-V2,PROV-V1"],
    ])
      assert.match(text, new RegExp(`name: "${name}"\\s+type: STRING\\s+string_value: "${value}"`));
    assert.match(text, /^timestamp: 1764633600000$/m);
    assert.deepEqual(parseProvisionRequest(wire(payload)), REQUEST);
    const bare = { requestId: "r-1", requesterClientId: "c", identity: {} };
    assert.deepEqual(parseProvisionRequest(wire(buildProvisionRequest(bare))), bare);
  });

  it("a provision message without a usable request id or requester, or with mistyped or oversized metrics, is INVALID", async () => {
    const base = buildProvisionRequest(REQUEST);
    const without = (name: string): KuraPayload => ({ metrics: base.metrics.filter((m) => m.name !== name) });
    const replaced = (name: string, m: KuraPayload["metrics"][number]): KuraPayload => ({
      metrics: [...without(name).metrics, m],
    });
    const bad: KuraPayload[] = [
      without("request.id"),
      replaced("request.id", { name: "request.id", type: "STRING", value: "a/b" }),
      replaced("request.id", { name: "request.id", type: "STRING", value: "x".repeat(65) }),
      replaced("request.id", { name: "request.id", type: "INT64", value: 5 }),
      without("requester.client.id"),
      replaced("requester.client.id", { name: "requester.client.id", type: "STRING", value: "#" }),
      replaced("model_name", { name: "model_name", type: "STRING", value: "m".repeat(1025) }),
      replaced("activation.key", { name: "activation.key", type: "BYTES", value: Buffer.from("k") }),
    ];
    for (const p of bad)
      assert.throws(
        () => parseProvisionRequest(wire(p)),
        (err) => coded(err, "INVALID", true),
      );
  });

  it("request ids are fresh and fit a topic level", async () => {
    const a = newRequestId(randomBytes);
    assert.match(a, /^[0-9a-f]{32}$/);
    assert.notEqual(a, newRequestId(randomBytes));
  });

  it("the answer: certificate chain, the account's configuration under MqttDataTransport's names, up to 9 applications", async () => {
    const answer: KuraProvisionAnswer = {
      certificateChain: [pki.serverCert, pki.caCert],
      configuration: {
        brokerUrl: "mqtts://broker.example.com:8883/",
        accountName: "acme",
        username: "dev-user",
        password: "s3cret!",
        clientId: "00E04C681234",
      },
      applications: Array.from({ length: 9 }, (_, i) => ({
        name: `app${i + 1}`,
        version: `1.0.${i}`,
        uri: `https://repo.example.com/app${i + 1}.dp`,
      })),
    };
    const payload = buildProvisionAnswer(answer);
    const text = await protocDecode(encodeKuraPayload(payload));
    assert.match(text, /name: "response.code"\s+type: INT32\s+int_value: 200/);
    for (const name of ["broker-url", "topic.context.account-name", "username", "password", "client-id"])
      assert.match(text, new RegExp(`name: "${name}"\\s+type: STRING`));
    assert.match(text, /name: "application.9.dp.uri"/);
    assert.deepEqual(parseProvisionAnswer(wire(payload)), answer);
    assert.deepEqual(
      parseProvisionAnswer(wire(buildProvisionAnswer({ certificateChain: [], applications: [] }))),
      {
        certificateChain: [],
        applications: [],
      },
    );
    assert.throws(
      () =>
        buildProvisionAnswer({ ...answer, applications: [...answer.applications, answer.applications[0]] }),
      (err) => coded(err, "CONFIG", true),
    );
    assert.throws(
      () =>
        buildProvisionAnswer({
          ...answer,
          configuration: { ...answer.configuration!, brokerUrl: "http://x" },
        }),
      (err) => coded(err, "CONFIG", true),
    );
  });

  it("a refusal gives its neutral code with the response code as the peer's word; 5xx may be retried", async () => {
    const cases: Array<[number, string, boolean]> = [
      [400, "INVALID", true],
      [403, "DENIED", true],
      [404, "NOT_FOUND", true],
      [409, "REFUSED", true],
      [500, "UNAVAILABLE", false],
      [503, "UNAVAILABLE", false],
      [302, "INVALID_ANSWER", true],
    ];
    for (const [status, code, final] of cases)
      assert.throws(
        () => parseProvisionAnswer(wire(buildProvisionRefusal(status, "activation key refused"))),
        (err) => coded(err, code, final, status) && /activation key refused/.test((err as Error).message),
      );
  });

  it("an answer that is not ours is INVALID_ANSWER", async () => {
    const ok = buildProvisionAnswer({ certificateChain: [pki.caCert], applications: [] });
    const bad: KuraPayload[] = [
      { metrics: [] },
      { metrics: [{ name: "response.code", type: "STRING", value: "200" }] },
      {
        metrics: [
          ...ok.metrics.filter((m) => m.name !== "certificate.chain"),
          { name: "certificate.chain", type: "STRING", value: "not a PEM" },
        ],
      },
      { metrics: [...ok.metrics, { name: "username", type: "STRING", value: "u" }] },
      { metrics: [...ok.metrics, { name: "broker-url", type: "STRING", value: "ftp://x" }] },
      { metrics: [...ok.metrics, { name: "application.2.dp.name", type: "STRING", value: "a" }] },
      { metrics: [...ok.metrics, { name: "password", type: "STRING", value: "p".repeat(1025) }] },
    ];
    for (const p of bad)
      assert.throws(
        () => parseProvisionAnswer(wire(p)),
        (err) => coded(err, "INVALID_ANSWER", true),
      );
  });
});
