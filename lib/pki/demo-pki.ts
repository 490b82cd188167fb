/**
 * A throwaway PKI for trying plgd DPS locally: a manufacturer CA with one device
 * certificate, a hub CA that signs identity certificates, and a DPS CA with a server
 * certificate for localhost. FOR TRYING OUT ONLY: the keys sit unencrypted in a folder.
 */
import { generateKeyPairSync, type KeyObject } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import {
  CertificateAuthority,
  EKU_CLIENT_AUTH,
  EKU_SERVER_AUTH,
  issueCertificate,
  selfSignedCa,
} from "./signer";

export interface DemoPki {
  dir: string;
  /** True when this call created the files. */
  created: boolean;
  manufacturerCaCert: string;
  manufacturerCaKey: string;
  deviceCert: string;
  deviceKey: string;
  hubCaCert: string;
  hubCaKey: string;
  dpsCaCert: string;
  dpsCaKey: string;
  dpsServerCert: string;
  dpsServerKey: string;
}

const FILES = {
  manufacturerCaCert: "manufacturer-ca.pem",
  manufacturerCaKey: "manufacturer-ca.key",
  deviceCert: "device-manufacturer.pem",
  deviceKey: "device-manufacturer.key",
  hubCaCert: "hub-ca.pem",
  hubCaKey: "hub-ca.key",
  dpsCaCert: "dps-ca.pem",
  dpsCaKey: "dps-ca.key",
  dpsServerCert: "dps-server.pem",
  dpsServerKey: "dps-server.key",
} as const;

const README = `FOR TRYING OUT ONLY - DO NOT USE THESE CERTIFICATES OR KEYS IN PRODUCTION.

Made by node-red-contrib-provisioning (lib/pki/demo-pki.ts) for the plgd DPS example:
  manufacturer-ca.pem/.key      the device manufacturer's CA (enrollment group chain)
  device-manufacturer.pem/.key  one device's manufacturer certificate (EKU clientAuth)
  hub-ca.pem/.key               the hub CA that signs device identity certificates
  dps-ca.pem/.key               the CA the device uses to verify the DPS service
  dps-server.pem/.key           the DPS service's certificate (localhost, 127.0.0.1)
The private keys are unencrypted (mode 0600). Delete this folder to start over.
`;

/** A fresh P-256 key pair (every demo certificate here is ECDSA P-256). */
export function ecKey(): { privateKey: KeyObject; publicKey: KeyObject } {
  return generateKeyPairSync("ec", { namedCurve: "P-256" });
}

export function keyPem(k: KeyObject): string {
  return k.export({ type: "pkcs8", format: "pem" }).toString();
}

/** Writes one file atomically (a temporary name, then rename), mode 0600 when secret. */
export function writeDemoFile(dir: string, name: string, text: string, secret: boolean): void {
  const tmp = join(dir, `.${name}.tmp`);
  writeFileSync(tmp, text, { mode: secret ? 0o600 : 0o644 });
  renameSync(tmp, join(dir, name));
}

function paths(dir: string): Omit<DemoPki, "created" | "dir"> {
  const out = {} as Record<keyof typeof FILES, string>;
  for (const [k, f] of Object.entries(FILES)) out[k as keyof typeof FILES] = join(dir, f);
  return out;
}

/** Creates the demo PKI in `dir` unless every file is already there; returns the file paths. */
export function ensureDemoPki(dir: string, now = new Date()): DemoPki {
  if (Object.values(FILES).every((f) => existsSync(join(dir, f))))
    return { dir, created: false, ...paths(dir) };
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  chmodSync(dir, 0o700);
  const from = new Date(now.getTime() - 3600_000);
  const caTo = new Date(now.getTime() + 10 * 365 * 86400_000);
  const leafTo = new Date(now.getTime() + 2 * 365 * 86400_000);
  const files: Record<string, { text: string; secret: boolean }> = {};
  const makeCa = (cn: string, certName: string, keyName: string): CertificateAuthority => {
    const k = ecKey();
    const cert = selfSignedCa(cn, k.privateKey, from, caTo);
    files[certName] = { text: cert, secret: false };
    files[keyName] = { text: keyPem(k.privateKey), secret: true };
    return CertificateAuthority.fromPem(cert, keyPem(k.privateKey));
  };
  const mfg = makeCa(
    "Demo Manufacturer CA (FOR TRYING OUT ONLY)",
    FILES.manufacturerCaCert,
    FILES.manufacturerCaKey,
  );
  makeCa("Demo Hub CA (FOR TRYING OUT ONLY)", FILES.hubCaCert, FILES.hubCaKey);
  const dps = makeCa("Demo DPS CA (FOR TRYING OUT ONLY)", FILES.dpsCaCert, FILES.dpsCaKey);
  const device = ecKey();
  files[FILES.deviceCert] = {
    text: issueCertificate(
      {
        commonName: "Demo device (FOR TRYING OUT ONLY)",
        publicKey: device.publicKey,
        notBefore: from,
        notAfter: leafTo,
        keyUsage: ["digitalSignature", "keyAgreement"],
        extendedKeyUsage: [EKU_CLIENT_AUTH],
      },
      mfg.signingIdentity,
    ),
    secret: false,
  };
  files[FILES.deviceKey] = { text: keyPem(device.privateKey), secret: true };
  const server = ecKey();
  files[FILES.dpsServerCert] = {
    text: issueCertificate(
      {
        commonName: "localhost",
        publicKey: server.publicKey,
        notBefore: from,
        notAfter: leafTo,
        keyUsage: ["digitalSignature", "keyAgreement"],
        extendedKeyUsage: [EKU_SERVER_AUTH],
        altNames: ["localhost", "127.0.0.1"],
      },
      dps.signingIdentity,
    ),
    secret: false,
  };
  files[FILES.dpsServerKey] = { text: keyPem(server.privateKey), secret: true };
  writeDemoFile(dir, "README.txt", README, false);
  for (const [name, f] of Object.entries(files)) writeDemoFile(dir, name, f.text, f.secret);
  return { dir, created: true, ...paths(dir) };
}
