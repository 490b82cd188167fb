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
import { text as plainText } from "./config";

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
 * The dialog's rows and secrets as the dialect's request inputs (checked by the dialect).
 * `${NAME}` references are resolved in every field and secret: Node-RED substitutes them
 * only in a node's top-level properties, and a demo's request comes from the environment.
 * The secrets stay under the client id as the dialog wrote it (references unresolved).
 * (Node-RED itself resolves a property that is one whole `${NAME}`, in nested objects too.)
 */
export function kuraRequestsOf(
  rows: unknown,
  secrets: Record<string, KuraRequestSecrets>,
  env: EnvLookup = () => undefined,
): KuraRequestInput[] {
  if (!Array.isArray(rows)) return [];
  const text = (v: unknown) => {
    const t = plainText(v);
    return t === undefined ? undefined : plainText(resolveEnvRefs(t, env));
  };
  const secret = (v: unknown) => (typeof v === "string" && v !== "" ? resolveEnvRefs(v, env) : undefined);
  return (rows as KuraRequestRow[]).map((r) => {
    const clientId = text(r.clientId) ?? "";
    // Node-RED may have resolved a whole-field reference in the flow already; the
    // credential keeps the client id as written: match the keys as they resolve.
    const written = plainText(r.clientId) ?? "";
    const key =
      written in secrets ? written : (Object.keys(secrets).find((k) => text(k) === clientId) ?? clientId);
    const given = secrets[key] ?? {};
    const s = {
      password: secret(given.password),
      activationKey: secret(given.activationKey),
      accountPassword: secret(given.accountPassword),
    };
    const out: Record<string, unknown> = {
      clientId,
      username: text(r.username) ?? "",
      password: s.password ?? "",
      activationKey: s.activationKey || undefined,
      activatesOn: text(r.activatesOn),
      expiresOn: text(r.expiresOn),
      retryMaxAttempts: text(String(r.retryMaxAttempts ?? "")),
      overwriteIfDuplicate: r.overwriteIfDuplicate === true,
      applications: applicationsOf(r.applications),
      certificateChain: text(r.certificateChain),
    };
    const brokerUrl = text(r.brokerUrl);
    if (brokerUrl)
      out.configuration = {
        brokerUrl,
        accountName: text(r.accountName) ?? "",
        username: text(r.accountUsername) ?? "",
        password: s.accountPassword ?? "",
        clientId: text(r.accountClientId) ?? clientId,
      };
    return out as unknown as KuraRequestInput;
  });
}
