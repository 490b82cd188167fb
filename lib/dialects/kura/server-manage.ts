/**
 * Provision requests managed by message: add, update, remove, abandon, list, get. Answers
 * never carry a secret (the provision password, the activation key, the hand-out
 * password), except the activation key `add` generated, handed back once to the one who
 * asked for it, as Everyware shows a generated key once it is made.
 */
import { finalError } from "../../model/errors";
import type { KuraProvisioningService } from "./server";
import { parseRequestInput, summaryView, viewOf, type KuraRequestView } from "./server-requests";

export type KuraManageOperation = "add" | "update" | "remove" | "abandon" | "list" | "get";

export type KuraManageResult =
  | { operation: "add" | "update"; clientId: string; done: "added" | "replaced"; activationKey?: string }
  | { operation: "remove"; clientId: string; removed: boolean }
  | { operation: "abandon"; clientId: string; request?: KuraRequestView }
  | { operation: "list"; account: string; requests: KuraRequestView[] }
  | { operation: "get"; clientId: string; request?: KuraRequestView };

const OPERATIONS: readonly string[] = ["add", "update", "remove", "abandon", "list", "get"];

export function isKuraManageOperation(op: unknown): op is KuraManageOperation {
  return typeof op === "string" && OPERATIONS.includes(op);
}

function record(v: unknown): Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : {};
}

function clientIdOf(p: Record<string, unknown>): string {
  if (typeof p.clientId !== "string" || p.clientId === "")
    throw finalError("INVALID", "payload.clientId must be a client id", { status: "INVALID" });
  return p.clientId;
}

/** Runs one operation; throws a ProvisioningError with a secret-free message. */
export async function manageKura(
  service: KuraProvisioningService,
  operation: unknown,
  payload: unknown,
): Promise<KuraManageResult> {
  if (!isKuraManageOperation(operation))
    throw finalError("INVALID", `operation must be one of ${OPERATIONS.join(", ")}`, {
      status: "UNKNOWN_OPERATION",
    });
  const p = record(payload);
  if (operation === "list") {
    const all = await service.records.list(service.account);
    return { operation, account: service.account, requests: all.map(summaryView) };
  }
  if (operation === "add" || operation === "update") {
    const input = parseRequestInput(p);
    if (operation === "update") {
      const before = await service.records.get({ group: service.account, id: input.clientId });
      if (!before)
        throw finalError("NOT_FOUND", "no provision request for this client id", { status: "NOT_FOUND" });
    }
    const overwrite = operation === "update" || input.overwriteIfDuplicate === true;
    const made = await service.put(input, undefined, overwrite);
    const out: KuraManageResult = {
      operation,
      clientId: input.clientId,
      done: made.done === "kept" ? "replaced" : made.done,
    };
    if (made.activationKey) out.activationKey = made.activationKey;
    return out;
  }
  const clientId = clientIdOf(p);
  if (operation === "remove") return { operation, clientId, removed: await service.remove(clientId) };
  if (operation === "abandon") {
    const r = await service.abandon(clientId);
    return r ? { operation, clientId, request: viewOf(service.account, r) } : { operation, clientId };
  }
  const r = await service.records.get({ group: service.account, id: clientId });
  return r ? { operation, clientId, request: viewOf(service.account, r) } : { operation, clientId };
}
