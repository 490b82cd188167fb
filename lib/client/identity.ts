import { hostname as osHostname } from "node:os";
import { randomInt } from "node:crypto";
import type { IdentityRules } from "./dialect";
import { finalError } from "../model/errors";
import type { EnvLookup } from "./env-ref";

export type NameSource = "message" | "setting" | "env" | "hostname" | "random";

export interface NameSources {
  /** The message's own identity: a message overrides the dialog, so one node can onboard many devices. */
  message?: unknown;
  /** The node's own setting. */
  setting?: string;
  env?: EnvLookup;
  hostname?: () => string;
  /** Random integer in [min, max); injectable for tests. */
  randomInt?: (min: number, max: number) => number;
}

function clean(v: unknown): string | undefined {
  if (typeof v !== "string") return undefined;
  const t = v.trim();
  return t.length > 0 ? t : undefined;
}

/**
 * A device's identity by its dialect's rules: the message, the dialog, then what the
 * dialect allows (its environment variable, the host name, a random name). ThingsBoard's
 * reference self-provisioning script uses THINGSBOARD_DEVICE_NAME, then the host name,
 * then `teg-` + 7 random digits; a dialect without fallbacks fails with CONFIG.
 */
export function resolveIdentity(
  rules: IdentityRules,
  src: NameSources = {},
): { name: string; source: NameSource } {
  const fromMsg = clean(src.message);
  if (fromMsg) return { name: fromMsg, source: "message" };
  const fromSetting = clean(src.setting);
  if (fromSetting) return { name: fromSetting, source: "setting" };
  const env = src.env ?? ((n: string) => process.env[n]);
  const fromEnv = rules.envVar ? clean(env(rules.envVar)) : undefined;
  if (fromEnv) return { name: fromEnv, source: "env" };
  if (rules.hostname) {
    let host: string | undefined;
    try {
      host = clean((src.hostname ?? osHostname)());
    } catch {
      host = undefined;
    }
    if (host) return { name: host, source: "hostname" };
  }
  if (rules.randomPrefix !== undefined) {
    const rnd = src.randomInt ?? randomInt;
    return { name: `${rules.randomPrefix}${rnd(1000000, 10000000)}`, source: "random" };
  }
  throw finalError(
    "CONFIG",
    `no ${rules.messageProperty} given (set it in the node, or send msg.${rules.messageProperty})`,
  );
}
