/**
 * Provision requests of the Everyware / Kura serving side, created beforehand as on
 * Everyware Cloud (its REST API's ProvisionRequestCreator: clientId unique per account,
 * provisionUserUsername and provisionUserPassword, generateActivationKey, activatesOn,
 * expiresOn, retryMaxAttempts, overwriteIfDuplicate, and the attachments handed out: at
 * most one configuration and up to 9 applications), kept in the node's store through
 * Records under `kura/<account>/<client id>`.
 *
 * Secrets that are only compared are kept as salted scrypt hashes (the provision password,
 * the activation key); what the device is handed out (the account password) is kept as
 * given, since it must be sent. Listing reads the entries' metadata only (the status), so
 * it never reads a secret.
 *
 * Statuses, in the platform's words (Everyware Cloud's provision request statuses):
 *   CREATED    made, no device has provisioned with it yet
 *   RUNNING    a device was handed the answer; waiting for its confirmation
 *   COMPLETED  the device confirmed: the request is consumed, a CONNECT with it is refused
 *   FAILED     its attempts ran out (retry-max-attempts) before it completed
 *   ABANDONED  its window closed (expires-on) before it completed, or management abandoned it
 * Transitions: CREATED -> RUNNING -> COMPLETED; CREATED or RUNNING -> FAILED | ABANDONED;
 * RUNNING -> RUNNING (the device asks again: its answer was lost). COMPLETED, FAILED and
 * ABANDONED are final; an update (management, or a changed dialog request with
 * overwrite-if-duplicate) makes a request CREATED again with its attempts reset.
 */
import { createHash, randomBytes, scrypt as scryptCb, timingSafeEqual } from "node:crypto";
import { promisify } from "node:util";
import { X509Certificate } from "node:crypto";
import { invalid, Records, type RecordSummary } from "../../service/records";
import type { StoreBackend } from "../../stores/backend";
import { splitCertificates } from "../../pki/pem";
import { randomAlphanumeric } from "../../util/secrets";
import {
  brokerUrlError,
  MAX_APPLICATIONS,
  MAX_FIELD_CHARS,
  topicValueError,
  type KuraAccountConfiguration,
  type KuraApplication,
} from "./namespace";

const scrypt = promisify(scryptCb) as (
  password: string,
  salt: Buffer,
  keylen: number,
  options: { N: number; r: number; p: number },
) => Promise<Buffer>;

export type KuraRequestStatus = "CREATED" | "RUNNING" | "COMPLETED" | "FAILED" | "ABANDONED";
export const KURA_STATUSES: readonly KuraRequestStatus[] = Object.freeze([
  "CREATED",
  "RUNNING",
  "COMPLETED",
  "FAILED",
  "ABANDONED",
]);
const FINAL: ReadonlySet<KuraRequestStatus> = new Set(["COMPLETED", "FAILED", "ABANDONED"]);

/** Everyware's generated activation key: 32 random characters. */
export const ACTIVATION_KEY_LENGTH = 32;
/** A request without retry-max-attempts allows this many attempts. */
export const DEFAULT_RETRY_MAX_ATTEMPTS = 3;

/** A provision request as given (by the dialog or a message), secrets in the clear. */
export interface KuraRequestInput {
  clientId: string;
  username: string;
  password: string;
  /** Absent or "": none; "generate": 32 random characters, handed back once by `add`. */
  activationKey?: string;
  /** ISO dates; absent: from now on / never. */
  activatesOn?: string;
  expiresOn?: string;
  /** Attempts allowed (provision messages and refused CONNECTs of this client id); -1: unlimited. */
  retryMaxAttempts?: number;
  overwriteIfDuplicate?: boolean;
  configuration?: KuraAccountConfiguration;
  applications?: KuraApplication[];
  /** PEM certificates, as one text or a list. */
  certificateChain?: string | string[];
}

/** What the store keeps. */
export interface KuraRequestRecord {
  v: 1;
  clientId: string;
  username: string;
  passwordHash: string;
  activationKeyHash?: string;
  activatesOn?: string;
  expiresOn?: string;
  retryMaxAttempts: number;
  status: KuraRequestStatus;
  attempts: number;
  configuration?: KuraAccountConfiguration;
  applications: KuraApplication[];
  certificateChain: string[];
  createdAt: string;
  updatedAt: string;
  answeredAt?: string;
  completedAt?: string;
  /** Why it is FAILED or ABANDONED, in a few words. */
  endedBecause?: string;
  /** A salted digest of the definition (secrets included), to tell a changed dialog request. */
  definition: string;
  /** "dialog" when the node's dialog made it. */
  owner?: string;
}

/** What management shows of a request: never a secret, never the hand-out password. */
export interface KuraRequestView {
  account: string;
  clientId: string;
  status: KuraRequestStatus;
  username?: string;
  hasActivationKey?: boolean;
  activatesOn?: string;
  expiresOn?: string;
  retryMaxAttempts?: number;
  attempts?: number;
  brokerUrl?: string;
  accountName?: string;
  applications?: string[];
  certificates?: number;
  createdAt?: string;
  updatedAt: string;
  answeredAt?: string;
  completedAt?: string;
  endedBecause?: string;
}

// ---------------------------------------------------------------------------------------
// Hashes: scrypt with a fresh salt (RFC 7914); cost kept low enough for a CONNECT.

const SCRYPT = { N: 1 << 14, r: 8, p: 1 };
const KEYLEN = 32;

export async function hashSecret(secret: string): Promise<string> {
  const salt = randomBytes(16);
  const h = await scrypt(secret, salt, KEYLEN, SCRYPT);
  return `scrypt$${SCRYPT.N}$${SCRYPT.r}$${SCRYPT.p}$${salt.toString("base64")}$${h.toString("base64")}`;
}

export async function verifySecret(secret: string, stored: string): Promise<boolean> {
  const parts = stored.split("$");
  if (parts.length !== 6 || parts[0] !== "scrypt") return false;
  const [N, r, p] = parts.slice(1, 4).map(Number);
  if (![N, r, p].every((n) => Number.isInteger(n) && n > 0) || N > 1 << 20) return false;
  const salt = Buffer.from(parts[4], "base64");
  const want = Buffer.from(parts[5], "base64");
  if (want.length !== KEYLEN) return false;
  const got = await scrypt(secret, salt, KEYLEN, { N, r, p });
  return timingSafeEqual(got, want);
}

// ---------------------------------------------------------------------------------------
// Checks

function plainObject(v: unknown): Record<string, unknown> | undefined {
  return typeof v === "object" && v !== null && !Array.isArray(v)
    ? (v as Record<string, unknown>)
    : undefined;
}

function text(v: unknown, what: string, required: boolean): string | undefined {
  if (v === undefined || v === null || v === "") {
    if (required) throw invalid(`${what} is required`);
    return undefined;
  }
  if (typeof v !== "string") throw invalid(`${what} must be a string`);
  if (v.length > MAX_FIELD_CHARS) throw invalid(`${what} may be at most ${MAX_FIELD_CHARS} characters long`);
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(v)) throw invalid(`${what} may not hold control characters`);
  return v;
}

function dateOf(v: unknown, what: string): string | undefined {
  if (v === undefined || v === null || v === "") return undefined;
  if (typeof v !== "string" && typeof v !== "number") throw invalid(`${what} must be a date`);
  const t = new Date(v).getTime();
  if (!Number.isFinite(t)) throw invalid(`${what} is not a date`);
  return new Date(t).toISOString();
}

/** Reads and checks one request as given; throws INVALID with a secret-free message. */
export function parseRequestInput(v: unknown): KuraRequestInput {
  const o = plainObject(v);
  if (!o) throw invalid("a provision request must be an object");
  const clientId = text(o.clientId, "clientId", true) as string;
  const idErr = topicValueError(clientId, "client id");
  if (idErr) throw invalid(idErr);
  const out: KuraRequestInput = {
    clientId,
    username: text(o.username, "username", true) as string,
    password: text(o.password, "password", true) as string,
  };
  const key = text(o.activationKey, "activationKey", false);
  if (key !== undefined) out.activationKey = key;
  const from = dateOf(o.activatesOn, "activatesOn");
  const to = dateOf(o.expiresOn, "expiresOn");
  if (from) out.activatesOn = from;
  if (to) out.expiresOn = to;
  if (from && to && Date.parse(to) <= Date.parse(from)) throw invalid("expiresOn must be after activatesOn");
  if (o.retryMaxAttempts !== undefined && o.retryMaxAttempts !== null && o.retryMaxAttempts !== "") {
    const n = Number(o.retryMaxAttempts);
    if (!Number.isInteger(n) || (n < 1 && n !== -1) || n > 1000000)
      throw invalid("retryMaxAttempts must be -1 (unlimited) or a whole number from 1");
    out.retryMaxAttempts = n;
  }
  if (o.overwriteIfDuplicate !== undefined) out.overwriteIfDuplicate = o.overwriteIfDuplicate === true;
  if (o.configuration !== undefined && o.configuration !== null) {
    const c = plainObject(o.configuration);
    if (!c) throw invalid("configuration must be an object");
    const brokerUrl = text(c.brokerUrl, "configuration.brokerUrl", true) as string;
    const err = brokerUrlError(brokerUrl);
    if (err) throw invalid(`configuration: ${err}`);
    out.configuration = {
      brokerUrl,
      accountName: text(c.accountName, "configuration.accountName", false) ?? "",
      username: text(c.username, "configuration.username", false) ?? "",
      password: text(c.password, "configuration.password", false) ?? "",
      clientId: text(c.clientId, "configuration.clientId", false) ?? "",
    };
  }
  if (o.applications !== undefined && o.applications !== null) {
    if (!Array.isArray(o.applications)) throw invalid("applications must be a list");
    if (o.applications.length > MAX_APPLICATIONS)
      throw invalid(`at most ${MAX_APPLICATIONS} applications may be handed out`);
    out.applications = o.applications.map((a, i) => {
      const p = plainObject(a);
      if (!p) throw invalid(`application ${i + 1} must be an object`);
      return {
        name: text(p.name, `application ${i + 1} name`, true) as string,
        version: text(p.version, `application ${i + 1} version`, false) ?? "",
        uri: text(p.uri, `application ${i + 1} uri`, true) as string,
      };
    });
  }
  if (o.certificateChain !== undefined && o.certificateChain !== null && o.certificateChain !== "") {
    const pems = Array.isArray(o.certificateChain)
      ? o.certificateChain.flatMap((p) => (typeof p === "string" ? splitCertificates(p) : []))
      : typeof o.certificateChain === "string"
        ? splitCertificates(o.certificateChain)
        : [];
    if (pems.length === 0) throw invalid("certificateChain holds no PEM certificate");
    for (const [i, pem] of pems.entries()) {
      try {
        new X509Certificate(pem);
      } catch {
        throw invalid(`certificate ${i + 1} of certificateChain does not parse`);
      }
    }
    out.certificateChain = pems;
  }
  return out;
}

/** Whether a request may be used now (its status, window and attempts), with the reason when not. */
export function activeNow(
  r: KuraRequestRecord,
  now: number,
): { ok: true } | { ok: false; status: KuraRequestStatus; why: string } {
  if (r.status === "COMPLETED") return { ok: false, status: r.status, why: "the request is consumed" };
  if (FINAL.has(r.status)) return { ok: false, status: r.status, why: `the request is ${r.status}` };
  if (r.activatesOn && now < Date.parse(r.activatesOn))
    return { ok: false, status: r.status, why: "the request is not active yet" };
  if (r.expiresOn && now >= Date.parse(r.expiresOn))
    return { ok: false, status: "ABANDONED", why: "the request expired" };
  if (!attemptsLeft(r)) return { ok: false, status: "FAILED", why: "no attempts left" };
  return { ok: true };
}

export function attemptsLeft(r: KuraRequestRecord): boolean {
  return r.retryMaxAttempts === -1 || r.attempts < r.retryMaxAttempts;
}

function definitionDigest(salt: string, input: KuraRequestInput): string {
  const { overwriteIfDuplicate: _o, ...def } = input;
  return salt + ":" + createHash("sha256").update(salt).update(JSON.stringify(def)).digest("base64");
}

/** Whether a stored request was made from exactly this definition. */
export function sameDefinition(r: KuraRequestRecord, input: KuraRequestInput): boolean {
  const salt = r.definition.split(":")[0];
  return definitionDigest(salt, input) === r.definition;
}

/** A new record from a checked input; `activationKey` is the key in the clear (generated when asked). */
export async function recordOf(
  input: KuraRequestInput,
  now: number,
  owner?: string,
): Promise<{ record: KuraRequestRecord; activationKey?: string }> {
  let key = input.activationKey;
  if (key === "generate") key = randomAlphanumeric(ACTIVATION_KEY_LENGTH);
  const at = new Date(now).toISOString();
  const record: KuraRequestRecord = {
    v: 1,
    clientId: input.clientId,
    username: input.username,
    passwordHash: await hashSecret(input.password),
    retryMaxAttempts: input.retryMaxAttempts ?? DEFAULT_RETRY_MAX_ATTEMPTS,
    status: "CREATED",
    attempts: 0,
    applications: input.applications ?? [],
    certificateChain: Array.isArray(input.certificateChain)
      ? input.certificateChain
      : input.certificateChain
        ? splitCertificates(input.certificateChain)
        : [],
    createdAt: at,
    updatedAt: at,
    definition: definitionDigest(randomBytes(9).toString("base64"), input),
  };
  if (key) record.activationKeyHash = await hashSecret(key);
  if (input.activatesOn) record.activatesOn = input.activatesOn;
  if (input.expiresOn) record.expiresOn = input.expiresOn;
  if (input.configuration) record.configuration = { ...input.configuration };
  if (owner) record.owner = owner;
  return { record, activationKey: key && input.activationKey === "generate" ? key : undefined };
}

function isRecord(v: unknown): v is KuraRequestRecord {
  const o = plainObject(v);
  return (
    !!o &&
    o.v === 1 &&
    typeof o.clientId === "string" &&
    typeof o.username === "string" &&
    typeof o.passwordHash === "string" &&
    typeof o.status === "string" &&
    (KURA_STATUSES as readonly string[]).includes(o.status) &&
    typeof o.attempts === "number" &&
    typeof o.retryMaxAttempts === "number" &&
    Array.isArray(o.applications) &&
    Array.isArray(o.certificateChain)
  );
}

/** The requests of one service: Records `kura/<account>/<client id>`, status in the metadata. */
export function kuraRequestRecords(store: StoreBackend): Records<KuraRequestRecord> {
  return new Records<KuraRequestRecord>(store, {
    dialect: "kura",
    protocol: "kura provision request",
    metaOf: (r) => ({ kind: r.status, obtainedAt: r.createdAt }),
    isRecord,
    words: { group: "an account name", id: "a client id" },
  });
}

export function viewOf(account: string, r: KuraRequestRecord): KuraRequestView {
  const v: KuraRequestView = {
    account,
    clientId: r.clientId,
    status: r.status,
    username: r.username,
    hasActivationKey: r.activationKeyHash !== undefined,
    retryMaxAttempts: r.retryMaxAttempts,
    attempts: r.attempts,
    applications: r.applications.map((a) => a.name),
    certificates: r.certificateChain.length,
    createdAt: r.createdAt,
    updatedAt: r.updatedAt,
  };
  if (r.activatesOn) v.activatesOn = r.activatesOn;
  if (r.expiresOn) v.expiresOn = r.expiresOn;
  if (r.configuration) {
    v.brokerUrl = r.configuration.brokerUrl;
    v.accountName = r.configuration.accountName;
  }
  if (r.answeredAt) v.answeredAt = r.answeredAt;
  if (r.completedAt) v.completedAt = r.completedAt;
  if (r.endedBecause) v.endedBecause = r.endedBecause;
  return v;
}

export function summaryView(s: RecordSummary): KuraRequestView {
  return {
    account: s.group,
    clientId: s.id,
    status: (KURA_STATUSES as readonly string[]).includes(s.kind ?? "")
      ? (s.kind as KuraRequestStatus)
      : "CREATED",
    updatedAt: s.updatedAt,
  };
}
