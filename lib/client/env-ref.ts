/**
 * `${NAME}` references in credential values. Node-RED substitutes environment variables
 * in a node's plain properties but not in its credentials, so a key kept outside the flow
 * (as the Edge Gateway's self-provisioning script keeps THINGSBOARD_PROVISION_DEVICE_KEY) needs this.
 */

export type EnvLookup = (name: string) => string | undefined;

const REF = /\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g;

/** Replaces every `${NAME}` with the variable's value ("" when unset). */
export function resolveEnvRefs(value: string, env: EnvLookup): string {
  return value.replace(REF, (_m, name: string) => env(name) ?? "");
}

/** True when the value holds at least one `${NAME}` reference. */
export function hasEnvRef(value: string): boolean {
  return new RegExp(REF.source).test(value);
}

/**
 * A credential as configured, or its documented fallback when left empty: an empty
 * value means `${fallbackVar}`, so a node with nothing filled in behaves like that script.
 */
export function credentialValue(
  configured: string | undefined,
  env: EnvLookup,
  fallbackVar?: string,
): string {
  const raw = configured && configured.length > 0 ? configured : fallbackVar ? `\${${fallbackVar}}` : "";
  return resolveEnvRefs(raw, env);
}

/** process.env as an EnvLookup. */
export const processEnv: EnvLookup = (name) => process.env[name];
