/**
 * What the credential-store flow node does with one message, without Node-RED: parse
 * the operation, key, value and metadata, run it on a backend, describe the outcome.
 */
import {
  StoreError,
  type EntryMetaInput,
  type EntrySummary,
  type StoreBackend,
  type StoredEntry,
} from "./backend";
import { checkKey } from "./entry";
import type { ProvisioningResult } from "../model/result";

export const OPERATIONS = ["get", "set", "delete", "list"] as const;
export type Operation = (typeof OPERATIONS)[number];

export function parseOperation(v: unknown): Operation {
  if (typeof v === "string" && (OPERATIONS as readonly string[]).includes(v)) return v as Operation;
  const shown = typeof v === "string" ? `"${v.slice(0, 20)}"` : typeof v;
  throw new StoreError("UNSUPPORTED", `unknown operation ${shown}: use get, set, delete or list`);
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** The shape of lib/model/result.ts, enough to take metadata from it. */
export function isProvisioningResult(v: unknown): v is ProvisioningResult {
  return (
    isObject(v) &&
    typeof v.dialect === "string" &&
    typeof v.endpoint === "string" &&
    typeof v.obtainedAt === "string" &&
    (v.expiresAt === undefined || typeof v.expiresAt === "string")
  );
}

function dateField(name: string, v: unknown): string {
  if (v instanceof Date || typeof v === "number") {
    const d = new Date(v);
    if (!Number.isNaN(d.getTime())) return d.toISOString();
  } else if (typeof v === "string" && !Number.isNaN(Date.parse(v))) return v;
  throw new StoreError("INVALID_VALUE", `meta.${name} is not a date`);
}

function textField(name: string, v: unknown): string {
  if (typeof v === "string") return v;
  throw new StoreError("INVALID_VALUE", `meta.${name} must be a string`);
}

/**
 * Metadata for set: taken from a ProvisioningResult payload (dialect, endpoint,
 * obtainedAt, expiresAt, credentials.type), then msg.meta on top.
 */
export function metaFor(payload: unknown, meta: unknown): EntryMetaInput {
  const out: EntryMetaInput = {};
  if (isProvisioningResult(payload)) {
    out.obtainedAt = payload.obtainedAt;
    out.protocol = payload.dialect;
    out.endpoint = payload.endpoint;
    if (payload.expiresAt) out.expiresAt = payload.expiresAt;
    if (isObject(payload.credentials) && typeof payload.credentials.type === "string")
      out.kind = payload.credentials.type;
  }
  if (meta === undefined || meta === null) return out;
  if (!isObject(meta)) throw new StoreError("INVALID_VALUE", "msg.meta must be an object");
  if (meta.obtainedAt !== undefined) out.obtainedAt = dateField("obtainedAt", meta.obtainedAt);
  if (meta.expiresAt !== undefined) out.expiresAt = dateField("expiresAt", meta.expiresAt);
  if (meta.protocol !== undefined) out.protocol = textField("protocol", meta.protocol);
  if (meta.endpoint !== undefined) out.endpoint = textField("endpoint", meta.endpoint);
  if (meta.kind !== undefined) out.kind = textField("kind", meta.kind);
  return out;
}

export interface OperationRequest {
  operation: unknown;
  key: unknown;
  payload: unknown;
  meta: unknown;
}

export type Outcome =
  | { operation: "get"; key: string; entry: StoredEntry }
  | { operation: "get"; key: string; entry: undefined }
  | { operation: "set"; key: string; summary: EntrySummary }
  | { operation: "delete"; key: string; deleted: boolean }
  | { operation: "list"; entries: EntrySummary[] };

export async function runOperation(backend: StoreBackend, req: OperationRequest): Promise<Outcome> {
  const operation = parseOperation(req.operation);
  if (operation === "list") return { operation, entries: await backend.list() };
  const key = checkKey(req.key);
  if (operation === "get") return { operation, key, entry: await backend.get(key) };
  if (operation === "delete") return { operation, key, deleted: await backend.delete(key) };
  // The value is checked by the backend (functions, cycles, undefined are refused there).
  const stored = await backend.set(
    key,
    req.payload as Parameters<StoreBackend["set"]>[1],
    metaFor(req.payload, req.meta),
  );
  return { operation, key, summary: { key: stored.key, meta: stored.meta, expired: stored.expired } };
}

/** Any failure as a StoreError with a code for msg.error.code; unknown ones are IO. */
export function asStoreError(err: unknown): StoreError {
  if (err instanceof StoreError) return err;
  const code = (err as { code?: unknown } | null)?.code;
  if ((err as Error | null)?.name === "StoreError" && typeof code === "string") {
    return new StoreError(code as StoreError["code"], (err as Error).message);
  }
  return new StoreError("IO", (err as Error)?.message ?? String(err));
}
