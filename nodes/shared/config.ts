/**
 * Reading a node's dialog the same way in every node: numbers and strings as the editor
 * stores them (often strings, sometimes empty), the node's environment (flow, group and
 * global env, then process.env, as Node-RED's getSetting resolves them), the tls-config
 * node named by a property, and the retry policy from the dialog's three retry fields.
 */
import type { ConnectionOptions, SecureContextOptions } from "node:tls";
import type { Node, NodeAPI } from "node-red";
import { resolveEnvRefs, type EnvLookup } from "../../lib/client/env-ref";
import { finalError } from "../../lib/model/errors";
import { DEFAULT_RETRY_POLICY, parseIntervals, type RetryPolicy } from "../../lib/retry/policy";

/** A string property, or undefined when it is not a string. */
export function str(v: unknown): string | undefined {
  return typeof v === "string" ? v : undefined;
}

/** A trimmed, non-empty string property, or undefined. */
export function text(v: unknown): string | undefined {
  const s = typeof v === "string" ? v.trim() : "";
  return s.length > 0 ? s : undefined;
}

/**
 * A number from the dialog: `fallback` when the field is empty, not a number, or below
 * `min` (the editor's validation marks those; a flow imported with them still runs).
 */
export function num(v: unknown, fallback: number, min = -Infinity): number {
  const n = typeof v === "number" ? v : typeof v === "string" && v.trim() !== "" ? Number(v) : NaN;
  return Number.isFinite(n) && n >= min ? n : fallback;
}

/**
 * A port from the dialog, `fallback` when empty; a final CONFIG error with `unsetText` when
 * it is still a `${NAME}` (Node-RED replaces a reference whose variable is set, so this one
 * is not: falling back to the default port would serve somewhere nobody expects).
 */
export function portOf(v: unknown, fallback: number, unsetText: (name: string) => string): number {
  if (typeof v === "string" && ENV_REF.test(v.trim()))
    throw finalError("CONFIG", unsetText(v.trim().slice(2, -1)));
  return num(v, fallback, 0);
}

/** Seconds in the dialog, milliseconds in the core. */
export function seconds(v: unknown, fallbackSeconds: number, minSeconds = 0): number {
  return Math.round(num(v, fallbackSeconds, minSeconds) * 1000);
}

/** The node's environment: env set on its flow, group or globally, then process.env. */
export function envOf(RED: NodeAPI, node: Node): EnvLookup {
  return (name) => {
    const v: unknown = RED.util.getSetting(node, name);
    return typeof v === "string" ? v : undefined;
  };
}

/** The dialog's default retry intervals, as the field shows them. */
export const DEFAULT_RETRY_TEXT = DEFAULT_RETRY_POLICY.intervals.join(", ");

/** The retry policy from the dialog's `retryIntervals`, `retryJitter` and `retryMax`. */
export function retryPolicyOf(config: {
  retryIntervals?: unknown;
  retryJitter?: unknown;
  retryMax?: unknown;
}): Partial<RetryPolicy> {
  return {
    intervals: parseIntervals(text(config.retryIntervals) ?? DEFAULT_RETRY_TEXT),
    jitter: num(config.retryJitter, DEFAULT_RETRY_POLICY.jitter, 0),
    maxAttempts: num(config.retryMax, DEFAULT_RETRY_POLICY.maxAttempts),
  };
}

/** setTimeout's longest wait, 2^31 - 1 ms (Node.js docs, timers: setTimeout), in seconds. */
const MAX_SECONDS = 2147483;

function seconds0(s: string): boolean {
  return /^\d+(\.\d+)?$/.test(s) && Number(s) <= MAX_SECONDS;
}

/** A whole-value environment reference, as Node-RED replaces it in a node's properties. */
export const ENV_REF = /^\$\{[A-Za-z_][A-Za-z0-9_]*\}$/;

/**
 * A dialog text with `${NAME}` references inside it (`127.0.0.1:${PORT}`, a port kept in
 * one place). Node-RED replaces only a whole-value reference whose variable is set (flows
 * util mapEnvVarProperties): a whole one still here, or one inside whose variable is not
 * set, is a final CONFIG error naming the variable; the others are replaced from `env`.
 */
export function resolveInline(value: string, env: EnvLookup, unsetText: (name: string) => string): string {
  if (ENV_REF.test(value)) throw finalError("CONFIG", unsetText(value.slice(2, -1)));
  for (const m of value.matchAll(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g))
    if (env(m[1]) === undefined) throw finalError("CONFIG", unsetText(m[1]));
  return resolveEnvRefs(value, env);
}

/** An MQTT broker URL as the dialogs accept it (resources/provisioning-editor.js MQTT_URL). */
// A host or a port may be a whole `${NAME}` (resolved at deploy), as the examples keep ports.
const MQTT_URL =
  /^(mqtts?|ssl|tcp):\/\/([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\]|\$\{[A-Za-z_]\w*\})(:(\d{1,5}|\$\{[A-Za-z_]\w*\}))?\/?$/;

/** A count or rate past this is a typing slip, not a setting (as the dialogs hold it). */
const MAX_COUNT = 1_000_000_000;

/** An optional whole number of at least `min`; empty keeps the node's default. */
const countOf = (min: number) => (s: string) =>
  s === "" || (/^\d+$/.test(s) && Number(s) >= min && Number(s) <= MAX_COUNT);

/**
 * The checks the dialogs make (resources/provisioning-editor.js), for a value as the flow
 * holds it once Node-RED has put in its `${NAME}` references. At run time a port may be 0,
 * which asks the system for a free one.
 */
export const SETTING_CHECKS = {
  // A whole `${NAME}` is replaced by Node-RED at deploy (flows util mapEnvVarProperties); one
  // still there names a variable that is not set, which the node reports itself.
  port: (s: string) => ENV_REF.test(s) || (/^\d{1,5}$/.test(s) && Number(s) <= 65535),
  seconds: (s: string) => seconds0(s) && Number(s) > 0,
  secondsOrZero: seconds0,
  jitter: (s: string) => /^\d+(\.\d+)?$/.test(s) && Number(s) <= 1,
  intervals: (s: string) => {
    const parts = s.split(/[\s,;]+/).filter((p) => p !== "");
    return parts.length >= 1 && parts.length <= 8 && parts.every((p) => seconds0(p) && Number(p) > 0);
  },
  attempts: (s: string) =>
    s === "-1" || (/^\d+$/.test(s) && Number(s) >= 1 && Number(s) <= Number.MAX_SAFE_INTEGER),
  count: countOf(1),
  countOrZero: countOf(0),
  rate: (s: string) => s === "" || (/^\d+(\.\d+)?$/.test(s) && Number(s) <= MAX_COUNT),
  mqttUrl: (s: string) => s === "" || ENV_REF.test(s) || MQTT_URL.test(s),
  minutes: (s: string) =>
    s === "" || (/^\d+(\.\d+)?$/.test(s) && Number(s) > 0 && Number(s) * 60 <= MAX_SECONDS),
} as const;

/** The dialog fields these checks apply to, by name, in every node that has them. */
export const CHECKED_SETTINGS: Readonly<Record<string, keyof typeof SETTING_CHECKS>> = {
  port: "port",
  mqttPort: "port",
  coapPort: "port",
  timeout: "seconds",
  kuraRetryInterval: "seconds",
  kuraBrokerUrl: "mqttUrl",
  decideTimeout: "seconds",
  mqttFirstRequest: "seconds",
  mqttLifetime: "seconds",
  gcmWindow: "seconds",
  closeAfter: "secondsOrZero",
  repeatWindow: "secondsOrZero",
  retryJitter: "jitter",
  retryIntervals: "intervals",
  retryMax: "attempts",
  rateLimit: "rate",
  rateBurst: "count",
  failSlowAfter: "countOrZero",
  failLockAfter: "count",
  failLockMinutes: "minutes",
  mqttMaxSessions: "count",
  mqttPerRemote: "count",
  maxConnections: "count",
  maxConnectionsPerAddress: "count",
};

/**
 * The checked fields of a node's config holding a value its dialog would have marked (a
 * flow imported or edited by hand). An absent or empty field is not bad: its default applies.
 */
export function badSettings(config: object): string[] {
  const bad: string[] = [];
  for (const [field, check] of Object.entries(CHECKED_SETTINGS)) {
    const v: unknown = (config as Record<string, unknown>)[field];
    if (v === undefined || v === null) continue;
    const s = typeof v === "string" || typeof v === "number" ? String(v).trim() : "?";
    if (s !== "" && !SETTING_CHECKS[check](s)) bad.push(field);
  }
  return bad;
}

/** Warns, in the node's own words (`<type>.warn.bad-settings`), when `badSettings` finds any. */
export function warnBadSettings(RED: NodeAPI, node: Node, type: string, config: object): void {
  const bad = badSettings(config);
  if (bad.length > 0) node.warn(RED._(`${type}.warn.bad-settings`, { fields: bad.join(", ") }));
}

/** What Node-RED's tls-config node offers at run time (its own source: nodes/core/network/05-tls.js). */
export interface TlsConfigNode {
  valid?: boolean;
  key?: string | Buffer;
  cert?: string | Buffer;
  ca?: string | Buffer;
  credentials?: { passphrase?: string };
  addTLSOptions?(opts: Record<string, unknown>): Record<string, unknown>;
}

/**
 * Client TLS options from the tls-config node `id`: undefined when none is named, a
 * final CONFIG error when one is named but missing or disabled. Verification stays on
 * unless the tls-config turns it off (the node warns about that where it is visible).
 */
export function tlsClientOptionsOf(
  RED: NodeAPI,
  id: string | undefined,
  missingText: string,
): ConnectionOptions | undefined {
  if (!id) return undefined;
  const tls = RED.nodes.getNode(id) as unknown as TlsConfigNode | null;
  if (!tls || typeof tls.addTLSOptions !== "function") throw finalError("CONFIG", missingText);
  const opts = tls.addTLSOptions({}) as ConnectionOptions;
  opts.rejectUnauthorized = opts.rejectUnauthorized !== false;
  return opts;
}

/**
 * Server TLS material from the tls-config node `id`: key and certificate are required.
 * Undefined when none is named; a final CONFIG error when it is missing or unusable.
 */
export function tlsServerOptionsOf(
  RED: NodeAPI,
  id: string | undefined,
  texts: { missing: string; invalid: string },
): SecureContextOptions | undefined {
  if (!id) return undefined;
  const tls = RED.nodes.getNode(id) as unknown as TlsConfigNode | null;
  if (!tls) throw finalError("CONFIG", texts.missing);
  if (tls.valid === false || !tls.key || !tls.cert) throw finalError("CONFIG", texts.invalid);
  const opts: SecureContextOptions = { key: tls.key, cert: tls.cert };
  if (tls.ca) opts.ca = tls.ca;
  if (tls.credentials?.passphrase) opts.passphrase = tls.credentials.passphrase;
  return opts;
}
