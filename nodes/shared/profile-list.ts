/**
 * provision-response names its provisioning profiles in a list (`profiles`). Flows saved
 * before the list have three fixed slots (profile, profile2, profile3); they are read the
 * same way until the editor rewrites them into the list (the dialog's oneditprepare, in
 * nodes/provision-response.html), so no saved flow needs editing by hand.
 */

/**
 * The profile ids a saved node names: its `profiles` list, or, for a flow saved before
 * the list, the three fixed slots profile, profile2 and profile3 (empty ones skipped).
 */
export function profileIdsOf(config: {
  profiles?: unknown;
  profile?: unknown;
  profile2?: unknown;
  profile3?: unknown;
}): string[] {
  const listed = Array.isArray(config.profiles) ? (config.profiles as unknown[]) : undefined;
  const ids = listed ?? [config.profile, config.profile2, config.profile3];
  return ids.filter((id): id is string => typeof id === "string" && id.trim() !== "").map((id) => id.trim());
}
