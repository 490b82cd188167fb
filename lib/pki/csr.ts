import { createPublicKey, generateKeyPairSync, sign, verify, type KeyObject } from "node:crypto";
import {
  DerError,
  bitString,
  children,
  commonNameOf,
  decodeOid,
  expectTag,
  explicit,
  oid,
  readOne,
  sequence,
  set,
  unsignedInteger,
  utf8String,
} from "./der";
import { pemBlocks, toPem } from "./pem";

export const OID_ECDSA_SHA256 = "1.2.840.10045.4.3.2";
export const OID_ECDSA_SHA384 = "1.2.840.10045.4.3.3";

/** A PKI failure with a stable code and a message that names no secret. */
export class PkiError extends Error {
  constructor(
    readonly code:
      | "CSR_INVALID"
      | "CSR_SIGNATURE"
      | "KEY_UNSUPPORTED"
      | "CERT_INVALID"
      | "CHAIN_UNTRUSTED"
      | "CHAIN_EXPIRED"
      | "EKU_MISSING"
      | "CA_INVALID",
    message: string,
  ) {
    super(message);
    this.name = "PkiError";
  }
}

export function nameWithCommonName(cn: string): Buffer {
  return sequence(set(sequence(oid("2.5.4.3"), utf8String(cn))));
}

export interface KeyAndCsr {
  /** PKCS#8 PEM; it stays on the device. */
  privateKey: string;
  /** PKCS#10 PEM, subject CN = commonName. */
  csr: string;
}

/**
 * A fresh EC P-256 key and a CSR signed with it. Key generation with node:crypto takes well
 * under a millisecond, so a device can do this for every provisioning and renewal.
 */
export function createKeyAndCsr(commonName: string): KeyAndCsr {
  const { publicKey, privateKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
  const spki = publicKey.export({ type: "spki", format: "der" });
  const info = sequence(
    unsignedInteger(Buffer.from([0])),
    nameWithCommonName(commonName),
    spki,
    explicit(0, Buffer.alloc(0)),
  );
  const signature = sign("sha256", info, privateKey);
  const der = sequence(info, sequence(oid(OID_ECDSA_SHA256)), bitString(signature));
  return {
    privateKey: privateKey.export({ type: "pkcs8", format: "pem" }).toString(),
    csr: toPem("CERTIFICATE REQUEST", der),
  };
}

export interface ParsedCsr {
  commonName?: string;
  publicKey: KeyObject;
  /**
   * The SubjectPublicKeyInfo as the CSR carries it (DER), so a certificate for it is built
   * without exporting the key again (OpenSSL 3 makes every key export and import costly).
   */
  spki?: Buffer;
  /** "P-256", "P-384", ... for EC keys. */
  namedCurve?: string;
  keyType: string;
}

/**
 * Parses a PEM CSR and verifies its signature with the key it carries (proving the
 * requester holds that key). Only ECDSA signatures are accepted.
 */
export function parseCsr(pem: string): ParsedCsr {
  const blocks = pemBlocks(pem, "(?:NEW )?CERTIFICATE REQUEST");
  if (blocks.length !== 1)
    throw new PkiError("CSR_INVALID", "the CSR is not one PEM CERTIFICATE REQUEST block");
  let info;
  let algOid: string;
  let sig: Buffer;
  let publicKey: KeyObject;
  let spkiDer: Buffer;
  let commonName: string | undefined;
  try {
    const top = expectTag(readOne(blocks[0]), 0x30, "CSR");
    const [cri, alg, sigBits] = children(top.content);
    info = expectTag(cri, 0x30, "CSR info");
    const algSeq = expectTag(alg, 0x30, "CSR signature algorithm");
    algOid = decodeOid(expectTag(children(algSeq.content)[0], 0x06, "CSR signature algorithm").content);
    const bits = expectTag(sigBits, 0x03, "CSR signature");
    // An ECDSA signature is a DER SEQUENCE of whole octets: its BIT STRING must say 0
    // unused bits (X.690 §8.6.2.2; RFC 5480 §2.2). Any other count is a forged or broken
    // encoding even when the octets after it still verify.
    if (bits.content.length < 2 || bits.content[0] !== 0)
      throw new DerError("CSR signature: the BIT STRING must have 0 unused bits");
    sig = bits.content.subarray(1);
    const [version, subject, spki] = children(info.content);
    expectTag(version, 0x02, "CSR version");
    commonName = commonNameOf(expectTag(subject, 0x30, "CSR subject"));
    spkiDer = expectTag(spki, 0x30, "CSR public key").raw;
    publicKey = createPublicKey({ key: spkiDer, format: "der", type: "spki" });
  } catch (err) {
    const why = err instanceof DerError ? err.message : (err as Error).message;
    throw new PkiError("CSR_INVALID", `the CSR does not parse: ${why}`);
  }
  const hash = algOid === OID_ECDSA_SHA256 ? "sha256" : algOid === OID_ECDSA_SHA384 ? "sha384" : undefined;
  if (!hash)
    throw new PkiError("KEY_UNSUPPORTED", `the CSR is signed with an unsupported algorithm (${algOid})`);
  if (publicKey.asymmetricKeyType !== "ec") {
    throw new PkiError(
      "KEY_UNSUPPORTED",
      `the CSR carries a ${publicKey.asymmetricKeyType ?? "unknown"} key; EC keys only`,
    );
  }
  let ok = false;
  try {
    ok = verify(hash, info.raw, publicKey, sig);
  } catch {
    ok = false;
  }
  if (!ok) throw new PkiError("CSR_SIGNATURE", "the CSR signature does not match its public key");
  return {
    commonName,
    publicKey,
    spki: Buffer.from(spkiDer),
    keyType: "ec",
    namedCurve: curveName(publicKey),
  };
}

export function curveName(key: KeyObject): string | undefined {
  const c = key.asymmetricKeyDetails?.namedCurve;
  return c === "prime256v1" ? "P-256" : c === "secp384r1" ? "P-384" : c === "secp521r1" ? "P-521" : c;
}

/** For tests and tools: a CSR DER with its signature bytes flipped. */
export function tamperCsr(pem: string): string {
  const der = Buffer.from(pemBlocks(pem, "CERTIFICATE REQUEST")[0]);
  der[der.length - 3] ^= 0xff;
  return toPem("CERTIFICATE REQUEST", der);
}
