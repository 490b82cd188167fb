/**
 * The ThingsBoard provisioning service core: turns a request body into ThingsBoard's
 * answer (byte-compatible: fields, statuses, error texts) and an audit event, as
 * ThingsBoard's own service answers them (thingsboard/thingsboard,
 * application/src/main/java/org/thingsboard/server/service/device/DeviceProvisionServiceImpl.java). Transports (MQTT, HTTP, CoAP) only carry bytes to `handle`.
 */

import { createHmac } from "node:crypto";
import type { Credentials } from "../../model/result";
import type { ProvisioningRequest, RefusalReason } from "../../model/service";
import { auditEvent, lockAuditEvent, type ServiceAuditEvent } from "../../service/audit";
import { FailureLimiter, type AttemptSubject } from "../../service/failure-limit";
import type { ServiceContext } from "../../service/dialect";
import { DeviceRegistry, type RegisteredDevice } from "../../service/registry";
import { ProvisioningError } from "../../model/errors";
import type { JsonValue, StoreBackend } from "../../stores/backend";
import { finalError } from "../../model/errors";
import { matchesDigest, randomAlphanumeric, secretDigest, secretsEqual } from "../../util/secrets";
import {
  credentialIds,
  credentialsFromFlow,
  credentialsFromRequest,
  successResponse,
} from "./server-credentials";
import {
  FAILURE_RESPONSE,
  NOT_FOUND_RESPONSE,
  parseRequest,
  type TbCredentialsType,
  type TbProvisionRequest,
  type TbProvisionResponse,
} from "./wire";

/** "allow to create new devices" / "check for pre-provisioned devices". */
export type TbStrategy = "allow-create" | "check-pre-provisioned";

export interface TbProfile {
  /** Unique among the service's profiles; names the registry namespace. Not secret. */
  name: string;
  provisionDeviceKey: string;
  provisionDeviceSecret: string;
  strategy: TbStrategy;
  /** Type issued when the device does not ask for one. */
  credentialsType: TbCredentialsType;
  /** Opt-in: an existing (already provisioned) device gets new credentials instead of FAILURE. */
  allowReprovision: boolean;
}

/**
 * What the ThingsBoard service core needs besides its ServiceContext (the registry's store,
 * the flow's decision, rate limit, failure guard, audit and clock come from there).
 */
export interface TbServiceSettings {
  profiles: TbProfile[];
  /**
   * Opt-in (0, the default, keeps ThingsBoard's behaviour): within this many ms of a
   * device's provisioning, its identical request (same key, secret, name and requested
   * credentials) gets the same credentials again instead of FAILURE.
   */
  repeatWindowMs?: number;
}

export interface RequestContext {
  /** "mqtt", "http", "coap". */
  transport: string;
  /** Peer address, for the rate limit and the audit. */
  remote?: string;
}

/** What a device is told to wait, in seconds, while the registry is unavailable. */
export const UNAVAILABLE_RETRY_S = 2;

export interface TbOutcome {
  response: TbProvisionResponse;
  audit: ServiceAuditEvent;
  /** Set when the request was refused for a while ("locked", "throttled"): when to retry. */
  retryAfterMs?: number;
  /**
   * The registry could not be read or written (its database restarting, a full disk): no
   * verdict on the device. The transports answer so that a device tries again: HTTP 503
   * with Retry-After, CoAP 5.03 with Max-Age, MQTT the session closed without an answer.
   */
  unavailable?: true;
}

/** Registry for ThingsBoard profiles: keys `thingsboard/<profile>/<device name>`. */
export function tbRegistry(backend: StoreBackend): DeviceRegistry {
  return new DeviceRegistry(backend, "thingsboard");
}

/** Checks profiles once, at start: unique names, valid strategy and type. */
export function checkProfiles(profiles: TbProfile[]): string | undefined {
  const names = new Set<string>();
  for (const p of profiles) {
    if (!p.name) return "every profile needs a name";
    if (names.has(p.name)) return `two profiles are named "${p.name}"`;
    names.add(p.name);
    if (p.strategy !== "allow-create" && p.strategy !== "check-pre-provisioned")
      return `profile "${p.name}" has an unknown strategy`;
    if (!["ACCESS_TOKEN", "MQTT_BASIC", "X509_CERTIFICATE"].includes(p.credentialsType))
      return `profile "${p.name}" has an unknown credentials type`;
  }
  return undefined;
}

type AuditBase = {
  dialect: "thingsboard";
  transport: string;
  remote?: string;
  deviceName?: string;
  profile?: string;
  delayedMs?: number;
};

/**
 * What makes a request "identical": the profile's key and secret, the device name and
 * every credential field the device sent. An HMAC keyed by the provision secret, so the
 * stored digest says nothing without it, and rotating the secret ends every repeat.
 */
function requestDigest(profile: TbProfile, deviceName: string, req: TbProvisionRequest): string {
  const fields = [
    profile.provisionDeviceKey,
    deviceName,
    req.credentialsType ?? null,
    req.token ?? null,
    req.clientId ?? null,
    req.username ?? null,
    req.password ?? null,
    req.hash ?? null,
    req.gateway ?? null,
  ];
  return createHmac("sha256", profile.provisionDeviceSecret).update(JSON.stringify(fields)).digest("hex");
}

type Refusal = {
  status: "NOT_FOUND" | "FAILURE";
  reason: RefusalReason | "error";
  detail: string;
  retryAfterMs?: number;
};

export class TbProvisioningService {
  private readonly profiles: TbProfile[];
  /** Each profile's key and secret hashed once (secretsEqual hashes both sides at every request). */
  private readonly digests = new Map<TbProfile, { key: Buffer; secret: Buffer }>();
  readonly registry: DeviceRegistry;
  readonly counts = { provisioned: 0, refused: 0 };
  /** Refusals (within `counts.refused`) because of a lock after failed attempts. */
  lockedRefusals = 0;

  private readonly repeatWindowMs: number;
  private readonly now: () => number;

  constructor(
    settings: TbServiceSettings,
    private readonly ctx: ServiceContext,
  ) {
    const problem = checkProfiles(settings.profiles);
    if (problem) throw finalError("CONFIG", problem);
    this.profiles = [...settings.profiles];
    for (const p of this.profiles)
      this.digests.set(p, {
        key: secretDigest(p.provisionDeviceKey),
        secret: secretDigest(p.provisionDeviceSecret),
      });
    this.registry = tbRegistry(ctx.store);
    this.repeatWindowMs = Math.max(0, settings.repeatWindowMs ?? 0);
    this.now = ctx.now;
  }

  /** Addresses and profiles locked right now after too many failures. */
  lockedNow(): number {
    return this.ctx.failures?.lockedCount() ?? 0;
  }

  /** The audit event for a lock that just began (FailureLimiter's onLock). */
  static lockEvent(lock: Parameters<typeof lockAuditEvent>[1]): ServiceAuditEvent {
    return lockAuditEvent("thingsboard", lock, "profile");
  }

  profileNames(): string[] {
    return this.profiles.map((p) => p.name);
  }

  /** Answers one request body. Never rejects: store errors become FAILURE with outcome "error". */
  async handle(body: Buffer | string, ctx: RequestContext): Promise<TbOutcome> {
    const base = { dialect: "thingsboard" as const, transport: ctx.transport, remote: ctx.remote };
    if (this.ctx.limiter && !this.ctx.limiter.take(ctx.remote)) {
      return this.refuse(base, {
        status: "FAILURE",
        reason: "throttled",
        detail: "too many requests from this remote",
      });
    }
    const parsed = parseRequest(body);
    if (!parsed.ok) return this.refuse(base, { status: "FAILURE", reason: "invalid", detail: parsed.error });
    try {
      return await this.handleParsed(parsed.request, ctx);
    } catch (err) {
      const detail = err instanceof ProvisioningError ? `registry: ${err.message}` : "internal error";
      const out = this.refuse(base, { status: "FAILURE", reason: "error", detail });
      // ThingsBoard's answer has no "try again": FAILURE is final to its devices, so a store
      // outage must not be answered with it, or every device asking meanwhile gives up.
      if (err instanceof ProvisioningError && err.code === "STORE") out.unavailable = true;
      return out;
    }
  }

  /** The profile a provisionDeviceKey names (the key is not the secret: ThingsBoard's "account"). */
  private profileByKey(key: string): TbProfile | undefined {
    if (key.length === 0) return undefined;
    // Compare against every profile so the time taken does not tell which keys exist.
    let found: TbProfile | undefined;
    for (const p of this.profiles) {
      const d = this.digests.get(p) as { key: Buffer };
      if (matchesDigest(d.key, key) && p.provisionDeviceKey.length > 0 && !found) found = p;
    }
    return found;
  }

  private secretMatches(p: TbProfile, secret: string): boolean {
    return (
      secret.length > 0 &&
      p.provisionDeviceSecret.length > 0 &&
      matchesDigest((this.digests.get(p) as { secret: Buffer }).secret, secret)
    );
  }

  /**
   * The brute-force gate, after a delay was waited out: others may have failed meanwhile,
   * so it decides again. The caller compares the secret with no await after the last
   * check, so requests in parallel cannot overshoot the lock.
   */
  private async waitGate(
    f: FailureLimiter,
    subject: AttemptSubject,
    delayMs: number,
  ): Promise<Refusal | undefined> {
    if (!(await f.wait(subject, delayMs)))
      return this.limitRefusal({ action: "throttled", retryAfterMs: delayMs });
    const again = f.check(subject);
    return again.action === "go" ? undefined : this.limitRefusal(again);
  }

  private limitRefusal(v: {
    action: "locked" | "throttled";
    retryAfterMs: number;
    subject?: string;
  }): Refusal {
    return v.action === "locked"
      ? {
          status: "FAILURE",
          reason: "locked",
          detail:
            v.subject === "account"
              ? "too many failed attempts for this provision key from this address"
              : "too many failed attempts from this address",
          retryAfterMs: v.retryAfterMs,
        }
      : {
          status: "FAILURE",
          reason: "throttled",
          detail: "too many requests waiting after failed attempts",
          retryAfterMs: v.retryAfterMs,
        };
  }

  private async handleParsed(req: TbProvisionRequest, ctx: RequestContext): Promise<TbOutcome> {
    const base = { dialect: "thingsboard" as const, transport: ctx.transport, remote: ctx.remote };
    const named = req.deviceName === undefined ? undefined : req.deviceName.trim();
    const audit = { ...base, deviceName: named?.slice(0, 256) };
    const byKey = this.profileByKey(req.provisionDeviceKey);
    // A wrong secret for a known key counts against that key's profile; an unknown key
    // only against the address (so made-up keys cannot fill the map of accounts).
    const subject: AttemptSubject = { remote: ctx.remote, account: byKey?.name };
    if (ctx.transport === "coap") subject.scope = "udp";
    const f = this.ctx.failures;
    await f?.refresh(subject); // the budget shared with other instances (a shared store)
    const verdict = f?.check(subject) ?? { action: "go", delayMs: 0 };
    let refusal = verdict.action === "go" ? undefined : this.limitRefusal(verdict);
    const delayedMs = verdict.action === "go" && verdict.delayMs > 0 ? verdict.delayMs : undefined;
    if (f && !refusal && delayedMs) refusal = await this.waitGate(f, subject, delayedMs);
    if (refusal) return this.refuse(byKey ? { ...audit, profile: byKey.name } : audit, refusal);
    const profile = byKey && this.secretMatches(byKey, req.provisionDeviceSecret) ? byKey : undefined;
    if (!profile) {
      await this.ctx.failures?.failed(subject);
      return this.refuse(
        { ...audit, delayedMs },
        {
          status: "NOT_FOUND",
          reason: "not-found",
          detail: "unknown key or wrong secret",
        },
      );
    }
    const withProfile = { ...audit, profile: profile.name, delayedMs };
    if (named === "")
      return this.refuse(withProfile, { status: "FAILURE", reason: "invalid", detail: "blank device name" });
    const deviceName = named ?? randomAlphanumeric(20);
    const inProfile = { ...withProfile, deviceName };
    try {
      this.registry.key(profile.name, deviceName);
    } catch (err) {
      return this.refuse(inProfile, { status: "FAILURE", reason: "invalid", detail: (err as Error).message });
    }

    const requested = credentialsFromRequest(req, profile.credentialsType);
    if (!requested.ok)
      return this.refuse(inProfile, { status: "FAILURE", reason: "invalid", detail: requested.detail });

    // The identical request again (the answer was lost): same credentials, when enabled.
    const digest = this.repeatWindowMs > 0 ? requestDigest(profile, deviceName, req) : undefined;
    // A cheap look first, so the flow is not asked about a request that must fail anyway.
    const before = await this.registry.get(profile.name, deviceName);
    const early = this.stateRefusal(profile, before, digest);
    if (early && "repeat" in early) return this.repeated(inProfile, early.repeat);
    if (early) return this.refuse(inProfile, early);

    let credentials = requested.credentials;
    let attributes: Record<string, JsonValue> | undefined;
    if (this.ctx.decide) {
      const answer = await this.ctx.decide(
        this.describe(req, ctx, profile, deviceName, requested.credentials),
      );
      if (!answer.approve) {
        const detail = answer.timedOut ? "no decision in time" : (answer.reason ?? "refused by the flow");
        return this.refuse(inProfile, { status: "FAILURE", reason: "denied", detail: detail.slice(0, 200) });
      }
      if (answer.credentials) {
        const fromFlow = credentialsFromFlow(answer.credentials, requested.credentials);
        if (!fromFlow.ok) {
          return this.refuse(inProfile, {
            status: "FAILURE",
            reason: "error",
            detail: `flow credentials: ${fromFlow.detail}`,
          });
        }
        credentials = fromFlow.credentials;
      }
      if (answer.attributes)
        attributes = JSON.parse(JSON.stringify(answer.attributes)) as Record<string, JsonValue>;
    }

    // A pre-provisioned device's own credentials, unless the flow chose others or this
    // is a re-provisioning (which always issues fresh ones).
    const chosen = (cur: RegisteredDevice | undefined): Credentials =>
      cur &&
      cur.state === "pre-provisioned" &&
      cur.credentials &&
      !this.flowChoseCredentials(credentials, requested)
        ? cur.credentials
        : credentials;
    const candidate = chosen(before);
    const ids = credentialIds(candidate);

    const now = new Date(this.now()).toISOString();
    type Done =
      | { refusal: Refusal }
      | { repeat: Credentials }
      | { issued: Credentials; reprovisioned: boolean; previous?: Credentials };
    const owner = { profile: profile.name, name: deviceName };
    // ThingsBoard refuses credentials another device holds; the claim of their ids and
    // the device's write are one step for every other request claiming the same ids.
    const claimed = await this.registry.withCredentials<Done>(
      ids,
      owner,
      (dev, id) => dev.credentials !== undefined && credentialIds(dev.credentials).includes(id),
      (cur) => {
        const refusal = this.stateRefusal(profile, cur, digest);
        if (refusal) return { result: "repeat" in refusal ? refusal : { refusal } };
        const issued = chosen(cur);
        if (credentialIds(issued).join("\n") !== ids.join("\n")) {
          // The device changed between the look and the write (added or revoked meanwhile).
          return {
            result: {
              refusal: { status: "FAILURE", reason: "error", detail: "the device changed meanwhile" },
            },
          };
        }
        const reprovisioned = cur?.state === "provisioned";
        const next: RegisteredDevice = {
          name: deviceName,
          profile: profile.name,
          state: "provisioned",
          credentials: issued,
          createdAt: cur?.createdAt ?? now,
          provisionedAt: now,
          provisionings: (cur?.provisionings ?? 0) + 1,
        };
        if (digest) next.requestDigest = digest;
        const attrs = { ...(cur?.attributes ?? {}), ...(attributes ?? {}) };
        if (req.gateway !== undefined) attrs.gateway = req.gateway;
        if (Object.keys(attrs).length > 0) next.attributes = attrs;
        return { next, result: { issued, reprovisioned, previous: cur?.credentials } };
      },
    );
    if (claimed.taken)
      return this.refuse(inProfile, {
        status: "FAILURE",
        reason: "invalid",
        detail: "these credentials belong to another device",
      });
    const outcome = claimed.result;
    if ("refusal" in outcome) return this.refuse(inProfile, outcome.refusal);
    if ("repeat" in outcome) return this.repeated(inProfile, outcome.repeat);
    if (outcome.previous) {
      const gone = credentialIds(outcome.previous).filter((id) => !ids.includes(id));
      if (gone.length > 0) await this.registry.releaseCredentials(gone, owner).catch(() => undefined);
    }

    this.counts.provisioned++;
    const event = auditEvent({
      ...inProfile,
      outcome: "provisioned",
      credentialsType: outcome.issued.type,
      reprovisioned: outcome.reprovisioned || undefined,
    });
    this.emit(event);
    return { response: successResponse(outcome.issued), audit: event };
  }

  /** The answer to an identical repeat within the window: what the device was given before. */
  private repeated(inProfile: AuditBase, issued: Credentials): TbOutcome {
    this.counts.provisioned++;
    const event = auditEvent({
      ...inProfile,
      outcome: "provisioned",
      credentialsType: issued.type,
      repeated: true,
      detail: "identical request repeated within the window: the same credentials again",
    });
    this.emit(event);
    return { response: successResponse(issued), audit: event };
  }

  private flowChoseCredentials(
    final: Credentials,
    requested: { ok: true; credentials: Credentials },
  ): boolean {
    return final !== requested.credentials;
  }

  /**
   * ThingsBoard's strategy rules, plus the opt-in re-provision policy and repeat window:
   * an existing device's identical request (same digest) within the window gets its
   * credentials again instead of "already provisioned".
   */
  private stateRefusal(
    profile: TbProfile,
    cur: RegisteredDevice | undefined,
    digest?: string,
  ): Refusal | { repeat: Credentials } | undefined {
    if (profile.strategy === "check-pre-provisioned" && !cur) {
      return { status: "FAILURE", reason: "not-found", detail: "device is not pre-provisioned" };
    }
    if (!cur) return undefined;
    const exists = profile.strategy === "allow-create" || cur.state === "provisioned";
    if (exists && !profile.allowReprovision) {
      if (digest && this.withinWindow(cur, digest) && cur.credentials) return { repeat: cur.credentials };
      return {
        status: "FAILURE",
        reason: "already-provisioned",
        detail: "The device is present and could not be provisioned once more!",
      };
    }
    return undefined;
  }

  private withinWindow(cur: RegisteredDevice, digest: string): boolean {
    if (cur.state !== "provisioned" || !cur.requestDigest || !cur.provisionedAt) return false;
    if (!secretsEqual(cur.requestDigest, digest)) return false;
    const age = this.now() - Date.parse(cur.provisionedAt);
    return age >= 0 && age <= this.repeatWindowMs;
  }

  /** What the flow sees: the request without the provision secret or any device secret. */
  private describe(
    req: TbProvisionRequest,
    ctx: RequestContext,
    profile: TbProfile,
    deviceName: string,
    requested: Credentials,
  ): ProvisioningRequest {
    const wanted: Partial<Credentials> = { type: requested.type };
    if (req.clientId) wanted.clientId = req.clientId;
    if (req.username) wanted.username = req.username;
    if (req.hash) wanted.certificate = req.hash;
    const out: ProvisioningRequest = {
      dialect: "thingsboard",
      transport: ctx.transport,
      deviceName,
      proof: "provision-key",
      profile: profile.name,
      requestedCredentials: wanted,
    };
    if (req.gateway !== undefined) out.attributes = { gateway: req.gateway };
    if (ctx.remote !== undefined) out.remote = ctx.remote;
    return out;
  }

  private refuse(base: AuditBase, r: Refusal): TbOutcome {
    this.counts.refused++;
    // Refusals of the failure limit carry a retry time; the per-remote rate limit's do not.
    const limited = (r.reason === "locked" || r.reason === "throttled") && r.retryAfterMs !== undefined;
    if (r.reason === "locked") this.lockedRefusals++;
    const event = auditEvent({
      ...base,
      outcome: r.reason === "error" ? "error" : limited ? (r.reason as "locked" | "throttled") : "refused",
      reason: r.reason,
      detail: r.detail,
      retryAfterS: limited ? Math.max(1, Math.ceil((r.retryAfterMs ?? 0) / 1000)) : undefined,
    });
    this.emit(event);
    const out: TbOutcome = {
      response: r.status === "NOT_FOUND" ? NOT_FOUND_RESPONSE : FAILURE_RESPONSE,
      audit: event,
    };
    if (r.retryAfterMs !== undefined) out.retryAfterMs = r.retryAfterMs;
    return out;
  }

  private emit(e: ServiceAuditEvent): void {
    try {
      this.ctx.audit(e);
    } catch {
      // An audit consumer's bug must not change the device's answer.
    }
  }
}
