/**
 * Where a registration goes, as Azure DPS decides it ("How to use allocation policies",
 * "Understand custom allocation policies", "How to re-provision devices"):
 * - hashed ("evenly weighted distribution"): the registration id hashed over the
 *   enrollment's hubs, each counted by its allocation weight, so one device always lands
 *   on the same hub;
 * - static: the enrollment's one hub (its first);
 * - custom: the flow's answer, with the body Azure sends its allocation webhook;
 * and, for a device registered before, the re-provisioning policy: "never" keeps the hub,
 * "migrate" (Azure's default) and "reset" move it, with Azure's substatus words.
 */
import { createHash } from "node:crypto";
import type { Attested } from "./server-enrollments";
import type { AzureAllocation, AzureEnrollment, AzureServiceSettings } from "./settings";
import type { RegistrationSubstatus } from "./wire";

/** The hubs an enrollment may assign to: its own list, else every linked hub. */
export function hubsOf(e: AzureEnrollment, s: AzureServiceSettings): string[] {
  return e.iotHubs && e.iotHubs.length > 0 ? e.iotHubs : s.linkedHubs;
}

export function hashedHub(
  registrationId: string,
  hubs: readonly string[],
  weights: Record<string, number> = {},
) {
  const weighted = hubs.map((h) => ({ h, w: weights[h] ?? 1 })).filter((x) => x.w > 0);
  const total = weighted.reduce((n, x) => n + x.w, 0);
  if (total === 0) return undefined;
  const digest = createHash("sha256").update(registrationId, "utf8").digest();
  let point = digest.readUInt32BE(0) % total;
  for (const x of weighted) {
    if (point < x.w) return x.h;
    point -= x.w;
  }
  return undefined;
}

/** What a registration keeps of a device's place, for re-provisioning. */
export interface Placement {
  assignedHub: string;
  deviceId: string;
  substatus: RegistrationSubstatus;
  /** The hub of the first assignment (for reprovisionedToInitialAssignment). */
  initialHub: string;
}

/**
 * The placement after a registration: `before` is the stored one (if any), `hub` the one
 * the policy chose now. The device id never changes (Azure keeps it across hubs).
 */
export function reprovision(
  before: Placement | undefined,
  hub: string,
  deviceId: string,
  policy: AzureEnrollment["reprovision"],
): Placement {
  if (!before) return { assignedHub: hub, deviceId, substatus: "initialAssignment", initialHub: hub };
  if (policy === "never" || before.assignedHub === hub) return before;
  const substatus: RegistrationSubstatus =
    hub === before.initialHub
      ? "reprovisionedToInitialAssignment"
      : policy === "reset"
        ? "deviceDataReset"
        : "deviceDataMigrated";
  return { ...before, assignedHub: hub, substatus };
}

/**
 * The body Azure posts to a custom allocation webhook ("Understand custom allocation
 * policies": individualEnrollment or enrollmentGroup, deviceRuntimeContext, linkedHubs),
 * without keys or certificates.
 */
export function webhookBody(
  who: Attested,
  policy: AzureAllocation,
  hubs: readonly string[],
  payload: unknown,
  before: Placement | undefined,
): Record<string, unknown> {
  const e = who.enrollment;
  const enrollment: Record<string, unknown> = {
    attestation: { type: who.attestation === "x509" ? "x509" : "symmetricKey" },
    provisioningStatus: e.enabled ? "enabled" : "disabled",
    reprovisionPolicy: {
      updateHubAssignment: e.reprovision !== "never",
      migrateDeviceData: e.reprovision !== "reset" && e.reprovision !== "never",
    },
    allocationPolicy: policy,
    iotHubs: [...hubs],
  };
  if (e.initialTwin !== undefined) enrollment.initialTwin = e.initialTwin;
  const context: Record<string, unknown> = { registrationId: who.registrationId };
  if (before) {
    context.currentIotHubHostName = before.assignedHub;
    context.currentDeviceId = before.deviceId;
  }
  if (who.x509)
    context.x509 = {
      clientCertificate: { subjectName: who.x509.subjectName, sha1Thumbprint: who.x509.sha1Thumbprint },
    };
  else context.symmetricKey = {};
  if (payload !== undefined) context.payload = payload;
  return e.kind === "individual"
    ? {
        individualEnrollment: { registrationId: e.id, ...enrollment },
        deviceRuntimeContext: context,
        linkedHubs: [...hubs],
      }
    : {
        enrollmentGroup: { enrollmentGroupId: e.id, ...enrollment },
        deviceRuntimeContext: context,
        linkedHubs: [...hubs],
      };
}
