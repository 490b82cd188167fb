import { generateKeyPairSync, randomBytes, sign, X509Certificate } from "node:crypto";
import {
  bitString,
  boolean,
  explicit,
  octetString,
  oid,
  sequence,
  set,
  time,
  unsignedInteger,
  utf8String,
} from "./der";
import { toPem } from "./pem";

export interface DeviceCertificate {
  /** PEM of the self-signed certificate (CN = device name). */
  certificate: string;
  /** PKCS#8 PEM of the EC P-256 private key: it never leaves the device. */
  privateKey: string;
  /** ISO 8601 notAfter. */
  notAfter: string;
}

const ECDSA_WITH_SHA256 = sequence(oid("1.2.840.10045.4.3.2"));

function extension(id: string, critical: boolean, value: Buffer): Buffer {
  return critical
    ? sequence(oid(id), boolean(true), octetString(value))
    : sequence(oid(id), octetString(value));
}

/**
 * An EC P-256 key and a self-signed X.509 v3 certificate for it, made on the device with
 * node:crypto alone. EC P-256 key generation with node:crypto takes well under a millisecond, so this may
 * run per request.
 */
export async function createDeviceCertificate(
  commonName: string,
  opts: { days?: number; now?: Date } = {},
): Promise<DeviceCertificate> {
  const { publicKey, privateKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
  // A minute of slack for devices whose clock runs a little behind the server's.
  const notBefore = new Date(Math.floor(((opts.now ?? new Date()).getTime() - 60_000) / 1000) * 1000);
  const notAfter = new Date(notBefore.getTime() + (opts.days ?? 3650) * 86_400_000);
  const name = sequence(set(sequence(oid("2.5.4.3"), utf8String(commonName))));
  const serial = randomBytes(16);
  serial[0] &= 0x7f;
  serial[0] |= 0x01;
  const extensions = sequence(
    extension("2.5.29.19", true, sequence()), // basicConstraints: not a CA
    extension("2.5.29.15", true, bitString(Buffer.from([0x80]), 7)), // keyUsage: digitalSignature
    extension("2.5.29.37", false, sequence(oid("1.3.6.1.5.5.7.3.2"))), // extKeyUsage: clientAuth
  );
  const tbs = sequence(
    explicit(0, unsignedInteger(Buffer.from([2]))),
    unsignedInteger(serial),
    ECDSA_WITH_SHA256,
    name,
    sequence(time(notBefore), time(notAfter)),
    name,
    publicKey.export({ type: "spki", format: "der" }),
    explicit(3, extensions),
  );
  const signature = sign("sha256", tbs, { key: privateKey, dsaEncoding: "der" });
  const der = sequence(tbs, ECDSA_WITH_SHA256, bitString(signature));
  return {
    certificate: toPem("CERTIFICATE", der),
    privateKey: privateKey.export({ type: "pkcs8", format: "pem" }).toString(),
    notAfter: notAfter.toISOString(),
  };
}

/** notAfter of a PEM certificate as ISO 8601, or undefined when it does not parse. */
export function certificateNotAfter(pem: string): string | undefined {
  try {
    return new Date(new X509Certificate(pem).validTo).toISOString();
  } catch {
    return undefined;
  }
}
