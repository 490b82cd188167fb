/**
 * provision-response names its provisioning profiles in a list (`profiles`). Flows saved
 * before the list have three fixed slots (profile, profile2, profile3); they are read the
 * same way until the editor rewrites them into the list (the dialog's oneditprepare, in
 * nodes/provision-response.html), so no saved flow needs editing by hand.
 */

/**
 * The profile ids a saved node names: its `profiles` list, or, when the list is absent or
 * empty (a flow saved before it), the three fixed slots profile, profile2 and profile3.
 */
export function profileIdsOf(config: {
  profiles?: unknown;
  profile?: unknown;
  profile2?: unknown;
  profile3?: unknown;
}): string[] {
  // An empty list counts as none: the editor gives an old node `profiles: []` on import,
  // and a deploy without opening its dialog saves that next to the old slots.
  const listed = Array.isArray(config.profiles) && config.profiles.length > 0;
  const ids: unknown[] = listed
    ? (config.profiles as unknown[])
    : [config.profile, config.profile2, config.profile3];
  const out: string[] = [];
  for (const id of ids) {
    const t = typeof id === "string" ? id.trim() : "";
    // The same profile twice is one profile (the dialog's list drops repeats as well).
    if (t && !out.includes(t)) out.push(t);
  }
  return out;
}
