import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { createPrivateKey, generateKeyPairSync, X509Certificate } from "node:crypto";
import { mkdtempSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "mocha";
import { createKeyAndCsr, parseCsr, PkiError, tamperCsr } from "../../../lib/pki/csr";
import { ensureDemoPki } from "../../../lib/pki/demo-pki";
import {
  CertificateAuthority,
  EKU_CLIENT_AUTH,
  EKU_OCF_IDENTITY,
  EKU_SERVER_AUTH,
  issueCertificate,
} from "../../../lib/pki/signer";
import { certificateState, renewalDelayMs } from "../../../lib/pki/validity";
import { validityMidpoint, verifyChain } from "../../../lib/pki/verify";
import { issueDevice, makeCa } from "../../support/dps-fixtures";

const DI = "0b8c3a34-5b2c-4d9a-9f3e-2a7f0e6d1c11";

function openssl(args: string[], cwd: string): string {
  return execFileSync("openssl", args, { cwd, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
}

describe("pki: CSR", () => {
  it("round-trips: the CSR carries the CN and an EC P-256 key whose signature verifies", () => {
    const { csr, privateKey } = createKeyAndCsr(`uuid:${DI}`);
    const parsed = parseCsr(csr);
    assert.equal(parsed.commonName, `uuid:${DI}`);
    assert.equal(parsed.namedCurve, "P-256");
    assert.equal(createPrivateKey(privateKey).asymmetricKeyDetails?.namedCurve, "prime256v1");
  });

  it("makes CSRs openssl accepts, and reads CSRs openssl makes", () => {
    const dir = mkdtempSync(join(tmpdir(), "dps-csr-"));
    writeFileSync(join(dir, "mine.csr"), createKeyAndCsr(`uuid:${DI}`).csr);
    assert.match(
      openssl(["req", "-in", "mine.csr", "-noout", "-verify", "-subject"], dir),
      new RegExp(`uuid:${DI}`),
    );
    openssl(["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "k.pem"], dir);
    openssl(["req", "-new", "-key", "k.pem", "-subj", `/CN=uuid:${DI}`, "-out", "theirs.csr"], dir);
    assert.equal(parseCsr(readFileSync(join(dir, "theirs.csr"), "utf8")).commonName, `uuid:${DI}`);
  });

  it("refuses a CSR whose signature is broken", () => {
    const bad = tamperCsr(createKeyAndCsr(`uuid:${DI}`).csr);
    assert.throws(
      () => parseCsr(bad),
      (e: unknown) => e instanceof PkiError && e.code === "CSR_SIGNATURE",
    );
  });

  it("refuses text that is not a CSR, and DER garbage inside a PEM block", () => {
    assert.throws(
      () => parseCsr("hello"),
      (e: unknown) => e instanceof PkiError && e.code === "CSR_INVALID",
    );
    const junk = `-----BEGIN CERTIFICATE REQUEST-----\n${Buffer.from("not der at all").toString("base64")}\n-----END CERTIFICATE REQUEST-----\n`;
    assert.throws(
      () => parseCsr(junk),
      (e: unknown) => e instanceof PkiError && e.code === "CSR_INVALID",
    );
  });

  it("refuses an RSA CSR (EC keys only)", () => {
    const dir = mkdtempSync(join(tmpdir(), "dps-rsa-"));
    openssl(
      [
        "req",
        "-new",
        "-newkey",
        "rsa:1024",
        "-nodes",
        "-keyout",
        "k.pem",
        "-subj",
        "/CN=uuid:x",
        "-out",
        "r.csr",
      ],
      dir,
    );
    assert.throws(
      () => parseCsr(readFileSync(join(dir, "r.csr"), "utf8")),
      (e: unknown) => e instanceof PkiError && e.code === "KEY_UNSUPPORTED",
    );
  });
});

describe("pki: signing identity certificates", () => {
  it("signs a CSR as plgd's CA does, and openssl verifies the result", () => {
    const hub = makeCa("Hub CA");
    const { csr, privateKey } = createKeyAndCsr(`uuid:${DI}`);
    const { certificate, notAfter } = hub.authority.signIdentity(parseCsr(csr), {
      commonName: `uuid:${DI}`,
      validityMs: 86400_000,
    });
    const x = new X509Certificate(certificate);
    assert.equal(x.subject, `CN=uuid:${DI}`);
    assert.deepEqual(x.keyUsage, [EKU_CLIENT_AUTH, EKU_SERVER_AUTH, EKU_OCF_IDENTITY]);
    assert.ok(x.checkPrivateKey(createPrivateKey(privateKey)));
    assert.equal(new Date(x.validTo).getTime(), Math.floor(notAfter.getTime() / 1000) * 1000);
    const dir = mkdtempSync(join(tmpdir(), "dps-sign-"));
    writeFileSync(join(dir, "ca.pem"), hub.cert);
    writeFileSync(join(dir, "id.pem"), certificate);
    assert.match(
      openssl(["verify", "-CAfile", "ca.pem", "-purpose", "sslclient", "id.pem"], dir),
      /id.pem: OK/,
    );
  });

  it("clamps validity to the CA's own", () => {
    const hub = makeCa("Short CA", new Date(Date.now() - 86400_000), new Date(Date.now() + 86400_000));
    const { notAfter } = hub.authority.signIdentity(parseCsr(createKeyAndCsr(`uuid:${DI}`).csr), {
      commonName: `uuid:${DI}`,
      validityMs: 365 * 86400_000,
    });
    assert.ok(notAfter.getTime() <= new Date(hub.authority.certificate.validTo).getTime());
  });

  it("refuses a CA whose key does not match, or a certificate that is not a CA", () => {
    const a = makeCa("A");
    const b = makeCa("B");
    assert.throws(() => CertificateAuthority.fromPem(a.cert, b.key), /does not belong/);
    const leaf = issueDevice(a.authority, "leaf");
    assert.throws(() => CertificateAuthority.fromPem(leaf.cert, leaf.key), /not a CA/);
    assert.throws(() => CertificateAuthority.fromPem(a.cert, "nope"), /does not parse/);
  });
});

describe("pki: chain verification", () => {
  const mfg = makeCa("Mfg CA", new Date(Date.now() - 400 * 86400_000));
  const trusted = [mfg.authority.certificate];
  const now = new Date();

  it("accepts a device certificate with EKU clientAuth from the trusted CA", () => {
    const dev = new X509Certificate(issueDevice(mfg.authority, "dev").cert);
    const r = verifyChain([dev], trusted, { at: now, requireClientAuth: true });
    assert.equal(r.ok, true);
  });

  it("refuses a certificate from another CA", () => {
    const other = makeCa("Other CA");
    const dev = new X509Certificate(issueDevice(other.authority, "dev").cert);
    const r = verifyChain([dev], trusted, { at: now, requireClientAuth: true });
    assert.equal(r.ok, false);
    assert.equal(!r.ok && r.code, "CHAIN_UNTRUSTED");
  });

  it("refuses a leaf without EKU clientAuth", () => {
    const dev = new X509Certificate(issueDevice(mfg.authority, "dev", { eku: [EKU_SERVER_AUTH] }).cert);
    const r = verifyChain([dev], trusted, { at: now, requireClientAuth: true });
    assert.equal(!r.ok && r.code, "EKU_MISSING");
  });

  it("refuses an expired leaf now, and accepts it at the midpoint of its validity", () => {
    const dev = new X509Certificate(
      issueDevice(mfg.authority, "old", {
        notBefore: new Date(Date.now() - 200 * 86400_000),
        notAfter: new Date(Date.now() - 100 * 86400_000),
      }).cert,
    );
    const r = verifyChain([dev], trusted, { at: now, requireClientAuth: true });
    assert.equal(!r.ok && r.code, "CHAIN_EXPIRED");
    assert.equal(
      verifyChain([dev], trusted, { at: validityMidpoint(dev), requireClientAuth: true }).ok,
      true,
    );
  });

  it("follows an intermediate the device presents, and trusts a configured intermediate", () => {
    const root = makeCa("Root");
    const k = generateKeyPairSync("ec", { namedCurve: "P-256" });
    const interCert = issueCertificate(
      {
        commonName: "Intermediate",
        publicKey: k.publicKey,
        notBefore: new Date(Date.now() - 86400_000),
        notAfter: new Date(Date.now() + 86400_000),
        ca: true,
        keyUsage: ["keyCertSign", "cRLSign"],
      },
      root.authority.signingIdentity,
    );
    const inter = CertificateAuthority.fromPem(
      interCert,
      k.privateKey.export({ type: "pkcs8", format: "pem" }).toString(),
    );
    const dev = new X509Certificate(issueDevice(inter, "dev").cert);
    const interX = new X509Certificate(interCert);
    assert.equal(
      verifyChain([dev, interX], [root.authority.certificate], { at: now, requireClientAuth: true }).ok,
      true,
    );
    assert.equal(
      verifyChain([dev], [root.authority.certificate], { at: now, requireClientAuth: true }).ok,
      false,
    );
    assert.equal(verifyChain([dev], [interX], { at: now, requireClientAuth: true }).ok, true);
  });
});

describe("pki: validity", () => {
  it("says valid, expiring within an hour, expired", () => {
    const from = new Date(0);
    const to = new Date(10_000_000);
    assert.equal(certificateState(from, to, 1000), "valid");
    assert.equal(certificateState(from, to, to.getTime() - 3599_000), "expiring");
    assert.equal(certificateState(from, to, to.getTime() + 1), "expired");
  });

  it("renews at 2/3 of the remaining validity, at once when expiring", () => {
    assert.equal(renewalDelayMs(new Date(90_000_000), 0), 60_000_000);
    assert.equal(renewalDelayMs(new Date(1_000_000), 0), 0);
  });
});

describe("pki: demo PKI", () => {
  it("creates every file once, keys 0600, and openssl verifies the chains", () => {
    const dir = join(mkdtempSync(join(tmpdir(), "dps-demo-")), "pki");
    const a = ensureDemoPki(dir);
    assert.equal(a.created, true);
    assert.equal(statSync(a.deviceKey).mode & 0o777, 0o600);
    assert.equal(statSync(a.hubCaKey).mode & 0o777, 0o600);
    assert.match(readFileSync(join(dir, "README.txt"), "utf8"), /FOR TRYING OUT ONLY/);
    assert.match(
      openssl(["verify", "-CAfile", a.manufacturerCaCert, "-purpose", "sslclient", a.deviceCert], dir),
      /OK/,
    );
    assert.match(
      openssl(["verify", "-CAfile", a.dpsCaCert, "-purpose", "sslserver", a.dpsServerCert], dir),
      /OK/,
    );
    const b = ensureDemoPki(dir);
    assert.equal(b.created, false);
    assert.equal(readFileSync(b.deviceCert, "utf8"), readFileSync(a.deviceCert, "utf8"));
  });
});
