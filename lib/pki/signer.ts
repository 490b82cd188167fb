import {
  createHash,
  createPrivateKey,
  createPublicKey,
  randomBytes,
  sign,
  X509Certificate,
  type KeyObject,
} from "node:crypto";
import { isIPv4 } from "node:net";
import {
  bitString,
  boolean,
  children,
  decodeOid,
  expectTag,
  explicit,
  octetString,
  oid,
  readOne,
  sequence,
  time,
  tlv,
  unsignedInteger,
  type Tlv,
} from "./der";
import {
  OID_ECDSA_SHA256,
  OID_ECDSA_SHA384,
  PkiError,
  curveName,
  nameWithCommonName,
  type ParsedCsr,
} from "./csr";
import { splitCertificates, toPem } from "./pem";

export const EKU_CLIENT_AUTH = "1.3.6.1.5.5.7.3.2";
export const EKU_SERVER_AUTH = "1.3.6.1.5.5.7.3.1";
/** OCF identity certificate (plgd hub's certificate authority adds it). */
export const EKU_OCF_IDENTITY = "1.3.6.1.4.1.44924.1.6";

const KEY_USAGE_BITS = {
  digitalSignature: 0x80,
  keyEncipherment: 0x20,
  keyAgreement: 0x08,
  keyCertSign: 0x04,
  cRLSign: 0x02,
} as const;
export type KeyUsage = keyof typeof KEY_USAGE_BITS;

export interface CertificateTemplate {
  commonName: string;
  publicKey: KeyObject;
  /** The key's SubjectPublicKeyInfo (DER) when known already: spares exporting the key. */
  spki?: Buffer;
  notBefore: Date;
  notAfter: Date;
  ca?: boolean;
  keyUsage: KeyUsage[];
  extendedKeyUsage?: string[];
  /** DNS names and IPv4 addresses for subjectAltName. */
  altNames?: string[];
}

export interface SigningIdentity {
  /** DER Name of the issuer (the subject of the signing certificate). */
  name: Buffer;
  key: KeyObject;
  /** Subject key identifier of the signing certificate, for authorityKeyIdentifier. */
  keyId: Buffer;
}

function extension(id: string, critical: boolean, value: Buffer): Buffer {
  return critical
    ? sequence(oid(id), boolean(true), octetString(value))
    : sequence(oid(id), octetString(value));
}

function keyUsageBits(usages: KeyUsage[]): Buffer {
  const byte = usages.reduce((b, u) => b | KEY_USAGE_BITS[u], 0);
  let unused = 0;
  while (unused < 7 && !(byte & (1 << unused))) unused++;
  return bitString(Buffer.from([byte]), unused);
}

/** RFC 5280 method 1: SHA-1 of the subjectPublicKey bits (of a key, or of its SPKI DER). */
export function keyIdentifier(publicKey: KeyObject | Buffer): Buffer {
  const der = Buffer.isBuffer(publicKey) ? publicKey : publicKey.export({ type: "spki", format: "der" });
  const spki = readOne(der);
  const bits = expectTag(children(spki.content)[1], 0x03, "public key");
  return createHash("sha1").update(bits.content.subarray(1)).digest();
}

function signatureAlgorithm(key: KeyObject): { oid: string; hash: string } {
  if (key.asymmetricKeyType !== "ec")
    throw new PkiError("KEY_UNSUPPORTED", "signing keys must be EC (P-256 or P-384)");
  const curve = curveName(key);
  if (curve === "P-256") return { oid: OID_ECDSA_SHA256, hash: "sha256" };
  if (curve === "P-384") return { oid: OID_ECDSA_SHA384, hash: "sha384" };
  throw new PkiError("KEY_UNSUPPORTED", `signing keys must be EC P-256 or P-384, not ${curve ?? "unknown"}`);
}

function altName(n: string): Buffer {
  if (isIPv4(n)) return tlv(0x87, Buffer.from(n.split(".").map(Number)));
  return tlv(0x82, Buffer.from(n, "ascii"));
}

/** Builds and signs an X.509 v3 certificate; returns PEM. */
export function issueCertificate(t: CertificateTemplate, issuer: SigningIdentity): string {
  const alg = signatureAlgorithm(issuer.key);
  const spki = t.spki ?? t.publicKey.export({ type: "spki", format: "der" });
  const serial = randomBytes(16);
  serial[0] &= 0x7f;
  serial[0] |= 0x01;
  const exts: Buffer[] = [
    extension("2.5.29.15", true, keyUsageBits(t.keyUsage)),
    extension("2.5.29.14", false, octetString(keyIdentifier(spki))),
    extension("2.5.29.35", false, sequence(tlv(0x80, issuer.keyId))),
  ];
  if (t.ca) exts.push(extension("2.5.29.19", true, sequence(boolean(true))));
  if (t.extendedKeyUsage?.length)
    exts.push(extension("2.5.29.37", false, sequence(...t.extendedKeyUsage.map((o) => oid(o)))));
  if (t.altNames?.length) exts.push(extension("2.5.29.17", false, sequence(...t.altNames.map(altName))));
  const algId = sequence(oid(alg.oid));
  const tbs = sequence(
    explicit(0, unsignedInteger(Buffer.from([2]))),
    unsignedInteger(serial),
    algId,
    issuer.name,
    sequence(time(t.notBefore), time(t.notAfter)),
    nameWithCommonName(t.commonName),
    spki,
    explicit(3, sequence(...exts)),
  );
  const signature = sign(alg.hash, tbs, issuer.key);
  return toPem("CERTIFICATE", sequence(tbs, algId, bitString(signature)));
}

interface TbsParts {
  subject: Tlv;
  keyId?: Buffer;
}

function tbsParts(cert: X509Certificate): TbsParts {
  const top = readOne(cert.raw);
  const tbs = expectTag(children(top.content)[0], 0x30, "certificate");
  const fields = children(tbs.content);
  const off = fields[0]?.tag === 0xa0 ? 1 : 0;
  const subject = expectTag(fields[off + 4], 0x30, "certificate subject");
  let keyId: Buffer | undefined;
  const extsWrap = fields.find((f) => f.tag === 0xa3);
  if (extsWrap) {
    for (const ext of children(expectTag(children(extsWrap.content)[0], 0x30, "extensions").content)) {
      const parts = children(ext.content);
      if (decodeOid(parts[0].content) === "2.5.29.14") {
        keyId = readOne(parts[parts.length - 1].content).content;
      }
    }
  }
  return { subject, keyId };
}

/**
 * The authority that signs device identity CSRs. Certificate and key are parsed once
 * (re-parsing a PEM key for every request costs many times the signature itself).
 */
export class CertificateAuthority {
  readonly certificate: X509Certificate;
  /** The CA certificate and any issuers given after it, as PEM. */
  readonly chain: string[];
  private readonly identity: SigningIdentity;

  private constructor(certificate: X509Certificate, chain: string[], identity: SigningIdentity) {
    this.certificate = certificate;
    this.chain = chain;
    this.identity = identity;
  }

  static fromPem(certPem: string, keyPem: string, passphrase?: string): CertificateAuthority {
    const chain = splitCertificates(certPem);
    if (chain.length === 0)
      throw new PkiError("CA_INVALID", "the signing CA certificate is missing or not PEM");
    let cert: X509Certificate;
    let key: KeyObject;
    try {
      cert = new X509Certificate(chain[0]);
    } catch (err) {
      throw new PkiError(
        "CA_INVALID",
        `the signing CA certificate does not parse (${(err as Error).message})`,
      );
    }
    try {
      key = createPrivateKey(passphrase ? { key: keyPem, passphrase } : keyPem);
    } catch {
      throw new PkiError(
        "CA_INVALID",
        "the signing CA key does not parse (PEM, and its passphrase if it has one)",
      );
    }
    if (!cert.ca)
      throw new PkiError("CA_INVALID", "the signing certificate is not a CA (basicConstraints CA:TRUE)");
    signatureAlgorithm(key);
    if (!cert.checkPrivateKey(key))
      throw new PkiError("CA_INVALID", "the signing CA key does not belong to its certificate");
    const parts = tbsParts(cert);
    const keyId = parts.keyId ?? keyIdentifier(createPublicKey(key));
    return new CertificateAuthority(cert, chain, { name: parts.subject.raw, key, keyId });
  }

  get signingIdentity(): SigningIdentity {
    return this.identity;
  }

  /**
   * Signs an identity certificate for a verified CSR as plgd hub's CA does: subject from
   * the CSR (CN uuid:<device id>), key usage digitalSignature + keyAgreement, EKU
   * clientAuth + serverAuth + OCF identity, validity clamped to the CA's own.
   */
  signIdentity(
    csr: ParsedCsr,
    opts: { commonName: string; validityMs: number; now?: Date },
  ): { certificate: string; notAfter: Date } {
    const now = opts.now ?? new Date();
    let notBefore = new Date(Math.floor((now.getTime() - 60_000) / 1000) * 1000);
    let notAfter = new Date(notBefore.getTime() + opts.validityMs);
    const caFrom = new Date(this.certificate.validFrom);
    const caTo = new Date(this.certificate.validTo);
    if (notBefore < caFrom) notBefore = caFrom;
    if (notAfter > caTo) notAfter = caTo;
    const certificate = issueCertificate(
      {
        commonName: opts.commonName,
        publicKey: csr.publicKey,
        spki: csr.spki,
        notBefore,
        notAfter,
        keyUsage: ["digitalSignature", "keyAgreement"],
        extendedKeyUsage: [EKU_CLIENT_AUTH, EKU_SERVER_AUTH, EKU_OCF_IDENTITY],
      },
      this.identity,
    );
    return { certificate, notAfter };
  }
}

/** A self-signed CA (demo PKI and tests). */
export function selfSignedCa(commonName: string, key: KeyObject, notBefore: Date, notAfter: Date): string {
  const publicKey = createPublicKey(key);
  const name = nameWithCommonName(commonName);
  return issueCertificate(
    {
      commonName,
      publicKey,
      notBefore,
      notAfter,
      ca: true,
      keyUsage: ["digitalSignature", "keyCertSign", "cRLSign"],
    },
    { name, key, keyId: keyIdentifier(publicKey) },
  );
}
