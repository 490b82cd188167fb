/**
 * The serving side of plgd DPS: one handler for every step, over any CoAP transport
 * (CoapTcpServer in production, direct calls in tests). The device is matched to an
 * enrollment group by its manufacturer chain on every request (cached per connection).
 */
import type { X509Certificate } from "node:crypto";
import { auditEvent, type ServiceAuditEvent } from "../../service/audit";
import { randomAlphanumeric } from "../../util/secrets";
import { parseCsr, PkiError } from "../../pki/csr";
import { parseCertificates } from "../../pki/pem";
import type { CoapResponse } from "../../transports/coap-tcp/types";
import type { AuditInput } from "../../service/audit";
import { EnrollmentIndex, type EnrollmentGroup, type MatchResult } from "./enrollment";
import {
  CF_JSON,
  CF_OCF_CBOR,
  CF_CBOR,
  CF_TEXT,
  CREDTYPE_ASYMMETRIC_SIGNING_WITH_CERTIFICATE,
  CREDTYPE_SYMMETRIC_PAIR_WISE,
  CREDUSAGE_CERT,
  CREDUSAGE_TRUST_CA,
  DPS_TAG,
  ENCODING_PEM,
  ENCODING_RAW,
  OcfFormatError,
  PATHS,
  decodeBody,
  encodeBody,
  parseCloudConfRequest,
  parseCredentialsRequest,
  UUID_RE,
  type Ace,
  type AceResource,
  type Acl2Rep,
  type CloudConfRep,
  type Cred,
  type Gateway,
} from "./ocf";

/** What the service needs of a request; CoapServerRequest has all of it. */
export interface DpsServerRequest {
  method: string;
  path: string;
  contentFormat?: number;
  accept?: number;
  payload?: Buffer;
  remote: string;
  /** Leaf first, then the issuers the peer presented. */
  peerCertificateChain?: X509Certificate[];
}

export interface DpsAuditEvent extends ServiceAuditEvent {
  /** time, owner, cloud, credentials, acls: the client's step names (status.ts). */
  step?: string;
  /** Identity certificate notAfter, for "provisioned" events. */
  expiresAt?: string;
}

export interface DpsServiceOptions {
  groups: EnrollmentGroup[];
  now?: () => Date;
  onAudit?: (e: DpsAuditEvent) => void;
  /** Devices remembered between connections (who identified as which di). Default 10000. */
  maxDevices?: number;
}

class Refusal extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly reason: string,
  ) {
    super(message);
  }
}

const OWNER_RESOURCES = ["/CoapCloudConfResURI", "/oic/sec/sp", "/x.plgd.dev/time"];
const HUB_RESOURCES = ["/oc/con", "/oc/swu", "/oic/mnt", "/x.plgd.dev/time"];
const PUBLIC_RESOURCES = ["/oic/d", "/oic/p", "/oic/res", "/oic/sec/sdi", "/oic/sec/doxm"];
const ALL_PERMISSIONS = 31;
const READ = 2;

function hrefs(list: string[]): AceResource[] {
  return list.map((href) => ({ href, if: ["*"] }));
}

function stepOf(rawPath: string): { path: string; step?: keyof typeof PATHS; stepName?: string } {
  const path = rawPath.replace(/^\/+|\/+$/g, "");
  const step = (Object.keys(PATHS) as Array<keyof typeof PATHS>).find((k) => PATHS[k] === path);
  return { path, step, stepName: step };
}

function text(code: string, message: string): CoapResponse {
  return { code, contentFormat: CF_TEXT, payload: Buffer.from(message, "utf8") };
}

/** The plgd DPS service core: `handle` answers one CoAP request. */
export class DpsService {
  private readonly index: EnrollmentIndex;
  private readonly now: () => Date;
  private readonly onAudit?: (e: DpsAuditEvent) => void;
  private readonly maxDevices: number;
  private readonly matches = new WeakMap<object, MatchResult>();
  private readonly trust = new WeakMap<EnrollmentGroup, Cred[]>();
  /** Manufacturer certificate fingerprint -> the device id it identified with. */
  private readonly devices = new Map<string, string>();

  constructor(opts: DpsServiceOptions) {
    this.index = new EnrollmentIndex(opts.groups);
    this.now = opts.now ?? (() => new Date());
    this.onAudit = opts.onAudit;
    this.maxDevices = opts.maxDevices ?? 10000;
  }

  /** PEM trust anchors for the TLS server (the groups' chains). */
  trustAnchors(): string[] {
    return this.index.anchors();
  }

  /**
   * Whether the device's manufacturer chain opens an enrollment group; a refusal (4.01 or
   * 4.03, audited) otherwise. The listener asks this before it buffers any of a
   * request, so a device without an acceptable certificate cannot upload anything.
   */
  authorize(req: DpsServerRequest): CoapResponse | undefined {
    const match = this.matchOf(req);
    if (match.ok) return undefined;
    const { path, stepName } = stepOf(req.path);
    const fingerprint = req.peerCertificateChain?.[0]?.fingerprint256;
    return this.refusal(
      req,
      undefined,
      new Refusal(match.status, match.reason, "denied"),
      stepName ?? `/${path}`,
      fingerprint,
    );
  }

  async handle(req: DpsServerRequest): Promise<CoapResponse> {
    const { path, step, stepName } = stepOf(req.path);
    let group: EnrollmentGroup | undefined;
    const fingerprint = req.peerCertificateChain?.[0]?.fingerprint256;
    try {
      if (!step) throw new Refusal("4.04", `no such resource: /${path}`, "not-found");
      const match = this.matchOf(req);
      if (!match.ok) throw new Refusal(match.status, match.reason, "denied");
      group = match.group;
      const method = step === "cloud" || step === "credentials" ? "POST" : "GET";
      if (req.method !== method) throw new Refusal("4.05", `/${path} accepts ${method} only`, "invalid");
      const accept = req.accept ?? CF_OCF_CBOR;
      if (accept !== CF_OCF_CBOR && accept !== CF_CBOR && accept !== CF_JSON) {
        throw new Refusal("4.06", `cannot answer in content format ${accept} (10000, 60 or 50)`, "invalid");
      }
      const reply = (code: string, body: object): CoapResponse => ({
        code,
        contentFormat: accept,
        payload: encodeBody(body, accept),
      });
      switch (step) {
        case "time":
          return reply("2.05", { time: this.now().toISOString() });
        case "owner":
          return reply("2.05", { devowneruuid: group.ownerUuid });
        case "cloud": {
          const body = parseCloudConfRequest(this.body(req));
          this.remember(fingerprint, body.di);
          return reply("2.04", this.cloudConfiguration(group, body.selectedGateway));
        }
        case "credentials": {
          const out = this.credentials(group, this.body(req), fingerprint);
          this.audit(req, group, {
            outcome: "provisioned",
            deviceId: out.deviceId,
            credentialsType: "IDENTITY_CERTIFICATE",
            detail: out.deviceId ? "identity certificate issued" : "CA certificates sent (no CSR)",
            step: "credentials",
            expiresAt: out.expiresAt,
          });
          return reply("2.04", { creds: out.creds });
        }
        case "acls": {
          const di = fingerprint ? this.devices.get(fingerprint) : undefined;
          if (!di) {
            throw new Refusal(
              "4.03",
              "ACLs are given after the device identified itself (cloud configuration or credentials first)",
              "denied",
            );
          }
          return reply("2.05", this.acls(group));
        }
      }
    } catch (err) {
      let r: Refusal;
      if (err instanceof Refusal) r = err;
      else if (err instanceof OcfFormatError)
        r = new Refusal(
          err.message.startsWith("unsupported content format") ? "4.15" : "4.00",
          err.message,
          "invalid",
        );
      else if (err instanceof PkiError) r = new Refusal("4.00", err.message, "invalid");
      else r = new Refusal("5.00", `internal error: ${(err as Error).message}`, "error");
      return this.refusal(req, group, r, stepName ?? `/${path}`, fingerprint);
    }
  }

  private refusal(
    req: DpsServerRequest,
    group: EnrollmentGroup | undefined,
    r: Refusal,
    step: string,
    fingerprint: string | undefined,
  ): CoapResponse {
    this.audit(req, group, {
      outcome: r.code.startsWith("5") ? "error" : "refused",
      reason: r.reason,
      detail: r.message,
      step,
      deviceId: fingerprint ? this.devices.get(fingerprint) : undefined,
    });
    return text(r.code, r.message);
  }

  private matchOf(req: DpsServerRequest): MatchResult {
    const chain = req.peerCertificateChain;
    if (!chain) return this.index.match(undefined, this.now());
    const cached = this.matches.get(chain);
    if (cached) return cached;
    const m = this.index.match(chain, this.now());
    this.matches.set(chain, m);
    return m;
  }

  private body(req: DpsServerRequest): unknown {
    return decodeBody(req.payload ?? Buffer.alloc(0), req.contentFormat);
  }

  private remember(fingerprint: string | undefined, di: string): void {
    if (!fingerprint) return;
    this.devices.delete(fingerprint);
    this.devices.set(fingerprint, di);
    if (this.devices.size > this.maxDevices) {
      const oldest = this.devices.keys().next().value;
      if (oldest !== undefined) this.devices.delete(oldest);
    }
  }

  private cloudConfiguration(g: EnrollmentGroup, selected?: Gateway): CloudConfRep {
    const chosen =
      selected && selected.id === g.hubId && g.gateways.includes(selected.uri) ? selected.uri : g.gateways[0];
    const at = g.tokenMode === "static" && g.accessToken ? g.accessToken : randomAlphanumeric(32);
    return {
      at,
      apn: g.authorizationProvider,
      cis: chosen,
      sid: g.hubId,
      "x.org.iotivity.servers": g.gateways.map((uri) => ({ uri, id: g.hubId })),
    };
  }

  private credentials(
    g: EnrollmentGroup,
    raw: unknown,
    fingerprint: string | undefined,
  ): { creds: Cred[]; deviceId?: string; expiresAt?: string } {
    const req = parseCredentialsRequest(raw);
    const creds: Cred[] = [];
    let deviceId: string | undefined;
    let expiresAt: string | undefined;
    const chain = g.authority.chain;
    if (req.csr && req.csr.data.length > 0) {
      if (req.csr.encoding !== ENCODING_PEM)
        throw new Refusal(
          "4.00",
          `unsupported CSR encoding ${JSON.stringify(req.csr.encoding)} (${ENCODING_PEM} only)`,
          "invalid",
        );
      const csr = parseCsr(req.csr.data);
      if (csr.namedCurve !== "P-256")
        throw new Refusal(
          "4.00",
          `the CSR key must be EC P-256, not ${csr.namedCurve ?? csr.keyType}`,
          "invalid",
        );
      const m = /^uuid:(.+)$/.exec(csr.commonName ?? "");
      if (!m || !UUID_RE.test(m[1]))
        throw new Refusal("4.00", "the CSR subject must be CN=uuid:<device id>", "invalid");
      deviceId = m[1].toLowerCase();
      if (req.di && req.di !== deviceId)
        throw new Refusal("4.00", `the CSR is for uuid:${deviceId} but di is ${req.di}`, "invalid");
      if (deviceId === g.hubId.toLowerCase())
        throw new Refusal("4.00", "the device id equals the hub id", "invalid");
      const signed = g.authority.signIdentity(csr, {
        commonName: `uuid:${deviceId}`,
        validityMs: g.validityMs,
        now: this.now(),
      });
      expiresAt = signed.notAfter.toISOString();
      const full = [signed.certificate, ...chain];
      creds.push({
        credtype: CREDTYPE_ASYMMETRIC_SIGNING_WITH_CERTIFICATE,
        subjectuuid: deviceId,
        credusage: CREDUSAGE_CERT,
        publicdata: { data: full.slice(0, -1).join(""), encoding: ENCODING_PEM },
        tag: DPS_TAG,
      });
      this.remember(fingerprint, deviceId);
    }
    creds.push(...this.trustCreds(g));
    if (g.preSharedKey) {
      creds.push({
        credtype: CREDTYPE_SYMMETRIC_PAIR_WISE,
        subjectuuid: g.ownerUuid,
        privatedata: { data: Buffer.from(g.preSharedKey.slice(0, 16), "utf8"), encoding: ENCODING_RAW },
        tag: DPS_TAG,
      });
    }
    return { creds, deviceId, expiresAt };
  }

  /** The CA credentials of a group, built once (the certificates are parsed once). */
  private trustCreds(g: EnrollmentGroup): Cred[] {
    const cached = this.trust.get(g);
    if (cached) return cached;
    const chain = g.authority.chain;
    const seen = new Set<string>();
    const out: Cred[] = [];
    for (const pem of [chain[chain.length - 1], ...g.hubCaPool]) {
      const fp = parseCertificates(pem, "CA")[0]?.fingerprint256;
      if (!fp || seen.has(fp)) continue;
      seen.add(fp);
      out.push({
        credtype: CREDTYPE_ASYMMETRIC_SIGNING_WITH_CERTIFICATE,
        subjectuuid: g.ownerUuid,
        credusage: CREDUSAGE_TRUST_CA,
        publicdata: { data: pem, encoding: ENCODING_PEM },
        tag: DPS_TAG,
      });
    }
    this.trust.set(g, out);
    return out;
  }

  private acls(g: EnrollmentGroup): Acl2Rep {
    const hubRes: AceResource[] = [...hrefs(HUB_RESOURCES), { wc: "*", if: ["*"] }];
    const aclist2: Ace[] = [
      {
        permission: ALL_PERMISSIONS,
        subject: { uuid: g.ownerUuid },
        resources: [...hrefs(OWNER_RESOURCES), ...hubRes],
        tag: DPS_TAG,
      },
      {
        permission: READ,
        subject: { conntype: "anon-clear" },
        resources: hrefs(PUBLIC_RESOURCES),
        tag: DPS_TAG,
      },
      { permission: ALL_PERMISSIONS, subject: { uuid: g.hubId }, resources: hubRes, tag: DPS_TAG },
    ];
    return { aclist2 };
  }

  private audit(
    req: DpsServerRequest,
    g: EnrollmentGroup | undefined,
    e: Omit<AuditInput, "dialect" | "transport"> & { step?: string; expiresAt?: string },
  ): void {
    if (!this.onAudit) return;
    const { step, expiresAt, ...rest } = e;
    const ev: DpsAuditEvent = auditEvent(
      { ...rest, dialect: "plgd-dps", transport: "coaps+tcp", remote: req.remote, profile: g?.id },
      this.now(),
    );
    if (step) ev.step = step;
    if (expiresAt) ev.expiresAt = expiresAt;
    try {
      this.onAudit(ev);
    } catch {
      // an audit listener must never break serving
    }
  }
}
