/**
 * The Azure DPS demo PKI (lib/pki/azure-demo-pki.ts) for the dialogs that tick "demo
 * certificate (for trying out only)": provision-response serves with its server
 * certificate, provision-request trusts its CA. Each node reads the files itself at its
 * construction, as the plgd demo PKI does (./demo-pki.ts says why a tls-config cannot),
 * from `azure-dps-demo-pki` in Node-RED's user directory: made by whichever node comes
 * first, reused after, the warning logged once per process.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { NodeAPI } from "node-red";
import { ensureAzureDemoPki } from "../../lib/pki/azure-demo-pki";
import { userDirOf } from "./demo-pki";

export const AZURE_DEMO_PKI_FOLDER = "azure-dps-demo-pki";

export interface AzureDemoMaterial {
  dir: string;
  caCert: string;
  serverCert: string;
  serverKey: string;
}

let logged = false;

export function azureDemoPkiOf(RED: NodeAPI, warning: (dir: string) => string): AzureDemoMaterial {
  const pki = ensureAzureDemoPki(join(userDirOf(RED), AZURE_DEMO_PKI_FOLDER));
  if (!logged) {
    logged = true;
    RED.log.warn(warning(pki.dir));
  }
  return {
    dir: pki.dir,
    caCert: readFileSync(pki.caCert, "utf8"),
    serverCert: readFileSync(pki.serverCert, "utf8"),
    serverKey: readFileSync(pki.serverKey, "utf8"),
  };
}
