/**
 * Configuration management by message (msg.operation or msg.topic): add, update, remove,
 * state, list, get. Results carry summaries only, never an external key, thing key or
 * client key: they go to debug nodes and logs. Failures are ProvisioningErrors: INVALID
 * for a message that is not an operation, and the registry's INVALID, CONFLICT,
 * NOT_FOUND, STORE.
 */
import { ProvisioningError } from "../../model/errors";
import { ConfigRegistry, summaryOf, type ConfigSummary } from "./registry";

export type ManageOperation = "add" | "update" | "remove" | "state" | "list" | "get";

export interface ManageResult {
  operation: ManageOperation;
  config?: ConfigSummary;
  configs?: ConfigSummary[];
  removed?: boolean;
}

/** A malformed management message: INVALID, as a registry's malformed record is. */
function invalidMessage(message: string): ProvisioningError {
  return new ProvisioningError("INVALID", message);
}

const OPERATIONS: readonly ManageOperation[] = ["add", "update", "remove", "state", "list", "get"];

function obj(payload: unknown): Record<string, unknown> {
  if (typeof payload === "string" && payload.length > 0) return { thing_id: payload };
  if (typeof payload === "object" && payload !== null && !Array.isArray(payload))
    return payload as Record<string, unknown>;
  throw invalidMessage("msg.payload must be an object");
}

/** The thing id a payload names, directly or through its external id. */
async function thingOf(reg: ConfigRegistry, p: Record<string, unknown>): Promise<string> {
  if (typeof p.thing_id === "string" && p.thing_id.length > 0) return p.thing_id;
  if (typeof p.external_id === "string" && p.external_id.length > 0) {
    const id = await reg.thingIdOf(p.external_id);
    if (id === undefined) throw new ProvisioningError("NOT_FOUND", "no configuration with this external id");
    return id;
  }
  throw invalidMessage("name the configuration by thing_id or external_id");
}

export async function manage(
  reg: ConfigRegistry,
  operation: unknown,
  payload: unknown,
): Promise<ManageResult> {
  const op = typeof operation === "string" ? (operation.trim().toLowerCase() as ManageOperation) : undefined;
  if (!op || !OPERATIONS.includes(op))
    throw invalidMessage(`unknown operation; use one of ${OPERATIONS.join(", ")}`);
  switch (op) {
    case "list":
      return { operation: op, configs: await reg.list() };
    case "add":
      return { operation: op, config: summaryOf(await reg.add(obj(payload))) };
    case "get": {
      const p = obj(payload);
      const c = await reg.getByThing(await thingOf(reg, p));
      if (!c) throw new ProvisioningError("NOT_FOUND", "no configuration with this thing id");
      return { operation: op, config: summaryOf(c) };
    }
    case "update": {
      const p = obj(payload);
      const { thing_id: _t, external_id: _e, ...patch } = p;
      return { operation: op, config: summaryOf(await reg.update(await thingOf(reg, p), patch)) };
    }
    case "state": {
      const p = obj(payload);
      return { operation: op, config: summaryOf(await reg.setState(await thingOf(reg, p), p.state)) };
    }
    case "remove": {
      const p = obj(payload);
      const id = await thingOf(reg, p).catch((err: unknown) => {
        if (err instanceof ProvisioningError && err.code === "NOT_FOUND") return undefined;
        throw err;
      });
      return { operation: op, removed: id === undefined ? false : await reg.remove(id) };
    }
  }
}
