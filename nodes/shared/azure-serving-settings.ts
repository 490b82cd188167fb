/**
 * provision-response's Azure DPS dialect: the dialog's enrollments (their plain fields in
 * the flow, their keys in the node's credentials) and linked hubs mapped to the dialect's
 * settings (lib/dialects/azure-dps/settings.ts), nothing else.
 *
 * Every enrollment's symmetric keys are one credential, `azureKeys`, a JSON object keyed
 * `individual:<registration id>` or `group:<enrollment group id>`, so that flows.json holds
 * none of them whatever the number of enrollments.
 */
import { resolveEnvRefs, type EnvLookup } from "../../lib/client/env-ref";
import type {
  AzureAllocation,
  AzureEnrollment,
  AzureReprovision,
} from "../../lib/dialects/azure-dps/settings";
import { finalError } from "../../lib/model/errors";
import { splitCertificates } from "../../lib/pki/pem";
import { text as plainText } from "./config";

/** One enrollment row of the dialog as flows.json keeps it (no key). */
export interface AzureEnrollmentRow {
  kind?: unknown;
  id?: unknown;
  attestation?: unknown;
  enabled?: unknown;
  allocation?: unknown;
  /** Host names, comma-separated; empty: every linked hub. */
  iotHubs?: unknown;
  reprovision?: unknown;
  deviceId?: unknown;
  /** JSON text. */
  initialTwin?: unknown;
  /** PEM text, one or more certificates. */
  certificates?: unknown;
}

export interface AzureEnrollmentKeys {
  primaryKey?: string;
  secondaryKey?: string;
}

/** The credential's key for one enrollment's keys. */
export function azureKeyName(kind: string, id: string): string {
  return `${kind === "group" ? "group" : "individual"}:${id}`;
}

/** Reads the `azureKeys` credential; a broken one is a CONFIG error that shows none of it. */
export function azureKeysOf(raw: unknown, broken: string): Record<string, AzureEnrollmentKeys> {
  if (raw === undefined || raw === null || raw === "") return {};
  try {
    const v = JSON.parse(String(raw)) as unknown;
    if (typeof v === "object" && v !== null && !Array.isArray(v))
      return v as Record<string, AzureEnrollmentKeys>;
  } catch {
    // Reported below without its content.
  }
  throw finalError("CONFIG", broken);
}

function allocationOf(v: unknown): AzureAllocation | undefined {
  return v === "hashed" || v === "static" || v === "custom" ? v : undefined;
}

function reprovisionOf(v: unknown): AzureReprovision | undefined {
  return v === "migrate" || v === "reset" || v === "never" ? v : undefined;
}

/**
 * Linked hubs, one per line (or comma-separated): a host name and, optionally, its
 * allocation weight (`hub-1.azure-devices.net 2`).
 */
export function azureHubsOf(
  v: unknown,
  env: EnvLookup = () => undefined,
): { linkedHubs: string[]; hubWeights: Record<string, number> } {
  const linkedHubs: string[] = [];
  const hubWeights: Record<string, number> = {};
  const all = typeof v === "string" ? resolveEnvRefs(v, env) : "";
  for (const line of all.split(/[\n,]/u)) {
    const [host, weight] = line.trim().split(/\s+/u);
    if (!host || linkedHubs.includes(host)) continue;
    linkedHubs.push(host);
    const w = Number(weight);
    if (weight !== undefined && Number.isFinite(w) && w > 0) hubWeights[host] = w;
  }
  return { linkedHubs, hubWeights };
}

/**
 * The dialog's rows and keys as the dialect's enrollments (checked by the dialect).
 * `${NAME}` references are resolved in every field and key: Node-RED substitutes them only
 * in a node's top-level properties, and the demo's group key comes from the environment.
 */
export function azureEnrollmentsOf(
  rows: unknown,
  keys: Record<string, AzureEnrollmentKeys>,
  env: EnvLookup = () => undefined,
  brokenTwin: (id: string) => string = (id) => `the initial twin of ${id} is not JSON`,
): AzureEnrollment[] {
  if (!Array.isArray(rows)) return [];
  const text = (v: unknown) => {
    const t = plainText(v);
    return t === undefined ? undefined : plainText(resolveEnvRefs(t, env));
  };
  const secret = (v: unknown) => (typeof v === "string" && v !== "" ? resolveEnvRefs(v, env) : undefined);
  return (rows as AzureEnrollmentRow[]).map((r) => {
    const kind = r.kind === "group" ? "group" : "individual";
    const id = text(r.id) ?? "";
    const written = plainText(r.id) ?? "";
    const given = keys[azureKeyName(kind, written)] ?? keys[azureKeyName(kind, id)] ?? {};
    const twinText = text(r.initialTwin);
    let initialTwin: unknown;
    if (twinText !== undefined) {
      try {
        initialTwin = JSON.parse(twinText) as unknown;
      } catch {
        throw finalError("CONFIG", brokenTwin(id));
      }
    }
    const hubs = (text(r.iotHubs) ?? "")
      .split(",")
      .map((h) => h.trim())
      .filter((h) => h !== "");
    const certificates = splitCertificates(typeof r.certificates === "string" ? r.certificates : undefined);
    const e: AzureEnrollment = {
      kind,
      id,
      attestation: r.attestation === "x509" ? "x509" : "symmetric-key",
      primaryKey: secret(given.primaryKey),
      secondaryKey: secret(given.secondaryKey),
      enabled: r.enabled !== false,
    };
    if (certificates.length > 0) e.certificates = certificates;
    const allocation = allocationOf(r.allocation);
    if (allocation) e.allocation = allocation;
    if (hubs.length > 0) e.iotHubs = hubs;
    const reprovision = reprovisionOf(r.reprovision);
    if (reprovision) e.reprovision = reprovision;
    const deviceId = text(r.deviceId);
    if (deviceId && kind === "individual") e.deviceId = deviceId;
    if (initialTwin !== undefined) e.initialTwin = initialTwin;
    return e;
  });
}
