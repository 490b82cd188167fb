/**
 * A throwaway PKI for trying the Azure DPS service locally: a CA and a server certificate
 * for localhost and 127.0.0.1 that it signs, the certificate an Azure-compatible service
 * needs for MQTT over TLS (Azure's DPS speaks MQTT on 8883 with TLS only) and HTTPS.
 * FOR TRYING OUT ONLY: the keys sit unencrypted (mode 0600) in a folder.
 */
import { chmodSync, existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { ecKey, keyPem, writeDemoFile } from "./demo-pki";
import { CertificateAuthority, EKU_SERVER_AUTH, issueCertificate, selfSignedCa } from "./signer";

export interface AzureDemoPki {
  dir: string;
  /** True when this call created the files. */
  created: boolean;
  caCert: string;
  caKey: string;
  serverCert: string;
  serverKey: string;
}

const FILES = {
  caCert: "ca.pem",
  caKey: "ca.key",
  serverCert: "server.pem",
  serverKey: "server.key",
} as const;

const README = `FOR TRYING OUT ONLY - DO NOT USE THESE CERTIFICATES OR KEYS IN PRODUCTION.

Made by node-red-contrib-provisioning (lib/pki/azure-demo-pki.ts) for the Azure DPS example:
  ca.pem/.key          the demo CA: a device trusts the service by this certificate
  server.pem/.key      the service's certificate (localhost, 127.0.0.1), signed by the CA
The private keys are unencrypted (mode 0600). Delete this folder to start over.
`;

function paths(dir: string): Omit<AzureDemoPki, "created" | "dir"> {
  return {
    caCert: join(dir, FILES.caCert),
    caKey: join(dir, FILES.caKey),
    serverCert: join(dir, FILES.serverCert),
    serverKey: join(dir, FILES.serverKey),
  };
}

/** Creates the PKI in `dir` unless every file is already there; returns the file paths. */
export function ensureAzureDemoPki(dir: string, now = new Date()): AzureDemoPki {
  if (Object.values(FILES).every((f) => existsSync(join(dir, f))))
    return { dir, created: false, ...paths(dir) };
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  chmodSync(dir, 0o700);
  const from = new Date(now.getTime() - 3600_000);
  const caKey = ecKey();
  const caCert = selfSignedCa(
    "Demo Azure DPS CA (FOR TRYING OUT ONLY)",
    caKey.privateKey,
    from,
    new Date(now.getTime() + 10 * 365 * 86400_000),
  );
  const ca = CertificateAuthority.fromPem(caCert, keyPem(caKey.privateKey));
  const server = ecKey();
  const serverCert = issueCertificate(
    {
      commonName: "localhost",
      publicKey: server.publicKey,
      notBefore: from,
      notAfter: new Date(now.getTime() + 2 * 365 * 86400_000),
      keyUsage: ["digitalSignature", "keyAgreement"],
      extendedKeyUsage: [EKU_SERVER_AUTH],
      altNames: ["localhost", "127.0.0.1"],
    },
    ca.signingIdentity,
  );
  writeDemoFile(dir, "README.txt", README, false);
  // Keys first: a folder with every certificate present is taken as complete.
  writeDemoFile(dir, FILES.caKey, keyPem(caKey.privateKey), true);
  writeDemoFile(dir, FILES.serverKey, keyPem(server.privateKey), true);
  writeDemoFile(dir, FILES.serverCert, serverCert, false);
  writeDemoFile(dir, FILES.caCert, caCert, false);
  return { dir, created: true, ...paths(dir) };
}
