/**
 * plgd DPS client status flags and error codes (iotivity-lite api/plgd, current
 * numbering). Flows get names as well as the mask so they never depend on a numbering.
 */

export const DpsFlag = {
  INITIALIZED: 1 << 0,
  GET_CREDENTIALS: 1 << 1,
  HAS_CREDENTIALS: 1 << 2,
  GET_ACLS: 1 << 3,
  HAS_ACLS: 1 << 4,
  GET_CLOUD: 1 << 6,
  HAS_CLOUD: 1 << 7,
  CLOUD_STARTED: 1 << 8,
  RENEW_CREDENTIALS: 1 << 9,
  GET_OWNER: 1 << 10,
  HAS_OWNER: 1 << 11,
  GET_TIME: 1 << 12,
  HAS_TIME: 1 << 13,
  TRANSIENT_FAILURE: 1 << 29,
  FAILURE: 1 << 30,
} as const;
export type DpsFlagName = keyof typeof DpsFlag;

const ORDER = Object.keys(DpsFlag) as DpsFlagName[];

export const PROVISIONED_MASK =
  DpsFlag.INITIALIZED |
  DpsFlag.HAS_TIME |
  DpsFlag.HAS_OWNER |
  DpsFlag.HAS_CLOUD |
  DpsFlag.HAS_CREDENTIALS |
  DpsFlag.HAS_ACLS;
export const ERROR_FLAGS = DpsFlag.TRANSIENT_FAILURE | DpsFlag.FAILURE;

/** Names of the flags set in `mask`, lowest bit first. */
export function flagNames(mask: number): DpsFlagName[] {
  return ORDER.filter((n) => (mask & DpsFlag[n]) !== 0);
}

export function maskOf(names: DpsFlagName[]): number {
  return names.reduce((m, n) => m | DpsFlag[n], 0);
}

/** The numbering of plgd's first DPS client library, 0.0.1 (dps.h's plgd_dps_status_t in plgd-dev/doc's client-library page: INITIALIZED 1, HAS_CREDENTIALS 2, HAS_ACLS 4, HAS_CLOUD 8, FAILURE 64). */
export function legacyMask(mask: number): number {
  let m = 0;
  if (mask & DpsFlag.INITIALIZED) m |= 1;
  if (mask & DpsFlag.HAS_CREDENTIALS) m |= 2;
  if (mask & DpsFlag.HAS_ACLS) m |= 4;
  if (mask & DpsFlag.HAS_CLOUD) m |= 8;
  if (mask & DpsFlag.FAILURE) m |= 64;
  return m;
}

export const DpsErrorCode = {
  OK: 0,
  ERROR_RESPONSE: 1,
  CONNECT: 2,
  GET_CREDENTIALS: 3,
  GET_ACLS: 4,
  SET_CLOUD: 5,
  START_CLOUD: 6,
  GET_OWNER: 7,
  GET_TIME: 8,
} as const;
export type DpsErrorName = keyof typeof DpsErrorCode;

/**
 * The steps, in the order the current plgd client runs them, spelled as plgd spells its
 * status flags (PLGD_DPS_GET_TIME, _GET_OWNER, _GET_CLOUD, _GET_CREDENTIALS, _GET_ACLS in
 * iotivity-lite api/plgd/plgd_dps.h): the client's status events and the service's audit
 * events use these words.
 */
export type DpsStep = "time" | "owner" | "cloud" | "credentials" | "acls";
export const STEP_ORDER: readonly DpsStep[] = ["time", "owner", "cloud", "credentials", "acls"];

export const STEP_FLAGS: Record<DpsStep, { get: number; has: number; error: DpsErrorName }> = {
  time: { get: DpsFlag.GET_TIME, has: DpsFlag.HAS_TIME, error: "GET_TIME" },
  owner: { get: DpsFlag.GET_OWNER, has: DpsFlag.HAS_OWNER, error: "GET_OWNER" },
  cloud: { get: DpsFlag.GET_CLOUD, has: DpsFlag.HAS_CLOUD, error: "SET_CLOUD" },
  credentials: { get: DpsFlag.GET_CREDENTIALS, has: DpsFlag.HAS_CREDENTIALS, error: "GET_CREDENTIALS" },
  acls: { get: DpsFlag.GET_ACLS, has: DpsFlag.HAS_ACLS, error: "GET_ACLS" },
};

/** The next step to run for a status mask, or undefined when every step is done. */
export function nextStep(mask: number): DpsStep | undefined {
  return STEP_ORDER.find((s) => (mask & STEP_FLAGS[s].has) === 0);
}
