/**
 * Mainflux bootstrap's serving dialect under the serving contract, with the real device-side
 * peers the suite already uses: the Python device of test/support/mainflux-device.py
 * (Mainflux's secure mode, AES-CFB through Python's cryptography module) and curl for the
 * plain endpoint.
 */

import { join } from "node:path";
import {
  mainfluxServing,
  type MainfluxRunningService,
  type MainfluxServeSettings,
} from "../../lib/dialects/mainflux/serving";
import { ProvisioningError } from "../../lib/model/errors";
import { CFB_KEY, EXTERNAL_KEY, TOKEN } from "../support/mainflux-fixtures";
import { PROJECT_ROOT } from "../support/node-red";
import { run } from "../support/process";
import { servingDialectContract, type PeerAnswer } from "./serving-dialect.contract";

const DEVICE = join(PROJECT_ROOT, "test", "support", "mainflux-device.py");
const WRONG_KEY = "not-the-external-key";

/** The configuration a device named `name` bootstraps with, added unless it is there. */
async function ensureConfig(s: MainfluxRunningService, name: string): Promise<void> {
  try {
    await s.registry.add({
      external_id: name,
      external_key: EXTERNAL_KEY,
      thing_id: `thing-${name}`,
      thing_key: `thing-key-${name}`,
      channels: ["ch-1"],
    });
  } catch (err) {
    // Added before (a device asking again, or after a restart on the same store).
    if (!(err instanceof ProvisioningError && err.code === "CONFLICT")) throw err;
  }
}

/** The Python device in secure mode: "<status> <decrypted body or error body>". */
async function secureDevice(base: string, name: string, key: string): Promise<PeerAnswer> {
  const out = await run("/usr/bin/python3", [DEVICE, base, name, key, CFB_KEY]);
  if (out.code !== 0) return { raw: `NO ANSWER (exit ${out.code})` };
  const [status, ...rest] = out.stdout.toString("utf8").split("\n");
  return { raw: `${status} ${rest.join("\n").trim()}` };
}

/** curl as a plain-mode device: "<status> <body>". */
async function plainDevice(url: string, key: string): Promise<PeerAnswer> {
  const out = await run("curl", [
    "-sS",
    "-o",
    "-",
    "-w",
    "\n%{http_code}",
    "-H",
    `Authorization: Thing ${key}`,
    url,
  ]);
  const text = out.stdout.toString();
  const nl = text.lastIndexOf("\n");
  return { raw: `${text.slice(nl + 1)} ${text.slice(0, nl)}` };
}

function thingKeyOf(a: PeerAnswer): string | undefined {
  try {
    const j = JSON.parse(a.raw.replace(/^\d{3} /, "")) as { thing_key?: unknown };
    return typeof j.thing_key === "string" ? j.thing_key : undefined;
  } catch {
    return undefined;
  }
}

const status = (a: PeerAnswer) => a.raw.slice(0, 3);

servingDialectContract<MainfluxServeSettings, MainfluxRunningService>({
  name: "mainflux bootstrap over HTTP (Python secure-mode device, curl)",
  dialect: mainfluxServing,
  settings: async () => ({ allowPlain: true, encryptionKey: CFB_KEY, managementToken: TOKEN }),
  peer: (service, _settings, host) => ({
    valid: async (name) => {
      await ensureConfig(service, name);
      return secureDevice(host.httpBase, name, EXTERNAL_KEY);
    },
    wrongProof: async (name) => {
      await ensureConfig(service, name);
      return secureDevice(host.httpBase, name, WRONG_KEY);
    },
    // No external id: upstream's 400 "missing id" (a bootstrap request carries no body).
    malformed: () => plainDevice(`${host.httpBase}/things/bootstrap/`, EXTERNAL_KEY),
    flood: async (n) => {
      const names = Array.from({ length: n }, (_, i) => `flood-${i}`);
      for (const name of names) await ensureConfig(service, name);
      return Promise.all(
        names.map((name) => plainDevice(`${host.httpBase}/things/bootstrap/${name}`, EXTERNAL_KEY)),
      );
    },
  }),
  is: {
    provisioned: (a) => status(a) === "200" && thingKeyOf(a) !== undefined,
    refused: (a) => status(a) === "403",
    failed: (a) => status(a) === "400",
    // RFC 6585 section 4: Mainflux's HTTP services answer their rate limits 429.
    throttled: (a) => status(a) === "429",
    // Refused by the flow: the 403 Mainflux gives a key it does not accept.
    denied: (a) => status(a) === "403",
    locked: (a) => status(a) === "429",
    alreadyProvisioned: () => false,
  },
  // A configuration is handed out again for as long as it is held, after a restart too.
  restartRule: "reuse",
  secrets: [EXTERNAL_KEY, WRONG_KEY, CFB_KEY],
  credentialsOf: (a) => {
    const k = thingKeyOf(a);
    return k ? [k] : [];
  },
  endpoints: () => [],
  // The management endpoint (POST, so that the suite's probe may carry a body).
  httpRoutes: () => [{ method: "POST", path: "/things/configs" }],
});
