import assert from "node:assert/strict";
import { createPrivateKey, X509Certificate } from "node:crypto";
import { describe, it } from "mocha";
import { ownerToUuid, parseEnrollmentGroup } from "../../../lib/dialects/plgd-dps/enrollment";
import {
  CF_JSON,
  CF_OCF_CBOR,
  decodeBody,
  encodeBody,
  parseAcls,
  parseCloudConf,
  parseCreds,
  PATHS,
} from "../../../lib/dialects/plgd-dps/ocf";
import { DpsService, type DpsAuditEvent, type DpsServerRequest } from "../../../lib/dialects/plgd-dps/server";
import { createKeyAndCsr, tamperCsr } from "../../../lib/pki/csr";
import { EKU_SERVER_AUTH } from "../../../lib/pki/signer";
import { validityMidpoint } from "../../../lib/pki/verify";
import { HUB_ID, issueDevice, makeDpsFixture } from "../../support/dps-fixtures";
import { CertificateAuthority } from "../../../lib/pki/signer";

const DI = "0b8c3a34-5b2c-4d9a-9f3e-2a7f0e6d1c11";
const fx = makeDpsFixture();

function service(over = {}, audit: DpsAuditEvent[] = [], now?: () => Date) {
  return new DpsService({
    groups: [parseEnrollmentGroup(fx.groupConfig(over))],
    onAudit: (e) => audit.push(e),
    now,
  });
}

function req(
  path: string,
  method: string,
  body?: object,
  chain: X509Certificate[] | null = fx.deviceChain,
): DpsServerRequest {
  const r: DpsServerRequest = { method, path: `/${path}`, remote: "127.0.0.1:4000", accept: CF_OCF_CBOR };
  if (chain) r.peerCertificateChain = chain;
  if (body) {
    r.payload = encodeBody(body);
    r.contentFormat = CF_OCF_CBOR;
  }
  return r;
}

describe("plgd: enrollment groups", () => {
  it("maps an owner to a UUID as plgd hub does (v5, URL namespace; UUIDs kept)", () => {
    // Python's uuid.uuid5(uuid.NAMESPACE_URL, ...) as an independent implementation.
    assert.equal(ownerToUuid("user-1"), "e9f7230f-ccb4-582f-82d6-c636512ef431");
    assert.equal(ownerToUuid("1"), "b80c8fef-a677-5340-85fb-2c162d75df03");
    assert.equal(ownerToUuid(DI.toUpperCase()), DI);
  });

  it("refuses a group with a bad id, no chain, a short pre-shared key or a mismatched CA key", () => {
    assert.throws(() => parseEnrollmentGroup(fx.groupConfig({ id: "nope" })), /GUID/);
    assert.throws(() => parseEnrollmentGroup(fx.groupConfig({ attestationChain: "" })), /chain/);
    assert.throws(() => parseEnrollmentGroup(fx.groupConfig({ preSharedKey: "short" })), /16 characters/);
    assert.throws(
      () =>
        parseEnrollmentGroup(
          fx.groupConfig({ authority: { certificate: fx.hubCa.cert, key: fx.mfgCa.key } }),
        ),
      /does not belong/,
    );
  });
});

describe("plgd: service handlers", () => {
  it("answers every step in OCF CBOR", async () => {
    const audit: DpsAuditEvent[] = [];
    const s = service({ preSharedKey: "0123456789abcdef" }, audit);
    const time = await s.handle(req(PATHS.time, "GET"));
    assert.equal(time.code, "2.05");
    assert.equal(time.contentFormat, CF_OCF_CBOR);
    assert.ok(!Number.isNaN(Date.parse((decodeBody(time.payload, CF_OCF_CBOR) as { time: string }).time)));

    const own = await s.handle(req(PATHS.owner, "GET"));
    assert.deepEqual(decodeBody(own.payload, own.contentFormat), { devowneruuid: ownerToUuid("user-1") });

    const cloud = await s.handle(req(PATHS.cloud, "POST", { di: DI }));
    assert.equal(cloud.code, "2.04");
    const cc = parseCloudConf(decodeBody(cloud.payload, cloud.contentFormat));
    assert.deepEqual(cc, {
      at: "static-access-token-123",
      apn: "plgd",
      cis: "coaps+tcp://hub.example:5684",
      sid: HUB_ID,
      "x.org.iotivity.servers": [
        { uri: "coaps+tcp://hub.example:5684", id: HUB_ID },
        { uri: "coaps+tcp://hub2.example:5684", id: HUB_ID },
      ],
    });
    const sel = await s.handle(
      req(PATHS.cloud, "POST", {
        di: DI,
        selectedGateway: { uri: "coaps+tcp://hub2.example:5684", id: HUB_ID },
      }),
    );
    assert.equal(
      parseCloudConf(decodeBody(sel.payload, sel.contentFormat)).cis,
      "coaps+tcp://hub2.example:5684",
    );

    const { csr, privateKey } = createKeyAndCsr(`uuid:${DI}`);
    const cr = await s.handle(
      req(PATHS.credentials, "POST", { di: DI, csr: { data: csr, encoding: "oic.sec.encoding.pem" } }),
    );
    assert.equal(cr.code, "2.04");
    const creds = parseCreds(decodeBody(cr.payload, cr.contentFormat)).creds;
    const mine = creds.find((c) => c.credusage === "oic.sec.cred.cert");
    assert.ok(mine?.publicdata);
    const leaf = new X509Certificate(mine.publicdata.data.toString());
    assert.equal(leaf.subject, `CN=uuid:${DI}`);
    assert.ok(leaf.checkPrivateKey(createPrivateKey(privateKey)));
    const trust = creds.filter((c) => c.credusage === "oic.sec.cred.trustca");
    assert.equal(trust.length, 1, "hub CA pool and signing CA are the same certificate here");
    assert.ok(leaf.verify(new X509Certificate(trust[0].publicdata?.data.toString() ?? "").publicKey));
    const psk = creds.find((c) => c.credtype === 1);
    assert.equal(Buffer.from(psk?.privatedata?.data ?? "").toString(), "0123456789abcdef");

    const acls = await s.handle(req(PATHS.acls, "GET"));
    assert.equal(acls.code, "2.05");
    const a = parseAcls(decodeBody(acls.payload, acls.contentFormat)).aclist2;
    assert.deepEqual(
      a.map((x) => x.subject),
      [{ uuid: ownerToUuid("user-1") }, { conntype: "anon-clear" }, { uuid: HUB_ID }],
    );

    const provisioned = audit.filter((e) => e.outcome === "provisioned");
    assert.equal(provisioned.length, 1);
    assert.equal(provisioned[0].deviceId, DI);
    assert.equal(provisioned[0].profile, fx.groupConfig().id);
    const text = JSON.stringify(audit);
    for (const secret of ["static-access-token-123", "0123456789abcdef", "PRIVATE KEY"])
      assert.ok(!text.includes(secret), `audit leaks ${secret}`);
  });

  it("answers JSON when the Accept option asks for it, and refuses unknown formats with 4.06", async () => {
    const s = service();
    const r = await s.handle({ ...req(PATHS.owner, "GET"), accept: CF_JSON });
    assert.equal(r.contentFormat, CF_JSON);
    assert.ok(JSON.parse(r.payload.toString()).devowneruuid);
    assert.equal((await s.handle({ ...req(PATHS.owner, "GET"), accept: 41 })).code, "4.06");
  });

  it("refuses an unknown chain with 4.03 and no certificate with 4.01, with a diagnostic", async () => {
    const audit: DpsAuditEvent[] = [];
    const s = service({}, audit);
    const other = await s.handle(
      req(PATHS.time, "GET", undefined, [new X509Certificate(fx.other.device.cert)]),
    );
    assert.equal(other.code, "4.03");
    assert.match(
      other.payload.toString(),
      /untrusted certificate: no enrollment group for issuer "Other Manufacturer CA"/,
    );
    const none = await s.handle(req(PATHS.time, "GET", undefined, null));
    assert.equal(none.code, "4.01");
    assert.deepEqual(
      audit.map((e) => [e.outcome, e.reason, e.step]),
      [
        ["refused", "denied", "time"],
        ["refused", "denied", "time"],
      ],
    );
    // and it keeps serving the known device
    assert.equal((await s.handle(req(PATHS.time, "GET"))).code, "2.05");
  });

  it("requires EKU clientAuth, and allows an expired leaf only where the group says so", async () => {
    const mfg = CertificateAuthority.fromPem(fx.mfgCa.cert, fx.mfgCa.key);
    const noEku = issueDevice(mfg, "no eku", { eku: [EKU_SERVER_AUTH] });
    const s = service();
    const r = await s.handle(req(PATHS.time, "GET", undefined, [new X509Certificate(noEku.cert)]));
    assert.equal(r.code, "4.03");
    assert.match(r.payload.toString(), /clientAuth/);

    const from = new Date(mfg.certificate.validFrom).getTime();
    const expired = new X509Certificate(
      issueDevice(mfg, "old", { notBefore: new Date(from + 1000), notAfter: new Date(from + 2000) }).cert,
    );
    assert.ok(validityMidpoint(expired).getTime() < Date.now());
    assert.equal((await s.handle(req(PATHS.time, "GET", undefined, [expired]))).code, "4.03");
    const lenient = service({ expiredCertificateEnabled: true });
    assert.equal((await lenient.handle(req(PATHS.time, "GET", undefined, [expired]))).code, "2.05");
  });

  it("refuses bad input with the right code and keeps serving", async () => {
    const audit: DpsAuditEvent[] = [];
    const s = service({}, audit);
    const post = (path: string, payload: Buffer, cf = CF_OCF_CBOR) =>
      s.handle({ ...req(path, "POST"), payload, contentFormat: cf });
    assert.equal((await post(PATHS.cloud, Buffer.from([0xff]))).code, "4.00");
    assert.equal((await post(PATHS.cloud, encodeBody({ di: "not-a-uuid" }))).code, "4.00");
    assert.equal((await post(PATHS.cloud, Buffer.from("{}"), 42)).code, "4.15");
    const bad = await post(
      PATHS.credentials,
      encodeBody({
        di: DI,
        csr: { data: tamperCsr(createKeyAndCsr(`uuid:${DI}`).csr), encoding: "oic.sec.encoding.pem" },
      }),
    );
    assert.equal(bad.code, "4.00");
    assert.match(bad.payload.toString(), /signature does not match/);
    const notCsr = await post(
      PATHS.credentials,
      encodeBody({ di: DI, csr: { data: "hello", encoding: "oic.sec.encoding.pem" } }),
    );
    assert.equal(notCsr.code, "4.00");
    const otherDi = await post(
      PATHS.credentials,
      encodeBody({
        di: "11111111-2222-3333-4444-555555555555",
        csr: { data: createKeyAndCsr(`uuid:${DI}`).csr, encoding: "oic.sec.encoding.pem" },
      }),
    );
    assert.match(otherDi.payload.toString(), /but di is/);
    const noUuid = await post(
      PATHS.credentials,
      encodeBody({ csr: { data: createKeyAndCsr("device").csr, encoding: "oic.sec.encoding.pem" } }),
    );
    assert.match(noUuid.payload.toString(), /CN=uuid:<device id>/);
    const der = await post(
      PATHS.credentials,
      encodeBody({ di: DI, csr: { data: "x", encoding: "oic.sec.encoding.der" } }),
    );
    assert.match(der.payload.toString(), /unsupported CSR encoding/);
    assert.equal((await s.handle(req(PATHS.time, "POST"))).code, "4.05");
    assert.equal((await s.handle(req("nowhere", "GET"))).code, "4.04");
    assert.ok(audit.every((e) => e.outcome === "refused"));
    assert.equal((await s.handle(req(PATHS.owner, "GET"))).code, "2.05");
  });

  it("gives ACLs only after the device identified itself; an empty CSR returns only the CAs", async () => {
    const s = service();
    const early = await s.handle(req(PATHS.acls, "GET"));
    assert.equal(early.code, "4.03");
    assert.match(early.payload.toString(), /identified itself/);
    const cas = await s.handle(req(PATHS.credentials, "POST", { di: DI }));
    assert.equal(cas.code, "2.04");
    const creds = parseCreds(decodeBody(cas.payload, cas.contentFormat)).creds;
    assert.deepEqual(
      creds.map((c) => c.credusage),
      ["oic.sec.cred.trustca"],
    );
    await s.handle(req(PATHS.cloud, "POST", { di: DI }));
    assert.equal((await s.handle(req(PATHS.acls, "GET"))).code, "2.05");
  });
});
