/**
 * The Azure DPS-compatible provisioning service core, with no transport: a device proves
 * itself against an enrollment (./server-enrollments.ts), registers, and polls its
 * operation until the registration is stored (./server-records.ts); the assignment
 * follows the enrollment's allocation and re-provisioning policies
 * (./server-allocate.ts). MQTT and HTTPS (./server-mqtt.ts, ./server-https.ts) only carry
 * requests and answers to it.
 *
 * What Azure answers ("Device Registration REST API", "Troubleshooting DPS", Microsoft's
 * SDKs, Azure/azure-iot-sdk-node provisioning/device/src/polling_state_machine.ts):
 * register gets 202 with `{operationId, status: "assigning"}` and a retry-after; each poll
 * 202 again while the operation runs, then 200 with `{operationId, status,
 * registrationState}`; errors are `{errorCode, trackingId, message, timestampUtc}` with
 * 401 for every failed proof or unknown registration (Azure does not tell which), 429
 * with a retry-after past a quota. A disabled enrollment is answered like Azure's
 * registration records show it: the proof is checked, then the operation ends with
 * status "disabled" (the SDKs raise it as an error).
 */
import { randomUUID, type X509Certificate } from "node:crypto";
import { finalError, ProvisioningError } from "../../model/errors";
import type { ProvisioningRequest } from "../../model/service";
import { auditEvent, type ServiceAuditEvent } from "../../service/audit";
import type { ServiceContext } from "../../service/dialect";
import type { AttemptSubject } from "../../service/failure-limit";
import type { Records } from "../../service/records";
import { hashedHub, hubsOf, reprovision, webhookBody, type Placement } from "./server-allocate";
import { checkAzureServiceSettings, Enrollments, type Attested } from "./server-enrollments";
import { Operations, type Operation } from "./server-operations";
import { PollLimit, RegistrationQuota } from "./server-quotas";
import { azureRegistrations, stateOf, type AzureRegistrationRecord } from "./server-records";
import type { AzureAllocation, AzureServiceSettings } from "./settings";
import {
  DEFAULT_RETRY_AFTER_S,
  DPS_ERRORS,
  errorBody,
  isRegistrationId,
  type OperationStatusBody,
  type RegistrationState,
} from "./wire";

/** Largest registration request read: an id and a custom payload. */
export const MAX_REQUEST_BYTES = 64 * 1024;
/**
 * A registration the allocation refused (the flow refused, named a hub not linked, or gave
 * no answer): Azure ends such an operation 200 with status "failed" and errorCode 400209,
 * "Custom allocation failed ..." in registrationState (as Azure's answers show in the Node
 * SDK's debug logs). The SDKs read only the status.
 */
export const ALLOCATION_FAILED = { errorCode: 400209, message: "Custom allocation failed." } as const;

/** Who asks, as a transport read it: the registration id of the path or the MQTT user name. */
export interface DpsCaller {
  transport: "mqtt" | "https";
  remote?: string;
  idScope: string;
  registrationId: string;
  /** The SAS token (MQTT password, HTTPS Authorization). */
  token?: unknown;
  /** The client certificate chain the TLS peer sent, leaf first. */
  chain?: readonly X509Certificate[];
}

/** One answer: the HTTP status (the MQTT topic's status), the JSON body, the retry-after. */
export interface DpsAnswer {
  status: number;
  body: unknown;
  retryAfterS?: number;
}

export type AttestResult = { ok: true; who: Attested } | { ok: false; answer: DpsAnswer };

type Outcome = ServiceAuditEvent["outcome"];

/** What watchers hear: a poll or lookup answered 429, a registration stored, an operation's end (any). */
export type DpsEvent = "poll-throttled" | "assigned" | "ended";

export class AzureDpsService {
  readonly records: Records<AzureRegistrationRecord>;
  readonly enrollments: Enrollments;
  readonly counts = { provisioned: 0, refused: 0 };
  readonly retryAfterS: number;
  private readonly operations: Operations;
  private readonly polls: PollLimit;
  private readonly quota: RegistrationQuota;
  private readonly inFlight = new Set<Promise<unknown>>();
  private closed = false;
  private readonly watchers = new Set<(event: DpsEvent, registrationId: string) => void>();

  constructor(
    readonly settings: AzureServiceSettings,
    private readonly ctx: ServiceContext,
  ) {
    const problem = checkAzureServiceSettings(settings);
    if (problem) throw finalError("CONFIG", problem);
    if (!ctx.decide && this.usesCustom())
      throw finalError("CONFIG", "custom allocation needs the flow's decision (turn decisions on)");
    this.enrollments = new Enrollments(settings.idScope, settings.enrollments);
    this.records = azureRegistrations(ctx.store);
    this.operations = new Operations(ctx.store, ctx.now, ctx.decideTimeoutMs ?? 0);
    this.retryAfterS = settings.retryAfterS ?? DEFAULT_RETRY_AFTER_S;
    this.polls = new PollLimit(settings.pollLimit?.count ?? 5, settings.pollLimit?.windowMs ?? 10000);
    this.quota = new RegistrationQuota(settings.registrationsPerMinute ?? 1000, ctx.now());
  }

  private usesCustom(): boolean {
    return (
      this.settings.allocation === "custom" ||
      this.settings.enrollments.some((e) => e.allocation === "custom")
    );
  }

  /** Whether the flow decides (custom allocation needs it). */
  get decides(): boolean {
    return this.ctx.decide !== undefined;
  }

  /**
   * Where a registration is stored: Azure's registration ids are case-insensitive, so one
   * device is one record whatever case it writes its id in.
   */
  addressOf(registrationId: string): { group: string; id: string } {
    return { group: this.idScope, id: registrationId.toLowerCase() };
  }

  get idScope(): string {
    return this.settings.idScope;
  }

  /** Told of polls answered 429 and registrations stored (the node's status, tests). */
  watch(fn: (event: DpsEvent, registrationId: string) => void): () => void {
    this.watchers.add(fn);
    return () => this.watchers.delete(fn);
  }

  private tell(event: DpsEvent, registrationId: string): void {
    for (const w of [...this.watchers]) {
      try {
        w(event, registrationId);
      } catch {
        // A watcher's bug must not change the device's answer.
      }
    }
  }

  /** The per-device poll limit: undefined, or the 429 to answer. */
  private pollThrottled(registrationId: string): DpsAnswer | undefined {
    const wait = this.polls.take(registrationId.toLowerCase(), this.ctx.now());
    if (wait === undefined) return undefined;
    this.tell("poll-throttled", registrationId);
    return this.error(DPS_ERRORS.throttled, Math.max(1, Math.ceil(wait / 1000)));
  }

  lockedNow(): number {
    return this.ctx.failures?.lockedCount() ?? 0;
  }

  async open(): Promise<void> {
    await this.records.open();
  }

  /** Refuses new work; resolves once every registration under way is stored or failed. */
  async drain(): Promise<void> {
    this.closed = true;
    while (this.inFlight.size > 0) await Promise.allSettled([...this.inFlight]);
  }

  private track<T>(p: Promise<T>): Promise<T> {
    this.inFlight.add(p);
    const done = () => this.inFlight.delete(p);
    p.then(done, done);
    return p;
  }

  private error(
    err: { status: number; errorCode: number; message: string },
    retryAfterS?: number,
  ): DpsAnswer {
    const body = errorBody(err, randomUUID(), new Date(this.ctx.now()));
    return retryAfterS === undefined
      ? { status: err.status, body }
      : { status: err.status, body, retryAfterS };
  }

  /**
   * Checks who a caller is: the id scope, the registration id, the failure guard, then
   * the certificate (when it sent one and an X.509 enrollment takes it) or the SAS token.
   * Every refusal is audited here. Never rejects.
   */
  attest(c: DpsCaller): Promise<AttestResult> {
    return this.track(this.attestInner(c)).catch((err: unknown) => {
      this.refuse(c, "error", "error", internalDetail(err));
      return { ok: false as const, answer: this.error(DPS_ERRORS.internal) };
    });
  }

  private async attestInner(c: DpsCaller): Promise<AttestResult> {
    if (this.closed) return { ok: false, answer: this.error(DPS_ERRORS.internal, 1) };
    if (!isRegistrationId(c.registrationId)) {
      this.refuse(c, "refused", "invalid", "the registration id is not one Azure allows");
      return { ok: false, answer: this.error(DPS_ERRORS.invalidRegistrationId) };
    }
    // Case-insensitive, as registration ids are: another spelling is the same account.
    const subject: AttemptSubject = { remote: c.remote, account: c.registrationId.toLowerCase() };
    const f = this.ctx.failures;
    let delayedMs: number | undefined;
    if (f) {
      await f.refresh(subject); // the budget shared with other instances (a shared store)
      let v = f.check(subject);
      if (v.action === "go" && v.delayMs > 0) {
        const waited = await f.wait(subject, v.delayMs);
        delayedMs = v.delayMs;
        v = waited ? f.check(subject) : { action: "throttled", retryAfterMs: v.delayMs };
      }
      if (v.action !== "go") {
        const retryAfterS = Math.max(1, Math.ceil(v.retryAfterMs / 1000));
        const detail =
          v.action === "locked"
            ? "too many failed attempts"
            : "too many requests waiting after failed attempts";
        this.refuse(c, v.action, v.action, detail, { retryAfterS });
        return {
          ok: false,
          answer: this.error(
            { ...DPS_ERRORS.throttled, message: "Too many failed attempts; try again later." },
            retryAfterS,
          ),
        };
      }
    }
    // Azure answers 401 for a wrong scope too: an id scope names a service, not a secret.
    const now = this.ctx.now();
    const v =
      c.idScope !== this.idScope
        ? ({ ok: false, why: "unknown", detail: "another id scope" } as const)
        : this.prove(c, now);
    if (!v.ok) {
      await f?.failed(subject);
      this.refuse(c, "refused", v.why === "unknown" ? "not-found" : "unauthorized", v.detail, { delayedMs });
      return { ok: false, answer: this.error(DPS_ERRORS.unauthorized) };
    }
    return { ok: true, who: v.who };
  }

  /**
   * The certificate when the peer sent one; the SAS token when it sent none, or when its
   * certificate proves nothing and it sent a token too (a TLS stack may offer a
   * certificate of its own to any server that asks).
   */
  private prove(c: DpsCaller, now: number) {
    if (!c.chain || c.chain.length === 0) return this.enrollments.bySas(c.registrationId, c.token, now);
    const byCert = this.enrollments.byCertificate(c.registrationId, c.chain, now);
    if (byCert.ok || c.token === undefined || c.token === "") return byCert;
    return this.enrollments.bySas(c.registrationId, c.token, now);
  }

  /** A registration request (body as sent): 202 with a new operation, or the refusal. Never rejects. */
  async register(who: Attested, c: DpsCaller, body: Buffer): Promise<DpsAnswer> {
    let parsed: { registrationId?: unknown; payload?: unknown };
    try {
      if (body.length > MAX_REQUEST_BYTES) {
        this.refuse(c, "refused", "invalid", "the request is too large");
        return this.error(DPS_ERRORS.tooLarge);
      }
      parsed = JSON.parse(body.toString("utf8")) as typeof parsed;
      if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed))
        throw new Error("not an object");
    } catch {
      this.refuse(c, "refused", "invalid", "the request is not a JSON object");
      return this.error(DPS_ERRORS.badRequest);
    }
    if (parsed.registrationId !== who.registrationId) {
      this.refuse(c, "refused", "invalid", "the body's registrationId is not the caller's");
      return this.error(DPS_ERRORS.invalidRegistrationId);
    }
    if (this.closed) return this.error(DPS_ERRORS.internal, 1);
    if (c.transport === "https" && this.ctx.limiter && !this.ctx.limiter.take(c.remote)) {
      const retryAfterS = Math.max(1, Math.ceil(this.ctx.limiter.retryAfterSeconds));
      this.refuse(c, "throttled", "throttled", "too many requests from this address", { retryAfterS });
      return this.error(DPS_ERRORS.throttled, retryAfterS);
    }
    const wait = this.quota.take(this.ctx.now());
    if (wait !== undefined) {
      const retryAfterS = Math.max(1, Math.ceil(wait / 1000));
      this.refuse(c, "throttled", "throttled", "registrations per minute over the quota", { retryAfterS });
      return this.error(DPS_ERRORS.throttled, retryAfterS);
    }
    let op: Operation;
    try {
      // Over a shared store the operation is written before its id is answered, so a
      // poll at any instance finds it.
      op = await this.track(this.operations.begin(who.registrationId.toLowerCase()));
    } catch (err) {
      this.refuse(c, "error", "error", internalDetail(err));
      return this.error(DPS_ERRORS.internal, this.retryAfterS);
    }
    void this.track(this.complete(op, who, c, parsed.payload));
    const answer: OperationStatusBody = { operationId: op.id, status: "assigning" };
    return { status: 202, body: answer, retryAfterS: this.retryAfterS };
  }

  /** An operation status poll: 202 while it runs, then its end; 404 for another device's. */
  async status(who: Attested, operationId: string): Promise<DpsAnswer> {
    const throttled = this.pollThrottled(who.registrationId);
    if (throttled) return throttled;
    let found;
    try {
      found = await this.track(this.operations.find(operationId, who.registrationId.toLowerCase()));
    } catch {
      return this.error(DPS_ERRORS.internal, this.retryAfterS);
    }
    if (!found) return this.error(DPS_ERRORS.operationNotFound);
    if (found === "stale")
      return this.ended(
        { id: operationId },
        who,
        "failed",
        DPS_ERRORS.internal.errorCode,
        "The registration was not completed; register again.",
      );
    const op = found.op;
    if (op.done) return op.done;
    if (found.elsewhere) {
      // Run by another instance, perhaps killed after it stored the registration: the
      // record written since the operation began is its answer.
      const rec = await this.track(this.records.get(this.addressOf(who.registrationId))).catch(
        () => undefined,
      );
      if (rec && Date.parse(rec.lastUpdatedDateTimeUtc) >= op.startedMs) {
        const body: OperationStatusBody = {
          operationId: op.id,
          status: "assigned",
          registrationState: stateOf(rec),
        };
        return { status: 200, body };
      }
    }
    const body: OperationStatusBody = { operationId: op.id, status: "assigning" };
    return { status: 202, body, retryAfterS: this.retryAfterS };
  }

  /**
   * The Device Registration Status Lookup: the stored registration's state, without
   * registering again (DeviceRegistrationResult); 404 when the device never registered.
   */
  async lookup(who: Attested): Promise<DpsAnswer> {
    const throttled = this.pollThrottled(who.registrationId);
    if (throttled) return throttled;
    try {
      const rec = await this.track(this.records.get(this.addressOf(who.registrationId)));
      if (!rec) return this.error(DPS_ERRORS.notFound);
      return { status: 200, body: stateOf(rec) };
    } catch {
      return this.error(DPS_ERRORS.internal);
    }
  }

  private async complete(op: Operation, who: Attested, c: DpsCaller, payload: unknown): Promise<void> {
    let done: DpsAnswer;
    try {
      done = await this.assign(op, who, c, payload);
    } catch (err) {
      this.refuse(c, "error", "error", internalDetail(err));
      done = this.ended(
        op,
        who,
        "failed",
        DPS_ERRORS.internal.errorCode,
        "The registration could not be stored.",
      );
    }
    await this.operations.end(op, done);
    this.tell("ended", who.registrationId);
  }

  private ended(
    op: Pick<Operation, "id">,
    who: Attested,
    status: "failed" | "disabled",
    errorCode?: number,
    errorMessage?: string,
  ): DpsAnswer {
    const at = new Date(this.ctx.now()).toISOString();
    const state: RegistrationState = {
      registrationId: who.registrationId,
      status,
      lastUpdatedDateTimeUtc: at,
    };
    if (errorCode !== undefined) state.errorCode = errorCode;
    if (errorMessage !== undefined) state.errorMessage = errorMessage;
    const body: OperationStatusBody = { operationId: op.id, status, registrationState: state };
    return { status: 200, body };
  }

  private async assign(op: Operation, who: Attested, c: DpsCaller, payload: unknown): Promise<DpsAnswer> {
    const e = who.enrollment;
    const addr = this.addressOf(who.registrationId);
    if (!e.enabled) {
      this.refuse(c, "refused", "disabled", "the enrollment is disabled");
      return this.ended(op, who, "disabled");
    }
    const before = await this.records.get(addr);
    const placementBefore: Placement | undefined = before;
    const hubs = hubsOf(e, this.settings);
    const policy = e.allocation ?? this.settings.allocation ?? "hashed";
    let hub =
      policy === "static"
        ? hubs[0]
        : policy === "hashed"
          ? hashedHub(who.registrationId, hubs, this.settings.hubWeights)
          : undefined;
    let initialTwin = e.initialTwin;
    let devicePayload: unknown;
    if (this.ctx.decide) {
      const answer = await this.ctx.decide(this.describe(who, c, policy, hubs, payload, placementBefore));
      if (!answer.approve) {
        const detail = answer.timedOut ? "no decision in time" : (answer.reason ?? "refused by the flow");
        this.refuse(c, "refused", "denied", detail.slice(0, 200));
        return this.ended(op, who, "failed", ALLOCATION_FAILED.errorCode, ALLOCATION_FAILED.message);
      }
      if (answer.iotHubHostName !== undefined) hub = answer.iotHubHostName;
      if (answer.initialTwin !== undefined) initialTwin = answer.initialTwin;
      devicePayload = answer.payload;
    }
    if (hub === undefined || !hubs.includes(hub)) {
      const detail =
        hub === undefined ? "no hub to assign" : "the hub named is not one of the enrollment's linked hubs";
      this.refuse(c, "refused", "denied", detail);
      return this.ended(op, who, "failed", ALLOCATION_FAILED.errorCode, ALLOCATION_FAILED.message);
    }
    const deviceId = e.kind === "individual" && e.deviceId ? e.deviceId : who.registrationId;
    const chosen = hub;
    const at = new Date(this.ctx.now()).toISOString();
    const { record, reprovisioned } = await this.records.transact(addr, (cur) => {
      const place = reprovision(cur, chosen, cur?.deviceId ?? deviceId, e.reprovision ?? "migrate");
      const next: AzureRegistrationRecord = {
        ...place,
        // The id as the device first wrote it (Azure's ids are case-insensitive).
        registrationId: cur?.registrationId ?? who.registrationId,
        enrollment: { kind: e.kind, id: e.id },
        attestation: who.attestation,
        status: "assigned",
        createdDateTimeUtc: cur?.createdDateTimeUtc ?? at,
        lastUpdatedDateTimeUtc: at,
        etag: `"${randomUUID()}"`,
      };
      if (devicePayload !== undefined) next.payload = devicePayload;
      if (initialTwin !== undefined) next.initialTwin = initialTwin;
      if (who.x509) next.x509 = who.x509;
      return {
        next,
        result: { record: next, reprovisioned: !!cur && cur.assignedHub !== place.assignedHub },
      };
    });
    this.counts.provisioned++;
    this.tell("assigned", who.registrationId);
    this.emit(
      auditEvent(
        {
          dialect: "azure-dps",
          transport: c.transport,
          remote: c.remote,
          outcome: "provisioned",
          deviceName: who.registrationId,
          deviceId: record.deviceId,
          profile: e.id,
          credentialsType: who.attestation === "x509" ? "X509_CERTIFICATE" : "SYMMETRIC_KEY",
          reprovisioned: reprovisioned || undefined,
          repeated: before !== undefined && !reprovisioned ? true : undefined,
          detail: `assigned to ${record.assignedHub} (${record.substatus})`,
        },
        new Date(this.ctx.now()),
      ),
    );
    const body: OperationStatusBody = {
      operationId: op.id,
      status: "assigned",
      registrationState: stateOf(record),
    };
    return { status: 200, body };
  }

  /** What the flow sees: Azure's custom allocation webhook body, never a key or token. */
  private describe(
    who: Attested,
    c: DpsCaller,
    policy: AzureAllocation,
    hubs: string[],
    payload: unknown,
    before: Placement | undefined,
  ): ProvisioningRequest {
    const out: ProvisioningRequest = {
      dialect: "azure-dps",
      transport: c.transport,
      deviceName: who.registrationId,
      deviceId: who.registrationId,
      proof: who.attestation === "x509" ? "x509-certificate" : "symmetric-key",
      profile: who.enrollment.id,
      attributes: webhookBody(who, policy, hubs, payload, before),
    };
    if (c.remote !== undefined) out.remote = c.remote;
    return out;
  }

  /** A refusal a transport decided before the core saw a request (audited and counted). */
  refusedEarly(
    transport: "mqtt" | "https",
    remote: string | undefined,
    reason: string,
    detail: string,
  ): void {
    this.refuse({ transport, remote, idScope: "", registrationId: "" }, "refused", reason, detail);
  }

  private refuse(
    c: DpsCaller,
    outcome: Outcome,
    reason: string,
    detail: string,
    extra: { retryAfterS?: number; delayedMs?: number } = {},
  ): void {
    this.counts.refused++;
    this.emit(
      auditEvent(
        {
          dialect: "azure-dps",
          transport: c.transport,
          remote: c.remote,
          outcome,
          reason,
          detail,
          deviceName: c.registrationId ? c.registrationId.slice(0, 128) : undefined,
          retryAfterS: extra.retryAfterS,
          delayedMs: extra.delayedMs,
        },
        new Date(this.ctx.now()),
      ),
    );
  }

  private emit(e: ServiceAuditEvent): void {
    try {
      this.ctx.audit(e);
    } catch {
      // An audit consumer's bug must not change the device's answer.
    }
  }
}

function internalDetail(err: unknown): string {
  return err instanceof ProvisioningError ? `registry: ${err.message}`.slice(0, 200) : "internal error";
}
