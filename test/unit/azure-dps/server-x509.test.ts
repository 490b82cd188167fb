/**
 * X.509 chains as the Azure DPS service checks them (lib/dialects/azure-dps/server-x509.ts),
 * with certificates openssl made: a chain through an intermediate reaches the group's
 * root; a missing intermediate does not; an enrollment of the intermediate itself takes
 * the leaf alone; a second PKI with the very same names (a forged issuer) reaches nothing;
 * an individual enrollment's own certificate; expiry; the CN.
 */
import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import { before, describe, it } from "mocha";
import {
  chainReaches,
  commonName,
  leafIs,
  parseCertificates,
} from "../../../lib/dialects/azure-dps/server-x509";
import { makeAzurePki, type AzurePki } from "../../support/azure-dps-fixtures";

const chainOf = (pem: string) => parseCertificates([pem]);
// Each check reads the clock after its certificates exist: validity starts when openssl signs.

describe("Azure DPS X.509 chains", () => {
  let pki: AzurePki;
  let forged: AzurePki;
  before(() => {
    pki = makeAzurePki("127.0.0.1");
    forged = makeAzurePki("127.0.0.1");
  });

  it("a leaf and its intermediate reach the group's root; the leaf alone does not", () => {
    const d = pki.device("dev-a", "intermediate");
    const root = chainOf(pki.rootCa);
    assert.equal(chainReaches(chainOf(d.cert), root, Date.now()), true);
    assert.equal(chainReaches(chainOf(d.leaf), root, Date.now()), false);
  });

  it("an enrollment of the intermediate takes the leaf alone", () => {
    const d = pki.device("dev-b", "intermediate");
    assert.equal(chainReaches(chainOf(d.leaf), chainOf(pki.intermediateCa), Date.now()), true);
  });

  it("certificates of another PKI with the same names reach nothing (names match, signatures do not)", () => {
    const byRoot = forged.device("dev-c", "root");
    assert.equal(new X509Certificate(byRoot.leaf).issuer, new X509Certificate(pki.rootCa).subject);
    assert.equal(chainReaches(chainOf(byRoot.cert), chainOf(pki.rootCa), Date.now()), false);
    const byInter = forged.device("dev-d", "intermediate");
    assert.equal(chainReaches(chainOf(byInter.cert), chainOf(pki.rootCa), Date.now()), false);
    assert.equal(chainReaches(chainOf(byInter.cert), chainOf(pki.intermediateCa), Date.now()), false);
  });

  it("an individual enrollment's own certificate is the leaf itself", () => {
    const d = pki.device("dev-e", "self");
    const other = pki.device("dev-e", "self");
    assert.equal(leafIs(chainOf(d.cert), chainOf(d.cert), Date.now()), true);
    assert.equal(leafIs(chainOf(other.cert), chainOf(d.cert), Date.now()), false);
  });

  it("an expired chain reaches nothing; the CN is read from the subject", () => {
    const d = pki.device("dev-f", "intermediate");
    assert.equal(
      chainReaches(chainOf(d.cert), chainOf(pki.rootCa), Date.now() + 30 * 24 * 3600 * 1000),
      false,
    );
    assert.equal(commonName(new X509Certificate(d.leaf)), "dev-f");
  });
});
