import { hostname as osHostname } from "node:os";
import { randomInt } from "node:crypto";
import type { EnvLookup } from "./env-ref";

export type NameSource = "message" | "setting" | "env" | "hostname" | "random";

export interface NameSources {
  /** msg.deviceName: a message overrides the dialog, so one node can onboard many devices. */
  message?: unknown;
  /** The node's own setting. */
  setting?: string;
  env?: EnvLookup;
  /** Variable consulted after the setting; THINGSBOARD_DEVICE_NAME as in seed 000. */
  envVar?: string;
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
 * The device's name in seed 000's order (explicit setting, THINGSBOARD_DEVICE_NAME,
 * hostname, `teg-` + 7 random digits), with the message's own name in front of all.
 */
export function resolveDeviceName(src: NameSources = {}): { name: string; source: NameSource } {
  const fromMsg = clean(src.message);
  if (fromMsg) return { name: fromMsg, source: "message" };
  const fromSetting = clean(src.setting);
  if (fromSetting) return { name: fromSetting, source: "setting" };
  const env = src.env ?? ((n: string) => process.env[n]);
  const fromEnv = clean(env(src.envVar ?? "THINGSBOARD_DEVICE_NAME"));
  if (fromEnv) return { name: fromEnv, source: "env" };
  let host: string | undefined;
  try {
    host = clean((src.hostname ?? osHostname)());
  } catch {
    host = undefined;
  }
  if (host) return { name: host, source: "hostname" };
  const rnd = src.randomInt ?? randomInt;
  return { name: `teg-${rnd(1000000, 10000000)}`, source: "random" };
}
