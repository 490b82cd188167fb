/**
 * The serving side of Mainflux bootstrap: upstream's bootstrap service (mainflux/mainflux,
 * bootstrap/) over configurations in a ConfigRegistry. This file holds the service: its
 * settings, counts and audit, and which endpoint answers a request. The endpoints are
 * routes.ts (the route table), bootstrap.ts (the bootstrap answer), management.ts (the
 * management endpoints), http.ts (the adapter for node:http and Express); serving.ts
 * offers the service as a ServingDialect over a ServiceContext.
 */
import { auditEvent, lockAuditEvent, type ServiceAuditEvent } from "../../service/audit";
import type { LockEvent } from "../../service/failure-limit";
import { json, type Answer, type ServiceRequest } from "./answers";
import { answerBootstrap, type AuditFields, type BootstrapDeps, type BootstrapSettings } from "./bootstrap";
import { ReplayGuard } from "./crypto";
import type { HttpServed } from "./http";
import { answerManagement, checkToken } from "./management";
import type { ConfigRegistry } from "./registry";
import { route } from "./routes";
import { errorJson } from "./wire";

export type { Answer, ServiceRequest } from "./answers";
export type { GcmServerKey } from "./bootstrap";
export { bootstrapHandler, type BootstrapHandler, type HandlerOptions, type HttpRefusal } from "./http";
export { viewOf } from "./management";
export { route, type Route } from "./routes";

export interface BootstrapServiceOptions extends BootstrapSettings {
  /** Bearer token of the management endpoints; they are not served without one. */
  managementToken?: string;
  onAudit?: (event: ServiceAuditEvent) => void;
  now?: () => number;
  replay?: ReplayGuard;
}

export class MainfluxBootstrapService implements HttpServed, BootstrapDeps {
  readonly counts = { bootstrapped: 0, refused: 0 };
  readonly replay: ReplayGuard;
  private readonly clock: () => number;

  constructor(private readonly opts: BootstrapServiceOptions) {
    // Over a shared store, request ids are single use across the instances over it.
    this.replay = opts.replay ?? new ReplayGuard(undefined, opts.registry.backend);
    this.clock = opts.now ?? Date.now;
  }

  get settings(): BootstrapSettings {
    return this.opts;
  }

  get registry(): ConfigRegistry {
    return this.opts.registry;
  }

  get managementEnabled(): boolean {
    return Boolean(this.opts.managementToken);
  }

  now(): number {
    return this.clock();
  }

  /** Addresses and external ids locked right now after too many failures. */
  lockedNow(): number {
    return this.opts.failures?.lockedCount() ?? 0;
  }

  /** The audit event for a lock that just began (FailureLimiter's onLock). */
  static lockEvent(lock: LockEvent): ServiceAuditEvent {
    return lockAuditEvent("mainflux", lock, "deviceName");
  }

  audit(outcome: ServiceAuditEvent["outcome"], fields: AuditFields, transport = "http"): void {
    if (outcome === "provisioned") this.counts.bootstrapped++;
    else this.counts.refused++;
    this.opts.onAudit?.(
      auditEvent({ dialect: "mainflux", transport, outcome, ...fields }, new Date(this.now())),
    );
  }

  /** Answers a request, or undefined when the path is not one of this service's. */
  async handle(req: ServiceRequest): Promise<Answer | undefined> {
    const r = route(req.path);
    if (r.kind === "bootstrap") {
      if (req.method !== "GET" && req.method !== "HEAD") return json(405, errorJson("method not allowed"));
      return this.bootstrap(r.secure, r.id, req.authorization, req.remote);
    }
    if (r.kind === "none" || !this.managementEnabled) return undefined;
    return answerManagement(this.opts.registry, this.opts.managementToken ?? "", r, req);
  }

  /** GET /things/bootstrap[/secure]/{external_id}. */
  bootstrap(
    secure: boolean,
    externalId: string | undefined,
    authorization: string | undefined,
    remote?: string,
  ): Promise<Answer> {
    return answerBootstrap(this, secure, externalId, authorization, remote);
  }

  /** The 401 answer when the management token is missing or wrong, else undefined. */
  checkToken(authorization: string | undefined): Answer | undefined {
    return checkToken(this.opts.managementToken ?? "", authorization);
  }
}
