/**
 * The serving side of plgd DPS: one handler for every step, over any CoAP transport
 * (CoapTcpServer in production, direct calls in tests). The device is matched to an
 * enrollment group by its manufacturer chain on every request (cached per connection).
 * What every serving dialect shares comes from its ServiceContext (lib/service/dialect.ts):
 * audit, the per-remote rate limit and the failed-proof guard (both before a request is
 * read: `authorize`), the flow's decision before an identity certificate is issued, and
 * the store the devices are kept in (devices.ts).
 */
import type { X509Certificate } from "node:crypto";
import { auditEvent, type ServiceAuditEvent } from "../../service/audit";
import type { ServiceContext } from "../../service/dialect";
import type { ProvisioningRequest } from "../../model/service";
import { MemoryBackend } from "../../stores/memory";
import { Opt } from "../../transports/coap-tcp/codes";
import { uintOption } from "../../transports/coap-tcp/options";
import { StoredDpsDevices, type DpsDevices } from "./devices";
import { randomAlphanumeric } from "../../util/secrets";
import { parseCsr, PkiError } from "../../pki/csr";
import { parseCertificates } from "../../pki/pem";
import type { CoapResponse } from "../../transports/coap-tcp/types";
import type { AuditInput } from "../../service/audit";
import { ProvisioningError } from "../../model/errors";
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
  /**
   * What the serving node shares with every dialect. Without one (a library user, the
   * unit tests), the service audits to `onAudit`, keeps its devices in memory, and has no
   * rate limit, failed-proof guard or flow decision.
   */
  ctx?: ServiceContext;
  /** Used when there is no `ctx`. */
  now?: () => Date;
  onAudit?: (e: DpsAuditEvent) => void;
  /** Who identified as which device id; default: kept in the context's store. */
  devices?: DpsDevices;
  /** Device ids kept in memory for audit events (most recent first). Default 10000. */
  maxDevices?: number;
}

/** The address part of a remote "host:port" ("::1:40123" too): what limits count by. */
export function addressOf(remote: string): string {
  const i = remote.lastIndexOf(":");
  return i > 0 ? remote.slice(0, i).replace(/^\[|\]$/g, "") : remote;
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
  private readonly ctx: ServiceContext;
  private readonly maxDevices: number;
  private readonly matches = new WeakMap<object, MatchResult>();
  private readonly trust = new WeakMap<EnrollmentGroup, Cred[]>();
  private readonly devices: DpsDevices;
  /** Fingerprint -> device id, recently seen: names the device in audit events of refusals. */
  private readonly seen = new Map<string, string>();
  /** For the serving node's status. */
  readonly counts = { provisioned: 0, refused: 0 };

  constructor(opts: DpsServiceOptions) {
    this.index = new EnrollmentIndex(opts.groups);
    const now = opts.now ?? (() => new Date());
    const onAudit = opts.onAudit;
    this.ctx = opts.ctx ?? {
      dialect: "plgd-dps",
      store: new MemoryBackend(),
      audit: (e) => onAudit?.(e as DpsAuditEvent),
      now: () => now().getTime(),
      refused: () => undefined,
    };
    const ctx = this.ctx;
    this.now = opts.ctx ? () => new Date(ctx.now()) : now;
    this.devices = opts.devices ?? new StoredDpsDevices(ctx.store, ctx.now);
    this.maxDevices = opts.maxDevices ?? 10000;
  }

  /** PEM trust anchors for the TLS server (the groups' chains). */
  trustAnchors(): string[] {
    return this.index.anchors();
  }

  /**
   * Whether the request may be read at all, asked by the listener before it buffers any
   * of it: the per-remote rate limit, the failed-proof guard, then whether the device's
   * manufacturer chain opens an enrollment group (a refusal, 4.01 or 4.03, audited and
   * counted as a failed proof of the address otherwise). A throttled or locked-out remote
   * is answered 5.03 with Max-Age, CoAP's "come back later" (RFC 7252 section 5.9.3.4),
   * which plgd's client treats as transient.
   */
  async authorize(req: DpsServerRequest): Promise<CoapResponse | undefined> {
    const { path, stepName } = stepOf(req.path);
    const fingerprint = req.peerCertificateChain?.[0]?.fingerprint256;
    const step = stepName ?? `/${path}`;
    const address = addressOf(req.remote);
    const { limiter, failures } = this.ctx;
    if (limiter && !limiter.take(address))
      return this.later(
        req,
        step,
        "throttled",
        "too many requests from this address",
        limiter.retryAfterSeconds,
      );
    const subject = { remote: address };
    if (failures) {
      await failures.refresh(subject); // the budget shared with other instances (a shared store)
      let verdict = failures.check(subject);
      if (verdict.action === "go" && verdict.delayMs > 0) {
        const waited = await failures.wait(subject, verdict.delayMs);
        if (!waited) return this.later(req, step, "throttled", "too many requests waiting", 1);
        verdict = failures.check(subject);
      }
      if (verdict.action !== "go") {
        const detail =
          verdict.action === "locked" ? "locked after failed attempts" : "too many requests waiting";
        return this.later(req, step, verdict.action, detail, verdict.retryAfterMs / 1000);
      }
    }
    const match = this.matchOf(req);
    if (match.ok) return undefined;
    await failures?.failed(subject);
    return this.refusal(req, undefined, new Refusal(match.status, match.reason, "denied"), step, fingerprint);
  }

  /** 5.03 with Max-Age: throttled or locked out. */
  private later(
    req: DpsServerRequest,
    step: string,
    outcome: "throttled" | "locked",
    detail: string,
    retryAfterS: number,
  ): CoapResponse {
    const seconds = Math.max(1, Math.ceil(retryAfterS));
    this.counts.refused++;
    this.ctx.refused(outcome);
    this.audit(req, undefined, { outcome, reason: outcome, detail, step, retryAfterS: seconds });
    return { ...text("5.03", detail), options: [uintOption(Opt.MAX_AGE, seconds)] };
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
          await this.remember(fingerprint, body.di, group);
          return reply("2.04", this.cloudConfiguration(group, body.selectedGateway));
        }
        case "credentials": {
          const out = await this.credentials(group, this.body(req), req, fingerprint);
          this.audit(req, group, {
            outcome: "provisioned",
            deviceId: out.deviceId,
            credentialsType: "IDENTITY_CERTIFICATE",
            detail: out.deviceId ? "identity certificate issued" : "CA certificates sent (no CSR)",
            step: "credentials",
            expiresAt: out.expiresAt,
          });
          this.counts.provisioned++;
          return reply("2.04", { creds: out.creds });
        }
        case "acls": {
          const di = fingerprint ? await this.devices.deviceOf(fingerprint) : undefined;
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
      else if (err instanceof ProvisioningError && err.code === "CONFLICT")
        r = new Refusal("4.09", err.message, "conflict");
      else if (err instanceof ProvisioningError && err.code === "INVALID")
        r = new Refusal("4.00", err.message, "invalid");
      else if (err instanceof ProvisioningError && err.code === "STORE")
        r = new Refusal("5.03", "the device registry cannot be read or written now", "error");
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
    this.counts.refused++;
    this.audit(req, group, {
      outcome: r.code.startsWith("5") ? "error" : "refused",
      reason: r.reason,
      detail: r.message,
      step,
      deviceId: fingerprint ? this.seen.get(fingerprint) : undefined,
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

  /** The device identified as `di` with its manufacturer certificate; refused when another holds it. */
  private async remember(fingerprint: string | undefined, di: string, g: EnrollmentGroup): Promise<void> {
    if (!fingerprint) return;
    const outcome = await this.devices.identify(fingerprint, di, g.id);
    if (outcome === "conflict")
      throw new Refusal("4.09", `device id ${di} is held by another manufacturer certificate`, "conflict");
    this.seen.delete(fingerprint);
    this.seen.set(fingerprint, di.toLowerCase());
    if (this.seen.size > this.maxDevices) {
      const oldest = this.seen.keys().next().value;
      if (oldest !== undefined) this.seen.delete(oldest);
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

  private async credentials(
    g: EnrollmentGroup,
    raw: unknown,
    from: DpsServerRequest,
    fingerprint: string | undefined,
  ): Promise<{ creds: Cred[]; deviceId?: string; expiresAt?: string }> {
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
      await this.remember(fingerprint, deviceId, g);
      await this.decide(g, deviceId, from);
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

  /** The flow's decision, when the node asks the flow: no answer in time is a refusal. */
  private async decide(g: EnrollmentGroup, deviceId: string, req: DpsServerRequest): Promise<void> {
    if (!this.ctx.decide) return;
    const request: ProvisioningRequest = {
      dialect: "plgd-dps",
      transport: "coaps+tcp",
      deviceId,
      proof: "manufacturer-certificate",
      profile: g.id,
      remote: req.remote,
    };
    const answer = await this.ctx.decide(request);
    if (!answer.approve)
      throw new Refusal(
        "4.03",
        answer.timedOut
          ? "no decision in time"
          : `refused by the flow${answer.reason ? `: ${answer.reason}` : ""}`,
        answer.timedOut ? "decision-timeout" : "denied",
      );
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
    const { step, expiresAt, ...rest } = e;
    const ev: DpsAuditEvent = auditEvent(
      { ...rest, dialect: "plgd-dps", transport: "coaps+tcp", remote: req.remote, profile: g?.id },
      this.now(),
    );
    if (step) ev.step = step;
    if (expiresAt) ev.expiresAt = expiresAt;
    try {
      this.ctx.audit(ev);
    } catch {
      // an audit listener must never break serving
    }
  }
}
