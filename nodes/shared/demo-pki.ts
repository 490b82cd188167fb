/**
 * The plgd DPS demo PKI (lib/pki/demo-pki.ts) for the nodes whose dialog ticks "demo PKI
 * (for trying out only)": dps-service, dps-client and dps-enrollment-group. Each reads the
 * material itself, at its construction, instead of going through a tls-config node:
 * Node-RED's tls-config reads its files when it is constructed (core 05-tls.js), and config
 * nodes are constructed before any other node, so a PKI made by a later node would come too
 * late for it. The folder is `plgd-dps-demo-pki` in Node-RED's user directory (where
 * `npm start` makes it too); made once, reused after, logged once per process.
 */
import { readFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import type { NodeAPI } from "node-red";
import { ensureDemoPki } from "../../lib/pki/demo-pki";

export const DEMO_PKI_FOLDER = "plgd-dps-demo-pki";

/** The demo PKI's files as text. */
export interface DemoPkiMaterial {
  dir: string;
  manufacturerCaCert: string;
  deviceCert: string;
  deviceKey: string;
  hubCaCert: string;
  hubCaKey: string;
  dpsCaCert: string;
  dpsServerCert: string;
  dpsServerKey: string;
}

let logged = false;

/** Node-RED's user directory (~/.node-red when the settings name none). */
export function userDirOf(RED: NodeAPI): string {
  const userDir = (RED.settings as unknown as { userDir?: unknown }).userDir;
  return typeof userDir === "string" && userDir ? userDir : join(homedir(), ".node-red");
}

/** The folder the demo PKI lives in for this runtime. */
export function demoPkiDir(RED: NodeAPI): string {
  return join(userDirOf(RED), DEMO_PKI_FOLDER);
}

/**
 * Makes the demo PKI unless it is there, and returns it. The first node to ask logs the
 * warning (`RED.log.warn`, once per process): these keys are unencrypted files anyone with
 * the folder can use.
 */
export function demoPkiOf(RED: NodeAPI, warning: (dir: string) => string): DemoPkiMaterial {
  const pki = ensureDemoPki(demoPkiDir(RED));
  if (!logged) {
    logged = true;
    RED.log.warn(warning(pki.dir));
  }
  const read = (path: string) => readFileSync(path, "utf8");
  return {
    dir: pki.dir,
    manufacturerCaCert: read(pki.manufacturerCaCert),
    deviceCert: read(pki.deviceCert),
    deviceKey: read(pki.deviceKey),
    hubCaCert: read(pki.hubCaCert),
    hubCaKey: read(pki.hubCaKey),
    dpsCaCert: read(pki.dpsCaCert),
    dpsServerCert: read(pki.dpsServerCert),
    dpsServerKey: read(pki.dpsServerKey),
  };
}
