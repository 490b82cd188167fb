/**
 * Registry management by message: add pre-provisioned devices, revoke, list. Answers
 * never carry credentials, whatever was stored.
 */

import { finalError } from "../../model/errors";
import type { Credentials } from "../../model/result";
import { preProvisioned, type DeviceSummary } from "../../service/registry";
import type { JsonValue } from "../../stores/backend";
import type { TbProvisioningService } from "./server";
import { completeCredentials, credentialIds } from "./server-credentials";

export type ManageOperation = "add" | "revoke" | "list";

export type ManageResult =
  | { operation: "add"; profile: string; name: string; added: boolean }
  | { operation: "revoke"; profile: string; name: string; revoked: boolean }
  | { operation: "list"; profile?: string; devices: DeviceSummary[] };

/**
 * A management refusal in the package's one vocabulary (lib/model/errors.ts); `status`
 * keeps the word this node used before the neutral codes ("UNKNOWN_PROFILE",
 * "CREDENTIALS_TAKEN", "UNKNOWN_OPERATION"), so a flow can still tell them apart.
 */
function refusal(code: "INVALID" | "NOT_FOUND" | "CONFLICT", status: string, message: string) {
  return finalError(code, message, { status });
}

export function isManageOperation(op: unknown): op is ManageOperation {
  return op === "add" || op === "revoke" || op === "list";
}

function record(v: unknown): Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : {};
}

function profileOf(service: TbProvisioningService, given: unknown): string {
  const names = service.profileNames();
  if (given === undefined || given === null || given === "") return names[0];
  if (typeof given !== "string" || !names.includes(given))
    throw refusal("NOT_FOUND", "UNKNOWN_PROFILE", "no profile has that name");
  return given;
}

function nameOf(v: unknown): string {
  if (typeof v !== "string" || v.trim() === "")
    throw refusal("INVALID", "INVALID", "payload.name must be a device name");
  return v.trim();
}

/** Runs one management operation; throws a ProvisioningError with a secret-free message. */
export async function manage(
  service: TbProvisioningService,
  operation: unknown,
  payload: unknown,
): Promise<ManageResult> {
  if (!isManageOperation(operation))
    throw refusal("INVALID", "UNKNOWN_OPERATION", "operation must be add, revoke or list");
  const p = record(payload);
  if (operation === "list") {
    const profile = p.profile === undefined ? undefined : profileOf(service, p.profile);
    const devices = await service.registry.list(profile);
    // All profiles: no profile key at all (the debug sidebar showed `profile: undefined`).
    return profile === undefined ? { operation, devices } : { operation, profile, devices };
  }
  const profile = profileOf(service, p.profile);
  const name = nameOf(p.name);
  if (operation === "revoke") {
    const before = await service.registry.get(profile, name);
    const revoked = await service.registry.revoke(profile, name);
    // Its credentials are free for another device again.
    if (revoked && before?.credentials)
      await service.registry.releaseCredentials(credentialIds(before.credentials), { profile, name });
    return { operation, profile, name, revoked };
  }

  let credentials: Credentials | undefined;
  if (p.credentials !== undefined) {
    const done = completeCredentials(record(p.credentials) as Partial<Credentials>);
    if (!done.ok) throw refusal("INVALID", "INVALID", `payload.credentials: ${done.detail}`);
    credentials = done.credentials;
  }
  let attributes: Record<string, JsonValue> | undefined;
  if (p.attributes !== undefined) {
    attributes = JSON.parse(JSON.stringify(record(p.attributes))) as Record<string, JsonValue>;
  }
  // As in ThingsBoard, credentials another device holds are refused.
  const claimed = await service.registry.withCredentials(
    credentials ? credentialIds(credentials) : [],
    { profile, name },
    (dev, id) => dev.credentials !== undefined && credentialIds(dev.credentials).includes(id),
    // Create unless present, in the same step as the claims.
    (cur) =>
      cur
        ? { result: false }
        : { next: preProvisioned(profile, { name, credentials, attributes }), result: true },
  );
  if (claimed.taken)
    throw refusal("CONFLICT", "CREDENTIALS_TAKEN", "these credentials belong to another device");
  return { operation, profile, name, added: claimed.result };
}
