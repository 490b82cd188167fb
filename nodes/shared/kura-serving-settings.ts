/**
 * provision-response's Everyware / Kura dialect: the dialog's provision requests (their
 * plain fields in the flow, their secrets in the node's credentials) mapped to the
 * dialect's settings, nothing else.
 *
 * The secrets of every request (provision password, activation key, the account password
 * handed out) are one credential, `kuraSecrets`, a JSON object by client id, so that
 * flows.json holds none of them whatever the number of requests.
 */
import { finalError } from "../../lib/model/errors";
import type { KuraRequestInput } from "../../lib/dialects/kura/server-requests";
import { resolveEnvRefs, type EnvLookup } from "../../lib/client/env-ref";
import { text } from "./config";

/** One request row of the dialog as flows.json keeps it (no secret). */
export interface KuraRequestRow {
  clientId?: unknown;
  username?: unknown;
  activatesOn?: unknown;
  expiresOn?: unknown;
  retryMaxAttempts?: unknown;
  overwriteIfDuplicate?: unknown;
  brokerUrl?: unknown;
  accountName?: unknown;
  accountUsername?: unknown;
  accountClientId?: unknown;
  /** One application per line: `name version uri`. */
  applications?: unknown;
  certificateChain?: unknown;
}

/** One request's secrets, under its client id in the credential. */
export interface KuraRequestSecrets {
  password?: string;
  activationKey?: string;
  accountPassword?: string;
}

/** Reads the `kuraSecrets` credential; a broken one is a CONFIG error that shows none of it. */
export function kuraSecretsOf(raw: unknown, broken: string): Record<string, KuraRequestSecrets> {
  if (raw === undefined || raw === null || raw === "") return {};
  try {
    const v = JSON.parse(String(raw)) as unknown;
    if (typeof v === "object" && v !== null && !Array.isArray(v))
      return v as Record<string, KuraRequestSecrets>;
  } catch {
    // Reported below without its content.
  }
  throw finalError("CONFIG", broken);
}

/** `name version uri` per line (the version may be left out: `name uri`). */
export function applicationsOf(v: unknown): Array<{ name: string; version: string; uri: string }> {
  if (typeof v !== "string") return [];
  return v
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l !== "")
    .map((l) => {
      const parts = l.split(/\s+/);
      if (parts.length >= 3) return { name: parts[0], version: parts[1], uri: parts.slice(2).join(" ") };
      return { name: parts[0], version: "", uri: parts[1] ?? "" };
    });
}

/**
 * The secrets by the client id they belong to once `${NAME}` references are resolved:
 * Node-RED replaces a whole-value `${NAME}` in a row's client id, but never in
 * credentials, so a request whose client id and secrets come from the environment (the
 * demo's EVERYWARE_* variables) is keyed and filled here the same way.
 */
function resolvedSecrets(
  secrets: Record<string, KuraRequestSecrets>,
  env: EnvLookup,
): Map<string, KuraRequestSecrets> {
  const out = new Map<string, KuraRequestSecrets>();
  const value = (v: unknown) => (typeof v === "string" ? resolveEnvRefs(v, env) : undefined);
  for (const [key, s] of Object.entries(secrets)) {
    if (typeof s !== "object" || s === null) continue;
    out.set(resolveEnvRefs(key, env), {
      password: value(s.password),
      activationKey: value(s.activationKey),
      accountPassword: value(s.accountPassword),
    });
  }
  return out;
}

/** The dialog's rows and secrets as the dialect's request inputs (checked by the dialect). */
export function kuraRequestsOf(
  rows: unknown,
  secrets: Record<string, KuraRequestSecrets>,
  env: EnvLookup = () => undefined,
): KuraRequestInput[] {
  if (!Array.isArray(rows)) return [];
  const byClientId = resolvedSecrets(secrets, env);
  return (rows as KuraRequestRow[]).map((r) => {
    // `${NAME}` inside a value too (Node-RED replaces only a whole-value reference), so a
    // handed-out broker URL can name a port kept in one place: mqtt://127.0.0.1:${PORT}.
    const field = (v: unknown) => {
      const t = text(v);
      return t === undefined ? undefined : resolveEnvRefs(t, env);
    };
    const clientId = field(r.clientId) ?? "";
    const s = byClientId.get(clientId) ?? {};
    const out: Record<string, unknown> = {
      clientId,
      username: field(r.username) ?? "",
      password: s.password ?? "",
      activationKey: s.activationKey || undefined,
      activatesOn: text(r.activatesOn),
      expiresOn: text(r.expiresOn),
      retryMaxAttempts: text(String(r.retryMaxAttempts ?? "")),
      overwriteIfDuplicate: r.overwriteIfDuplicate === true,
      applications: applicationsOf(r.applications),
      certificateChain: text(r.certificateChain),
    };
    const brokerUrl = field(r.brokerUrl);
    if (brokerUrl)
      out.configuration = {
        brokerUrl,
        accountName: field(r.accountName) ?? "",
        username: field(r.accountUsername) ?? "",
        password: s.accountPassword ?? "",
        clientId: field(r.accountClientId) ?? clientId,
      };
    return out as unknown as KuraRequestInput;
  });
}
