/**
 * The OCF representations plgd DPS exchanges (CBOR, or JSON on request), with checks
 * that say which field is wrong. Field names follow plgd-dev/device's schema package and
 * iotivity-lite's api/plgd client.
 */
import { decodeCborBounded } from "../../util/cbor-limits";
import { cborLib } from "../../util/protocol-libs";
import { parseJsonBounded } from "../../util/json-limits";

export const CF_TEXT = 0;
export const CF_JSON = 50;
export const CF_CBOR = 60;
export const CF_OCF_CBOR = 10000;

export const ENCODING_PEM = "oic.sec.encoding.pem";
export const ENCODING_RAW = "oic.sec.encoding.raw";
export const CREDTYPE_SYMMETRIC_PAIR_WISE = 1;
export const CREDTYPE_ASYMMETRIC_SIGNING_WITH_CERTIFICATE = 8;
export const CREDUSAGE_CERT = "oic.sec.cred.cert";
export const CREDUSAGE_TRUST_CA = "oic.sec.cred.trustca";
/** plgd DPS tags what it provisions with "dps". */
export const DPS_TAG = "dps";

/** Resource paths (without the leading slash). */
export const PATHS = {
  time: "x.plgd.dev/time",
  owner: "api/v1/provisioning/ownership",
  cloud: "api/v1/provisioning/cloud-configuration",
  credentials: "api/v1/provisioning/credentials",
  acls: "api/v1/provisioning/acls",
} as const;

export const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** The request or response body is not the expected representation. */
export class OcfFormatError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "OcfFormatError";
  }
}

export function isCborFormat(cf: number | undefined): boolean {
  return cf === CF_CBOR || cf === CF_OCF_CBOR;
}

function stripUndefined(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(stripUndefined);
  if (v instanceof Uint8Array || v === null || typeof v !== "object") return v;
  const out: Record<string, unknown> = {};
  for (const [k, x] of Object.entries(v)) if (x !== undefined) out[k] = stripUndefined(x);
  return out;
}

/** Encodes for the content format (JSON 50, otherwise CBOR); undefined fields are left out. */
export function encodeBody(value: object, contentFormat: number = CF_OCF_CBOR): Buffer {
  if (contentFormat === CF_JSON) {
    // Buffer.toJSON runs before a replacer sees the value: bytes become base64 text here.
    const bytes = (v: unknown): v is { type: "Buffer"; data: number[] } =>
      typeof v === "object" &&
      v !== null &&
      (v as { type?: unknown }).type === "Buffer" &&
      Array.isArray((v as { data?: unknown }).data);
    return Buffer.from(
      JSON.stringify(value, (_k, v: unknown) => (bytes(v) ? Buffer.from(v.data).toString("base64") : v)),
    );
  }
  return cborLib().encode(stripUndefined(value));
}

/**
 * The largest body either side decodes (the coaps+tcp listener's Max-Message-Size), and
 * how deep and how many items: the deepest DPS representation (a credential's
 * publicdata in creds, an ACE's resources in aclist2) nests 4 levels and has a few
 * hundred items; the limits refuse bombs before the decoder recurses into them.
 */
export const BODY_LIMITS = { maxBytes: 262144, maxDepth: 32, maxItems: 10000 } as const;

/** Decodes a body; CBOR when the format is 60, 10000 or absent, JSON for 50. */
export function decodeBody(payload: Buffer, contentFormat: number | undefined): unknown {
  if (payload.length === 0) throw new OcfFormatError("the body is empty");
  if (contentFormat === CF_JSON) {
    const parsed = parseJsonBounded(payload, BODY_LIMITS);
    if (!parsed.ok) throw new OcfFormatError(`the body is refused: ${parsed.error}`);
    return parsed.value;
  }
  if (contentFormat !== undefined && !isCborFormat(contentFormat)) {
    throw new OcfFormatError(`unsupported content format ${contentFormat} (expected 60 or 10000)`);
  }
  const decoded = decodeCborBounded(payload, BODY_LIMITS);
  if (!decoded.ok)
    throw new OcfFormatError(
      decoded.error === "body is not CBOR" ? "the body is not CBOR" : `the body is refused: ${decoded.error}`,
    );
  const items = decoded.items;
  // One representation per body: trailing bytes mean a broken or forged message.
  if (items.length !== 1) throw new OcfFormatError("the body is not one CBOR item");
  return items[0] instanceof Map ? Object.fromEntries(items[0]) : items[0];
}

type Obj = Record<string, unknown>;

function obj(v: unknown, what: string): Obj {
  if (typeof v !== "object" || v === null || Array.isArray(v) || Buffer.isBuffer(v)) {
    throw new OcfFormatError(`${what} must be a map`);
  }
  return v as Obj;
}

function str(o: Obj, key: string, what: string, required: true): string;
function str(o: Obj, key: string, what: string, required: false): string | undefined;
function str(o: Obj, key: string, what: string, required: boolean): string | undefined {
  const v = o[key];
  if (v === undefined || v === null) {
    if (required) throw new OcfFormatError(`${what}: "${key}" is missing`);
    return undefined;
  }
  if (typeof v !== "string") throw new OcfFormatError(`${what}: "${key}" must be a text string`);
  return v;
}

function uuid(o: Obj, key: string, what: string): string {
  const v = str(o, key, what, true);
  if (!UUID_RE.test(v)) throw new OcfFormatError(`${what}: "${key}" must be a UUID`);
  return v.toLowerCase();
}

// ---- /x.plgd.dev/time ----

export interface TimeRep {
  /** RFC 3339. */
  time: string;
  status?: string;
  lastSyncedTime?: string;
}

export function parseTime(v: unknown): TimeRep {
  const o = obj(v, "time");
  const time = str(o, "time", "time", true);
  if (Number.isNaN(Date.parse(time))) throw new OcfFormatError('time: "time" is not an RFC 3339 date');
  const out: TimeRep = { time };
  const status = str(o, "status", "time", false);
  if (status !== undefined) out.status = status;
  const last = str(o, "lastSyncedTime", "time", false);
  if (last !== undefined) out.lastSyncedTime = last;
  return out;
}

// ---- /api/v1/provisioning/ownership (doxm) ----

export interface DoxmRep {
  devowneruuid: string;
}

export function parseOwnership(v: unknown): DoxmRep {
  return { devowneruuid: uuid(obj(v, "ownership"), "devowneruuid", "ownership") };
}

// ---- /api/v1/provisioning/cloud-configuration ----

export interface Gateway {
  uri: string;
  id: string;
}

export interface CloudConfRequest {
  di: string;
  selectedGateway?: Gateway;
}

function gateway(v: unknown, what: string): Gateway {
  const o = obj(v, what);
  return { uri: str(o, "uri", what, true), id: str(o, "id", what, true) };
}

export function parseCloudConfRequest(v: unknown): CloudConfRequest {
  const o = obj(v, "cloud configuration request");
  const out: CloudConfRequest = { di: uuid(o, "di", "cloud configuration request") };
  if (o.selectedGateway !== undefined && o.selectedGateway !== null) {
    out.selectedGateway = gateway(o.selectedGateway, "selectedGateway");
  }
  return out;
}

export interface CloudConfRep {
  /** Access token for the hub. */
  at: string;
  /** Authorization provider name. */
  apn: string;
  /** Cloud interface server: the hub's CoAP gateway URI. */
  cis: string;
  /** Hub id. */
  sid: string;
  "x.org.iotivity.servers"?: Gateway[];
}

export function parseCloudConf(v: unknown): CloudConfRep {
  const o = obj(v, "cloud configuration");
  const w = "cloud configuration";
  const out: CloudConfRep = {
    at: str(o, "at", w, true),
    apn: str(o, "apn", w, true),
    cis: str(o, "cis", w, true),
    sid: str(o, "sid", w, true),
  };
  const servers = o["x.org.iotivity.servers"];
  if (servers !== undefined && servers !== null) {
    if (!Array.isArray(servers)) throw new OcfFormatError(`${w}: "x.org.iotivity.servers" must be an array`);
    out["x.org.iotivity.servers"] = servers.map((s, i) => gateway(s, `x.org.iotivity.servers[${i}]`));
  }
  return out;
}

// ---- /api/v1/provisioning/credentials (oic.sec.cred) ----

export interface CredentialsRequest {
  di?: string;
  csr?: { data: string; encoding: string };
  selectedGateway?: Gateway;
}

export function parseCredentialsRequest(v: unknown): CredentialsRequest {
  const w = "credentials request";
  const o = obj(v, w);
  const out: CredentialsRequest = {};
  if (o.di !== undefined && o.di !== null) out.di = uuid(o, "di", w);
  if (o.csr !== undefined && o.csr !== null) {
    const c = obj(o.csr, "csr");
    out.csr = {
      data: str(c, "data", "csr", true),
      encoding: str(c, "encoding", "csr", false) ?? ENCODING_PEM,
    };
  }
  if (o.selectedGateway !== undefined && o.selectedGateway !== null)
    out.selectedGateway = gateway(o.selectedGateway, "selectedGateway");
  return out;
}

export interface CredData {
  data: string | Buffer;
  encoding: string;
}

export interface Cred {
  credid?: number;
  credtype: number;
  subjectuuid: string;
  credusage?: string;
  publicdata?: CredData;
  privatedata?: CredData;
  tag?: string;
}

export interface CredRep {
  rowneruuid?: string;
  creds: Cred[];
}

function credData(v: unknown, what: string): CredData {
  const o = obj(v, what);
  const data = o.data;
  if (typeof data !== "string" && !(data instanceof Uint8Array))
    throw new OcfFormatError(`${what}: "data" must be text or bytes`);
  return {
    data: typeof data === "string" ? data : Buffer.from(data),
    encoding: str(o, "encoding", what, true),
  };
}

export function parseCreds(v: unknown): CredRep {
  const o = obj(v, "credentials");
  if (!Array.isArray(o.creds)) throw new OcfFormatError('credentials: "creds" must be an array');
  const creds = o.creds.map((c, i): Cred => {
    const w = `creds[${i}]`;
    const co = obj(c, w);
    if (typeof co.credtype !== "number") throw new OcfFormatError(`${w}: "credtype" must be a number`);
    const out: Cred = { credtype: co.credtype, subjectuuid: str(co, "subjectuuid", w, true) };
    if (typeof co.credid === "number") out.credid = co.credid;
    const usage = str(co, "credusage", w, false);
    if (usage !== undefined) out.credusage = usage;
    if (co.publicdata !== undefined && co.publicdata !== null)
      out.publicdata = credData(co.publicdata, `${w}.publicdata`);
    if (co.privatedata !== undefined && co.privatedata !== null)
      out.privatedata = credData(co.privatedata, `${w}.privatedata`);
    const tag = str(co, "tag", w, false);
    if (tag !== undefined) out.tag = tag;
    return out;
  });
  const out: CredRep = { creds };
  const owner = str(o, "rowneruuid", "credentials", false);
  if (owner !== undefined) out.rowneruuid = owner;
  return out;
}

// ---- /api/v1/provisioning/acls (oic.sec.acl2) ----

export interface AceResource {
  href?: string;
  if?: string[];
  rt?: string[];
  wc?: string;
}

export interface AceSubject {
  uuid?: string;
  conntype?: string;
  authority?: string;
  role?: string;
}

export interface Ace {
  aceid?: number;
  permission: number;
  subject: AceSubject;
  resources: AceResource[];
  tag?: string;
}

export interface Acl2Rep {
  rowneruuid?: string;
  aclist2: Ace[];
}

export function parseAcls(v: unknown): Acl2Rep {
  const o = obj(v, "acls");
  if (!Array.isArray(o.aclist2)) throw new OcfFormatError('acls: "aclist2" must be an array');
  const aclist2 = o.aclist2.map((a, i): Ace => {
    const w = `aclist2[${i}]`;
    const ao = obj(a, w);
    if (typeof ao.permission !== "number" || ao.permission < 0 || ao.permission > 31) {
      throw new OcfFormatError(`${w}: "permission" must be a number from 0 to 31`);
    }
    const so = obj(ao.subject, `${w}.subject`);
    const subject: AceSubject = {};
    for (const k of ["uuid", "conntype", "authority", "role"] as const) {
      const s = str(so, k, `${w}.subject`, false);
      if (s !== undefined) subject[k] = s;
    }
    if (Object.keys(subject).length === 0)
      throw new OcfFormatError(`${w}.subject: needs uuid, conntype or role`);
    if (!Array.isArray(ao.resources)) throw new OcfFormatError(`${w}: "resources" must be an array`);
    const resources = ao.resources.map((r, j): AceResource => {
      const rw = `${w}.resources[${j}]`;
      const ro = obj(r, rw);
      const res: AceResource = {};
      const href = str(ro, "href", rw, false);
      if (href !== undefined) res.href = href;
      const wc = str(ro, "wc", rw, false);
      if (wc !== undefined) res.wc = wc;
      for (const k of ["if", "rt"] as const) {
        const list = ro[k];
        if (list === undefined || list === null) continue;
        if (!Array.isArray(list) || !list.every((x) => typeof x === "string"))
          throw new OcfFormatError(`${rw}: "${k}" must be a list of text`);
        res[k] = list as string[];
      }
      return res;
    });
    const ace: Ace = { permission: ao.permission, subject, resources };
    const id = typeof ao.aceid === "number" ? ao.aceid : typeof ao.id === "number" ? ao.id : undefined;
    if (id !== undefined) ace.aceid = id;
    const tag = str(ao, "tag", w, false);
    if (tag !== undefined) ace.tag = tag;
    return ace;
  });
  const out: Acl2Rep = { aclist2 };
  const owner = str(o, "rowneruuid", "acls", false);
  if (owner !== undefined) out.rowneruuid = owner;
  return out;
}
