import type { JsonValue, StoreBackend } from "../stores/backend";
import type { DialectId, ProvisioningResult } from "../model/result";

/** The default store key: `<dialect>/<deviceName>`, or a template with `{deviceName}`. */
export function storeKeyFor(dialect: DialectId, deviceName: string, template?: string): string {
  const t = template && template.trim().length > 0 ? template.trim() : `${dialect}/{deviceName}`;
  return t.split("{deviceName}").join(deviceName);
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/**
 * Turns a stored value into a result. Besides whole results it accepts what the Edge Gateway's self-provisioning script's
 * token file holds (a bare token longer than 3 characters) and `{token}` objects, so a
 * device that was provisioned by the old client is not provisioned twice.
 */
export function resultFromStored(
  value: JsonValue,
  fallback: { dialect: DialectId; endpoint: string; deviceName: string; obtainedAt: string },
): ProvisioningResult | undefined {
  const bare = (token: string): ProvisioningResult => ({
    dialect: fallback.dialect,
    endpoint: fallback.endpoint,
    device: { name: fallback.deviceName },
    proof: "provision-key",
    credentials: { type: "ACCESS_TOKEN", token },
    configuration: {},
    obtainedAt: fallback.obtainedAt,
    reused: true,
  });
  if (typeof value === "string") return value.trim().length > 3 ? bare(value.trim()) : undefined;
  if (!isObject(value)) return undefined;
  const creds = value.credentials;
  if (isObject(creds) && typeof creds.type === "string") {
    const r = value as unknown as ProvisioningResult;
    return {
      ...r,
      dialect: r.dialect ?? fallback.dialect,
      endpoint: r.endpoint ?? fallback.endpoint,
      device: r.device ?? { name: fallback.deviceName },
      configuration: r.configuration ?? {},
      obtainedAt: r.obtainedAt ?? fallback.obtainedAt,
      reused: true,
    };
  }
  if (typeof value.token === "string" && value.token.trim().length > 3) return bare(value.token.trim());
  return undefined;
}

/** A stored, unexpired result under `key`, marked reused; undefined when there is none. */
export async function findReusable(
  store: StoreBackend,
  key: string,
  fallback: { dialect: DialectId; endpoint: string; deviceName: string },
): Promise<ProvisioningResult | undefined> {
  const entry = await store.get(key);
  if (!entry || entry.expired) return undefined;
  return resultFromStored(entry.value, { ...fallback, obtainedAt: entry.meta.obtainedAt });
}

/** Saves a fresh result with the metadata the store lists without reading values. */
export async function saveResult(
  store: StoreBackend,
  key: string,
  result: ProvisioningResult,
): Promise<void> {
  const meta: Parameters<StoreBackend["set"]>[2] = {
    protocol: result.dialect,
    endpoint: result.endpoint,
    obtainedAt: result.obtainedAt,
    kind: result.credentials.type,
  };
  if (result.expiresAt) meta.expiresAt = result.expiresAt;
  await store.set(key, { ...result, reused: false } as unknown as JsonValue, meta);
}
