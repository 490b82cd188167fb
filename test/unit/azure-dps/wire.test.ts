/**
 * Azure DPS wire facts (lib/dialects/azure-dps/wire.ts): topics, user names, HTTPS paths
 * and error bodies, checked against the strings Microsoft's SDKs write
 * (azure-iot-sdk-node provisioning/transport/mqtt/src/mqtt.ts and http/src/http.ts).
 */
import { describe, it } from "mocha";
import assert from "node:assert/strict";
import {
  AZURE_DPS_API_VERSION,
  DPS_ERRORS,
  errorBody,
  httpLookupPath,
  httpRegisterPath,
  httpStatusPath,
  isIdScope,
  isRegistrationId,
  mqttUserName,
  operationStatusTopic,
  parseHttpRequest,
  parseMqttUserName,
  parseRequestTopic,
  parseResponseTopic,
  registerTopic,
  responseTopic,
  RESPONSE_FILTER,
} from "../../../lib/dialects/azure-dps/wire";

const RID = "0c2f5a8e-3b1d-4c6e-9f7a-1b2c3d4e5f60";

describe("Azure DPS wire", () => {
  it("registration ids: Azure's rule (at most 128 of A-Z a-z 0-9 - . _ :, ending alphanumeric or -)", () => {
    for (const ok of ["a", "dev-1", "my.device_01:x", "A".repeat(128), "ends-"])
      assert.ok(isRegistrationId(ok), ok);
    for (const bad of ["", "has space", "x/y", "a".repeat(129), "ends.", "ends:", "ümlaut", 5, undefined])
      assert.ok(!isRegistrationId(bad), String(bad));
  });

  it("id scopes: short alphanumeric words", () => {
    assert.ok(isIdScope("0ne00000A0A"));
    for (const bad of ["", "0ne/x", "a".repeat(65), "0ne 1", null]) assert.ok(!isIdScope(bad), String(bad));
  });

  it("the topics are the Node SDK's", () => {
    assert.equal(RESPONSE_FILTER, "$dps/registrations/res/#");
    assert.equal(registerTopic(RID), `$dps/registrations/PUT/iotdps-register/?$rid=${RID}`);
    assert.equal(
      operationStatusTopic(RID, "4.abc.def"),
      `$dps/registrations/GET/iotdps-get-operationstatus/?$rid=${RID}&operationId=4.abc.def`,
    );
    assert.equal(responseTopic(202, RID, 3), `$dps/registrations/res/202/?$rid=${RID}&retry-after=3`);
    assert.equal(responseTopic(200, RID), `$dps/registrations/res/200/?$rid=${RID}`);
  });

  it("request topics parse back; anything else is undefined", () => {
    assert.deepEqual(parseRequestTopic(registerTopic(RID)), { kind: "register", rid: RID });
    assert.deepEqual(parseRequestTopic(operationStatusTopic(RID, "op-1")), {
      kind: "status",
      rid: RID,
      operationId: "op-1",
    });
    for (const bad of [
      "$dps/registrations/PUT/iotdps-register/?",
      "$dps/registrations/PUT/iotdps-register/?$rid=",
      `$dps/registrations/GET/iotdps-get-operationstatus/?$rid=${RID}`,
      "$dps/registrations/res/200/?$rid=1",
      "devices/x/messages/events/",
      `$dps/registrations/PUT/iotdps-register/?$rid=${"r".repeat(129)}`,
      "x".repeat(2000),
    ])
      assert.equal(parseRequestTopic(bad), undefined, bad.slice(0, 60));
  });

  it("response topics: status, rid and retry-after as the Node SDK reads them", () => {
    assert.deepEqual(parseResponseTopic(responseTopic(202, RID, 3)), {
      status: 202,
      rid: RID,
      retryAfterS: 3,
    });
    assert.deepEqual(parseResponseTopic(responseTopic(429, RID, 0)), {
      status: 429,
      rid: RID,
      retryAfterS: 0,
    });
    assert.deepEqual(parseResponseTopic(responseTopic(200, RID)), {
      status: 200,
      rid: RID,
      retryAfterS: undefined,
    });
    assert.deepEqual(parseResponseTopic(`$dps/registrations/res/202/?$rid=${RID}&retry-after=soon`), {
      status: 202,
      rid: RID,
      retryAfterS: undefined,
    });
    for (const bad of [
      "$dps/registrations/res/abc/?$rid=1",
      "$dps/registrations/res/99/?$rid=1",
      "$dps/registrations/res/600/?$rid=1",
      "$dps/registrations/res/200/?x=1",
      "$dps/registrations/res//?$rid=1",
      "$dps/registrations/PUT/iotdps-register/?$rid=1",
    ])
      assert.equal(parseResponseTopic(bad), undefined, bad);
  });

  it("MQTT user names: ours, and the SDK's with &ClientVersion read tolerantly", () => {
    assert.equal(AZURE_DPS_API_VERSION, "2019-03-31");
    assert.equal(mqttUserName("0ne1", "dev-1"), "0ne1/registrations/dev-1/api-version=2019-03-31");
    assert.deepEqual(parseMqttUserName(mqttUserName("0ne1", "dev-1")), {
      idScope: "0ne1",
      registrationId: "dev-1",
      apiVersion: "2019-03-31",
      extra: {},
    });
    const sdk = `0ne1/registrations/dev-1/api-version=2019-03-31&ClientVersion=${encodeURIComponent("azure-iot-provisioning-device/1.9.1")}`;
    assert.deepEqual(parseMqttUserName(sdk), {
      idScope: "0ne1",
      registrationId: "dev-1",
      apiVersion: "2019-03-31",
      extra: { ClientVersion: "azure-iot-provisioning-device/1.9.1" },
    });
    for (const bad of [
      "dev-1",
      "0ne1/registrations/dev-1/",
      "0ne1/devices/dev-1/api-version=1",
      "x".repeat(3000),
    ])
      assert.equal(parseMqttUserName(bad), undefined, bad.slice(0, 40));
  });

  it("HTTPS paths are the REST API's, and parse back", () => {
    assert.equal(
      httpRegisterPath("0ne1", "dev-1"),
      "/0ne1/registrations/dev-1/register?api-version=2019-03-31",
    );
    assert.equal(
      httpStatusPath("0ne1", "dev-1", "4.a.b"),
      "/0ne1/registrations/dev-1/operations/4.a.b?api-version=2019-03-31",
    );
    assert.equal(httpLookupPath("0ne1", "dev-1"), "/0ne1/registrations/dev-1?api-version=2019-03-31");
    assert.deepEqual(parseHttpRequest("PUT", httpRegisterPath("0ne1", "dev-1")), {
      kind: "register",
      idScope: "0ne1",
      registrationId: "dev-1",
      apiVersion: "2019-03-31",
    });
    assert.deepEqual(parseHttpRequest("GET", httpStatusPath("0ne1", "dev:1", "op")), {
      kind: "status",
      idScope: "0ne1",
      registrationId: "dev:1",
      operationId: "op",
      apiVersion: "2019-03-31",
    });
    assert.deepEqual(parseHttpRequest("POST", httpLookupPath("0ne1", "dev-1")), {
      kind: "lookup",
      idScope: "0ne1",
      registrationId: "dev-1",
      apiVersion: "2019-03-31",
    });
    for (const [m, u] of [
      ["GET", httpRegisterPath("0ne1", "dev-1")],
      ["PUT", "/0ne1/registrations/dev-1"],
      ["GET", "/0ne1/registrations/dev-1/operations/"],
      ["PUT", "/0ne1/devices/dev-1/register"],
      ["PUT", "/x"],
    ])
      assert.equal(parseHttpRequest(m, u), undefined, `${m} ${u}`);
  });

  it("error bodies: errorCode is the HTTP status times 1000 plus a number", () => {
    for (const e of Object.values(DPS_ERRORS))
      assert.equal(Math.floor(e.errorCode / 1000), e.status, e.message);
    const now = new Date("2026-01-02T03:04:05Z");
    assert.deepEqual(errorBody(DPS_ERRORS.unauthorized, "t-1", now), {
      errorCode: 401002,
      trackingId: "t-1",
      message: "The device is unauthorized for service.",
      timestampUtc: "2026-01-02T03:04:05.000Z",
    });
  });
});
