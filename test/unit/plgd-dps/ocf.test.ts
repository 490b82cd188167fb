import assert from "node:assert/strict";
import { describe, it } from "mocha";
import {
  CF_CBOR,
  CF_JSON,
  CF_OCF_CBOR,
  OcfFormatError,
  decodeBody,
  encodeBody,
  parseAcls,
  parseCloudConf,
  parseCloudConfRequest,
  parseCreds,
  parseCredentialsRequest,
  parseOwnership,
  parseTime,
} from "../../../lib/dialects/plgd-dps/ocf";
import { DpsFlag, flagNames, legacyMask, maskOf, nextStep } from "../../../lib/dialects/plgd-dps/status";

const DI = "0b8c3a34-5b2c-4d9a-9f3e-2a7f0e6d1c11";

describe("ocf codecs", () => {
  it("round-trips CBOR maps with text and byte strings, leaving out undefined", () => {
    const body = {
      di: DI,
      csr: { data: "PEM", encoding: "oic.sec.encoding.pem" },
      skip: undefined,
      bytes: Buffer.from([1, 2, 3]),
    };
    const enc = encodeBody(body, CF_OCF_CBOR);
    assert.equal(enc[0] >> 5, 5, "a CBOR map");
    const dec = decodeBody(enc, CF_OCF_CBOR) as Record<string, unknown>;
    assert.deepEqual(Object.keys(dec).sort(), ["bytes", "csr", "di"]);
    assert.deepEqual(Buffer.from(dec.bytes as Uint8Array), Buffer.from([1, 2, 3]));
    assert.deepEqual(decodeBody(encodeBody({ a: 1 }, CF_CBOR), CF_CBOR), { a: 1 });
  });

  it("encodes a known CBOR byte sequence for {di: 'x'}", () => {
    assert.equal(encodeBody({ di: "x" }).toString("hex"), "a16264696178");
  });

  it("speaks JSON when asked (content format 50)", () => {
    assert.deepEqual(decodeBody(encodeBody({ a: "b" }, CF_JSON), CF_JSON), { a: "b" });
  });

  it("refuses empty bodies, non-CBOR and unknown content formats", () => {
    assert.throws(() => decodeBody(Buffer.alloc(0), CF_CBOR), /empty/);
    assert.throws(() => decodeBody(Buffer.from([0xff, 0xff]), CF_CBOR), OcfFormatError);
    assert.throws(() => decodeBody(Buffer.from("{}"), 42), /unsupported content format 42/);
  });
});

describe("ocf representations", () => {
  it("time needs an RFC 3339 time", () => {
    assert.deepEqual(parseTime({ time: "2026-01-01T00:00:00Z", status: "in-sync" }), {
      time: "2026-01-01T00:00:00Z",
      status: "in-sync",
    });
    assert.throws(() => parseTime({ time: "yesterday" }), /RFC 3339/);
    assert.throws(() => parseTime([]), /must be a map/);
  });

  it("ownership needs devowneruuid as a UUID", () => {
    assert.equal(parseOwnership({ devowneruuid: DI.toUpperCase() }).devowneruuid, DI);
    assert.throws(() => parseOwnership({}), /"devowneruuid" is missing/);
    assert.throws(() => parseOwnership({ devowneruuid: "me" }), /must be a UUID/);
  });

  it("cloud configuration request and answer", () => {
    assert.deepEqual(
      parseCloudConfRequest({ di: DI, selectedGateway: { uri: "coaps+tcp://h:1", id: "x" } }),
      {
        di: DI,
        selectedGateway: { uri: "coaps+tcp://h:1", id: "x" },
      },
    );
    assert.throws(() => parseCloudConfRequest({ di: 5 }), /"di" must be a text string/);
    const rep = parseCloudConf({
      at: "t",
      apn: "plgd",
      cis: "coaps+tcp://h:1",
      sid: "s",
      "x.org.iotivity.servers": [{ uri: "u", id: "i" }],
    });
    assert.equal(rep["x.org.iotivity.servers"]?.[0].uri, "u");
    assert.throws(() => parseCloudConf({ at: "t", apn: "p", cis: "c" }), /"sid" is missing/);
  });

  it("credentials request and oic.sec.cred", () => {
    assert.equal(
      parseCredentialsRequest({ di: DI, csr: { data: "x" } }).csr?.encoding,
      "oic.sec.encoding.pem",
    );
    assert.throws(() => parseCredentialsRequest({ csr: "x" }), /csr must be a map/);
    const creds = parseCreds({
      creds: [
        {
          credtype: 8,
          subjectuuid: DI,
          credusage: "oic.sec.cred.cert",
          publicdata: { data: "PEM", encoding: "oic.sec.encoding.pem" },
        },
      ],
    });
    assert.equal(creds.creds[0].credusage, "oic.sec.cred.cert");
    assert.throws(() => parseCreds({ creds: [{ subjectuuid: DI }] }), /"credtype" must be a number/);
    assert.throws(() => parseCreds({}), /"creds" must be an array/);
  });

  it("oic.sec.acl2", () => {
    const acl = parseAcls({
      aclist2: [{ permission: 31, subject: { uuid: DI }, resources: [{ wc: "*", if: ["*"] }], tag: "dps" }],
    });
    assert.equal(acl.aclist2[0].resources[0].wc, "*");
    assert.throws(
      () => parseAcls({ aclist2: [{ permission: 99, subject: { uuid: DI }, resources: [] }] }),
      /permission/,
    );
    assert.throws(
      () => parseAcls({ aclist2: [{ permission: 1, subject: {}, resources: [] }] }),
      /needs uuid/,
    );
  });
});

describe("status flags", () => {
  it("names flags, converts to the older numbering, and orders the steps", () => {
    const m = DpsFlag.INITIALIZED | DpsFlag.HAS_TIME | DpsFlag.GET_OWNER;
    assert.deepEqual(flagNames(m), ["INITIALIZED", "GET_OWNER", "HAS_TIME"]);
    assert.equal(maskOf(flagNames(m)), m);
    assert.equal(legacyMask(DpsFlag.INITIALIZED | DpsFlag.HAS_CREDENTIALS | DpsFlag.FAILURE), 1 | 2 | 64);
    assert.equal(nextStep(DpsFlag.INITIALIZED), "time");
    assert.equal(nextStep(DpsFlag.HAS_TIME | DpsFlag.HAS_OWNER), "cloud");
    assert.equal(nextStep(DpsFlag.HAS_TIME | DpsFlag.HAS_OWNER | DpsFlag.HAS_CLOUD), "credentials");
    assert.equal(DpsFlag.FAILURE, 1 << 30);
  });
});
