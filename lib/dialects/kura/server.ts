/**
 * The Everyware / Kura provisioning service core: decides a CONNECT against the provision
 * requests (server-requests.ts), answers a provision message in the exchange of
 * ./namespace.ts, and records a device's confirmation. Transports (the embedded broker,
 * an external one) only carry bytes and sessions to it.
 *
 * What Everyware Cloud's provisioning documentation says the platform does: the
 * connection to the provision broker "is established only if there is a provision request
 * created for that device" (client id, user name and password must match it); the
 * platform "validates the message received from the device" (the activation key when the
 * request has one) and answers with the certificates, the configuration and the
 * applications. The rest (attempts, windows, consumption) follows the request's fields.
 */
import { finalError, ProvisioningError } from "../../model/errors";
import type { ProvisioningRequest } from "../../model/service";
import { auditEvent, type ServiceAuditEvent } from "../../service/audit";
import type { ServiceContext } from "../../service/dialect";
import type { AttemptSubject } from "../../service/failure-limit";
import type { Records } from "../../service/records";
import {
  buildProvisionAnswer,
  buildProvisionRefusal,
  DEFAULT_TOPICS,
  matchTopic,
  METRIC,
  parseProvisionRequest,
  PROVISION_APP_ID,
  RESPONSE_CODE,
  topicFor,
  topicsError,
  topicValueError,
  type KuraAccountConfiguration,
  type KuraProvisionRequest,
  type KuraTopics,
} from "./namespace";
import { decodeKuraPayload, encodeKuraPayload, metricsOf } from "./payload";
import {
  activeNow,
  attemptsLeft,
  kuraRequestRecords,
  parseRequestInput,
  recordOf,
  sameDefinition,
  verifySecret,
  type KuraRequestInput,
  type KuraRequestRecord,
  type KuraRequestStatus,
} from "./server-requests";

/** Largest provision message read: an identity of a few dozen short strings. */
export const MAX_PROVISION_MESSAGE_BYTES = 64 * 1024;

export interface KuraServiceSettings {
  /** The provision account: the {account} of every topic. */
  accountName: string;
  topics?: KuraTopics;
  appId?: string;
  /** Requests of the node's dialog, put in the store at start (see `open`). */
  requests?: KuraRequestInput[];
}

export function checkKuraServiceSettings(s: KuraServiceSettings): string | undefined {
  const err =
    topicValueError(s.accountName, "account name") ??
    topicValueError(s.appId ?? PROVISION_APP_ID, "app id") ??
    topicsError(s.topics ?? DEFAULT_TOPICS);
  if (err) return err;
  const seen = new Set<string>();
  for (const [i, r] of (s.requests ?? []).entries()) {
    try {
      const p = parseRequestInput(r);
      if (seen.has(p.clientId)) return `two provision requests have the client id ${p.clientId}`;
      seen.add(p.clientId);
    } catch (e) {
      return `provision request ${i + 1}: ${(e as Error).message}`;
    }
  }
  return undefined;
}

/** The verdict on a CONNECT: accepted, or its MQTT 3.1.1 return code (4 bad credentials, 5 not authorized). */
export type ConnectVerdict = { ok: true } | { ok: false; returnCode: 4 | 5 };

export interface KuraAnswer {
  topic: string;
  payload: Buffer;
}

interface Refusal {
  code: number;
  reason: string;
  detail: string;
  outcome?: "refused" | "error" | "locked" | "throttled";
  retryAfterMs?: number;
}

export class KuraProvisioningService {
  readonly records: Records<KuraRequestRecord>;
  readonly account: string;
  readonly topics: KuraTopics;
  readonly appId: string;
  readonly counts = { provisioned: 0, refused: 0 };
  /** Client ids with a request: the sessions this dialect claims at CONNECT on a shared port. */
  private readonly known = new Set<string>();
  private readonly inFlight = new Set<Promise<unknown>>();
  private readonly watchers = new Set<(clientId: string, status: KuraRequestStatus) => void>();

  constructor(
    private readonly settings: KuraServiceSettings,
    private readonly ctx: ServiceContext,
  ) {
    const problem = checkKuraServiceSettings(settings);
    if (problem) throw finalError("CONFIG", problem);
    this.account = settings.accountName;
    this.topics = settings.topics ?? DEFAULT_TOPICS;
    this.appId = settings.appId ?? PROVISION_APP_ID;
    this.records = kuraRequestRecords(ctx.store);
  }

  /**
   * Puts the dialog's requests in the store and learns every client id. A dialog request
   * already stored keeps its status (a redeploy must not make a consumed request usable
   * again) unless its definition changed and it says overwrite-if-duplicate; one the
   * dialog made and no longer lists is removed. (Requests added by message are kept.)
   */
  async open(): Promise<void> {
    const mine = new Set<string>();
    for (const r of this.settings.requests ?? []) {
      const input = parseRequestInput(r);
      mine.add(input.clientId);
      await this.put(input, "dialog", input.overwriteIfDuplicate === true, true);
    }
    for (const s of await this.records.list(this.account)) {
      // A request taken out of the dialog is taken out of the store: it must stop working.
      if (!mine.has(s.id)) {
        const r = await this.records.get({ group: s.group, id: s.id });
        if (r?.owner === "dialog") {
          await this.records.remove({ group: s.group, id: s.id });
          continue;
        }
      }
      this.known.add(s.id);
    }
  }

  claims(clientId: string): boolean {
    return this.known.has(clientId);
  }

  lockedNow(): number {
    return this.ctx.failures?.lockedCount() ?? 0;
  }

  /**
   * Adds a request (or replaces one when `overwrite`); `keepSame`: a stored request of the
   * same definition is left as it is. Resolves what was done and the generated key.
   */
  async put(
    input: KuraRequestInput,
    owner: string | undefined,
    overwrite: boolean,
    keepSame = false,
  ): Promise<{ done: "added" | "replaced" | "kept"; activationKey?: string }> {
    const addr = { group: this.account, id: input.clientId };
    const before = await this.records.get(addr);
    if (before && keepSame && sameDefinition(before, input)) return { done: "kept" };
    if (before && !overwrite) {
      if (keepSame) return { done: "kept" };
      throw finalError(
        "CONFLICT",
        "a provision request for this client id exists (overwriteIfDuplicate is off)",
        {
          status: "DUPLICATE",
        },
      );
    }
    const made = await recordOf(input, this.ctx.now(), owner);
    const done = await this.transact(input.clientId, (cur) => {
      if (cur && !overwrite) return { result: "conflict" as const };
      return { next: made.record, result: cur ? ("replaced" as const) : ("added" as const) };
    });
    if (done === "conflict")
      throw finalError(
        "CONFLICT",
        "a provision request for this client id exists (overwriteIfDuplicate is off)",
        {
          status: "DUPLICATE",
        },
      );
    this.known.add(input.clientId);
    return { done, activationKey: made.activationKey };
  }

  async remove(clientId: string): Promise<boolean> {
    const gone = await this.records.remove({ group: this.account, id: clientId });
    this.known.delete(clientId);
    return gone;
  }

  /** Sets a final status by management (ABANDONED), unless it is final already. */
  async abandon(clientId: string): Promise<KuraRequestRecord | undefined> {
    return this.transact(clientId, (cur) => {
      if (!cur) return { result: undefined };
      if (cur.status !== "CREATED" && cur.status !== "RUNNING") return { result: cur };
      const next = this.ended(cur, "ABANDONED", "abandoned by management");
      return { next, result: next };
    });
  }

  /** Told after every status a request is written with (management, the node's status, tests). */
  watch(fn: (clientId: string, status: KuraRequestStatus) => void): () => void {
    this.watchers.add(fn);
    return () => this.watchers.delete(fn);
  }

  /** Records.transact on one request of this account, telling the watchers of a new status. */
  private async transact<T>(
    clientId: string,
    fn: (current: KuraRequestRecord | undefined) => { next?: KuraRequestRecord; result: T },
  ): Promise<T> {
    let changed: KuraRequestStatus | undefined;
    const result = await this.records.transact({ group: this.account, id: clientId }, (cur) => {
      const out = fn(cur);
      changed = out.next && out.next.status !== cur?.status ? out.next.status : undefined;
      return out;
    });
    if (changed)
      for (const w of [...this.watchers]) {
        try {
          w(clientId, changed);
        } catch {
          // A watcher's bug must not change the device's answer.
        }
      }
    return result;
  }

  /** Resolves once every store write under way is done (stop waits for them). */
  async drain(): Promise<void> {
    while (this.inFlight.size > 0) await Promise.allSettled([...this.inFlight]);
  }

  private track<T>(p: Promise<T>): Promise<T> {
    this.inFlight.add(p);
    void p.then(
      () => this.inFlight.delete(p),
      () => this.inFlight.delete(p),
    );
    return p;
  }

  private ended(r: KuraRequestRecord, status: "FAILED" | "ABANDONED", why: string): KuraRequestRecord {
    return { ...r, status, endedBecause: why, updatedAt: new Date(this.ctx.now()).toISOString() };
  }

  /** Writes the status activeNow() found (an expired request becomes ABANDONED, ...). */
  private async settle(clientId: string): Promise<void> {
    const now = this.ctx.now();
    await this.transact(clientId, (cur) => {
      if (!cur || (cur.status !== "CREATED" && cur.status !== "RUNNING")) return { result: undefined };
      const a = activeNow(cur, now);
      if (a.ok || (a.status !== "FAILED" && a.status !== "ABANDONED")) return { result: undefined };
      return { next: this.ended(cur, a.status, a.why), result: undefined };
    });
  }

  /** One failed attempt of a request: counted, and FAILED when it was the last. */
  private async countAttempt(clientId: string, failed: boolean): Promise<void> {
    await this.transact(clientId, (cur) => {
      if (!cur || (cur.status !== "CREATED" && cur.status !== "RUNNING")) return { result: undefined };
      const next = { ...cur, attempts: cur.attempts + 1, updatedAt: new Date(this.ctx.now()).toISOString() };
      if (failed && !attemptsLeft(next))
        return { next: this.ended(next, "FAILED", "no attempts left"), result: undefined };
      return { next, result: undefined };
    });
  }

  /** The failure guard before a secret is compared: a refusal, or the delay waited out. */
  private async gate(subject: AttemptSubject): Promise<Refusal | { delayedMs?: number }> {
    const f = this.ctx.failures;
    if (!f) return {};
    await f.refresh(subject); // the budget shared with other instances (a shared store)
    const v = f.check(subject);
    if (v.action === "locked")
      return {
        code: RESPONSE_CODE.denied,
        reason: "locked",
        outcome: "locked",
        detail: "too many failed attempts",
        retryAfterMs: v.retryAfterMs,
      };
    if (v.action === "throttled")
      return {
        code: RESPONSE_CODE.denied,
        reason: "throttled",
        outcome: "throttled",
        detail: "too many requests waiting after failed attempts",
        retryAfterMs: v.retryAfterMs,
      };
    if (v.delayMs > 0) {
      if (!(await f.wait(subject, v.delayMs)))
        return {
          code: RESPONSE_CODE.denied,
          reason: "throttled",
          outcome: "throttled",
          detail: "too many requests waiting after failed attempts",
          retryAfterMs: v.delayMs,
        };
      const again = f.check(subject);
      if (again.action !== "go")
        return {
          code: RESPONSE_CODE.denied,
          reason: again.action,
          outcome: again.action,
          detail: "too many failed attempts",
          retryAfterMs: again.retryAfterMs,
        };
      return { delayedMs: v.delayMs };
    }
    return {};
  }

  /**
   * Decides a CONNECT: a request for the client id, in its window with attempts left, and
   * the user name and password it names. Never rejects (a store failure refuses).
   */
  connect(c: {
    clientId: string;
    username?: string;
    password?: Buffer | string;
    remote?: string;
    transport: string;
  }): Promise<ConnectVerdict> {
    return this.track(this.connectInner(c)).catch((err: unknown) => {
      this.refuse(
        { transport: c.transport, remote: c.remote, deviceName: c.clientId },
        { code: 500, reason: "error", outcome: "error", detail: storeDetail(err) },
      );
      return { ok: false as const, returnCode: 5 as const };
    });
  }

  private async connectInner(c: {
    clientId: string;
    username?: string;
    password?: Buffer | string;
    remote?: string;
    transport: string;
  }): Promise<ConnectVerdict> {
    const base = { transport: c.transport, remote: c.remote, deviceName: c.clientId };
    const subject: AttemptSubject = { remote: c.remote, account: c.clientId };
    const gate = await this.gate(subject);
    if ("code" in gate) {
      this.refuse(base, gate);
      return { ok: false, returnCode: 5 };
    }
    const rec = await this.records.get({ group: this.account, id: c.clientId });
    if (!rec) {
      this.refuse(base, {
        code: 404,
        reason: "not-found",
        detail: "no provision request for this client id",
      });
      return { ok: false, returnCode: 5 };
    }
    const active = activeNow(rec, this.ctx.now());
    if (!active.ok) {
      await this.settle(c.clientId);
      this.refuse(base, {
        code: 404,
        reason:
          rec.status === "COMPLETED"
            ? "already-provisioned"
            : active.status === "ABANDONED"
              ? "expired"
              : active.status === "FAILED"
                ? "failed"
                : "not-active",
        detail: active.why,
      });
      return { ok: false, returnCode: 5 };
    }
    const password =
      c.password === undefined ? "" : Buffer.isBuffer(c.password) ? c.password.toString("utf8") : c.password;
    const userOk = c.username !== undefined && c.username === rec.username;
    // The hash is compared whatever the user name, so the time taken does not tell which was wrong.
    const passOk = await verifySecret(password, rec.passwordHash);
    if (!userOk || !passOk) {
      await this.ctx.failures?.failed(subject);
      await this.countAttempt(c.clientId, true);
      this.refuse(
        { ...base, delayedMs: gate.delayedMs },
        { code: 404, reason: "not-found", detail: "wrong user name or password" },
      );
      return { ok: false, returnCode: 4 };
    }
    return { ok: true };
  }

  /** Whether `topic` is this session's provision-message topic, its confirmation topic, or neither. */
  topicOf(clientId: string, topic: string): "request" | "completed" | undefined {
    const mine = (template: string) => {
      const v = matchTopic(template, topic);
      return (
        !!v &&
        (v.account === undefined || v.account === this.account) &&
        v.clientId === clientId &&
        (v.appId === undefined || v.appId === this.appId)
      );
    };
    if (mine(this.topics.request)) return "request";
    if (mine(this.topics.completed)) return "completed";
    return undefined;
  }

  /** The reply topic of one request id, for one client. */
  replyTopic(clientId: string, requestId: string): string {
    return topicFor(this.topics.reply, { account: this.account, clientId, appId: this.appId, requestId });
  }

  /**
   * Answers one provision message from the session of `clientId`: the answer to publish
   * straight to that session, or undefined when the message gives no request id to answer
   * (it is audited and the session should be closed). Never rejects.
   * `checkRequest`: attached mode, where no CONNECT was decided here.
   */
  provision(
    clientId: string,
    body: Buffer,
    ctx: { transport: string; remote?: string; checkRequest?: boolean },
  ): Promise<KuraAnswer | undefined> {
    return this.track(this.provisionInner(clientId, body, ctx)).catch((err: unknown) => {
      this.refuse(
        { transport: ctx.transport, remote: ctx.remote, deviceName: clientId },
        { code: 500, reason: "error", outcome: "error", detail: storeDetail(err) },
      );
      return undefined;
    });
  }

  private async provisionInner(
    clientId: string,
    body: Buffer,
    ctx: { transport: string; remote?: string; checkRequest?: boolean },
  ): Promise<KuraAnswer | undefined> {
    const base = { transport: ctx.transport, remote: ctx.remote, deviceName: clientId };
    let parsed: KuraProvisionRequest;
    let requestId: string | undefined;
    try {
      const payload = decodeKuraPayload(body, { maxBytes: MAX_PROVISION_MESSAGE_BYTES });
      const id = metricsOf(payload).get(METRIC.requestId);
      if (typeof id === "string" && /^[A-Za-z0-9._-]{1,64}$/.test(id)) requestId = id;
      parsed = parseProvisionRequest(payload);
    } catch (err) {
      const detail = `the provision message does not parse: ${(err as Error).message}`.slice(0, 200);
      this.refuse(base, { code: RESPONSE_CODE.badRequest, reason: "invalid", detail });
      return requestId === undefined
        ? undefined
        : this.answerRefusal(clientId, requestId, 400, "malformed provision message");
    }
    const refusal = (r: Refusal) => {
      this.refuse(base, r);
      return this.answerRefusal(clientId, parsed.requestId, r.code, r.detail);
    };
    if (parsed.requesterClientId !== clientId)
      return refusal({
        code: RESPONSE_CODE.badRequest,
        reason: "invalid",
        detail: "requester.client.id is not the session's client id",
      });
    if (ctx.checkRequest && this.ctx.limiter && !this.ctx.limiter.take(ctx.remote))
      return refusal({ code: 500, reason: "throttled", detail: "too many requests from this remote" });
    const subject: AttemptSubject = { remote: ctx.remote, account: clientId };
    const gate = await this.gate(subject);
    if ("code" in gate) return refusal(gate);
    const addr = { group: this.account, id: clientId };
    const rec = await this.records.get(addr);
    const active = rec ? activeNow(rec, this.ctx.now()) : undefined;
    if (!rec || !active?.ok) {
      if (rec) await this.settle(clientId);
      return refusal({
        code: RESPONSE_CODE.notFound,
        reason: rec?.status === "COMPLETED" ? "already-provisioned" : "not-found",
        detail: active && !active.ok ? active.why : "no provision request for this client id",
      });
    }
    if (rec.activationKeyHash !== undefined) {
      const ok =
        parsed.activationKey !== undefined &&
        (await verifySecret(parsed.activationKey, rec.activationKeyHash));
      if (!ok) {
        await this.ctx.failures?.failed(subject);
        await this.countAttempt(clientId, true);
        return refusal({
          code: RESPONSE_CODE.denied,
          reason: "wrong-activation-key",
          detail: "wrong or missing activation key",
        });
      }
    }
    let configuration = rec.configuration;
    if (this.ctx.decide) {
      const answer = await this.ctx.decide(this.describe(parsed, clientId, ctx));
      if (!answer.approve) {
        await this.countAttempt(clientId, false);
        const detail = answer.timedOut ? "no decision in time" : (answer.reason ?? "refused by the flow");
        return refusal({ code: RESPONSE_CODE.denied, reason: "denied", detail: detail.slice(0, 200) });
      }
      const fc = answer.credentials;
      if (fc && configuration) {
        const over: Partial<KuraAccountConfiguration> = {};
        if (typeof fc.username === "string") over.username = fc.username;
        if (typeof fc.password === "string") over.password = fc.password;
        if (typeof fc.clientId === "string") over.clientId = fc.clientId;
        configuration = { ...configuration, ...over };
      }
    }
    let payload: Buffer;
    try {
      payload = encodeKuraPayload(
        buildProvisionAnswer(
          { certificateChain: rec.certificateChain, configuration, applications: rec.applications },
          this.ctx.now(),
        ),
      );
    } catch (err) {
      return refusal({
        code: RESPONSE_CODE.error,
        reason: "error",
        outcome: "error",
        detail: (err as Error).message,
      });
    }
    const at = new Date(this.ctx.now()).toISOString();
    const stillActive = await this.transact(clientId, (cur) => {
      if (!cur || !activeNow(cur, this.ctx.now()).ok) return { result: false };
      return {
        next: { ...cur, status: "RUNNING", attempts: cur.attempts + 1, answeredAt: at, updatedAt: at },
        result: true,
      };
    });
    if (!stillActive)
      return refusal({
        code: RESPONSE_CODE.notFound,
        reason: "not-found",
        detail: "the request changed meanwhile",
      });
    this.counts.provisioned++;
    this.emit(
      auditEvent({
        dialect: "kura",
        ...base,
        profile: this.account,
        outcome: "provisioned",
        credentialsType: configuration ? "MQTT_BASIC" : undefined,
        delayedMs: gate.delayedMs,
        detail: "answered; the request is RUNNING until the device confirms",
      }),
    );
    return { topic: this.replyTopic(clientId, parsed.requestId), payload };
  }

  /**
   * The device holds its answer: the request is COMPLETED (consumed). Resolves once that
   * is stored, so a transport can acknowledge the message after it. Never rejects.
   */
  completed(clientId: string, body: Buffer): Promise<boolean> {
    const work = (async () => {
      const m = metricsOf(decodeKuraPayload(body, { maxBytes: MAX_PROVISION_MESSAGE_BYTES }));
      if (m.get(METRIC.requesterClientId) !== clientId) return false;
      const at = new Date(this.ctx.now()).toISOString();
      return this.transact(clientId, (cur) => {
        if (!cur || cur.status !== "RUNNING") return { result: false };
        return {
          next: { ...cur, status: "COMPLETED" as const, completedAt: at, updatedAt: at },
          result: true,
        };
      });
    })();
    return this.track(work).catch(() => false);
  }

  private answerRefusal(clientId: string, requestId: string, code: number, message: string): KuraAnswer {
    return {
      topic: this.replyTopic(clientId, requestId),
      payload: encodeKuraPayload(buildProvisionRefusal(code, message, this.ctx.now())),
    };
  }

  /** What the flow sees: the device's identity and the request's name, never a secret. */
  private describe(
    p: KuraProvisionRequest,
    clientId: string,
    ctx: { transport: string; remote?: string },
  ): ProvisioningRequest {
    const out: ProvisioningRequest = {
      dialect: "kura",
      transport: ctx.transport,
      deviceName: clientId,
      deviceId: clientId,
      proof: "provision-request",
      profile: this.account,
      attributes: { ...p.identity },
    };
    if (ctx.remote !== undefined) out.remote = ctx.remote;
    return out;
  }

  /** A refusal decided before any request was read (a transport's): audited and counted. */
  refusedEarly(
    transport: string,
    remote: string | undefined,
    reason: string,
    detail: string,
    clientId?: string,
  ): void {
    this.refuse({ transport, remote, deviceName: clientId?.slice(0, 256) }, { code: 0, reason, detail });
  }

  private refuse(
    base: { transport: string; remote?: string; deviceName?: string; delayedMs?: number },
    r: Refusal,
  ): void {
    this.counts.refused++;
    const limited = r.outcome === "locked" || r.outcome === "throttled";
    this.emit(
      auditEvent({
        dialect: "kura",
        ...base,
        profile: this.account,
        outcome: r.outcome ?? "refused",
        reason: r.reason,
        detail: r.detail,
        retryAfterS:
          limited && r.retryAfterMs !== undefined ? Math.max(1, Math.ceil(r.retryAfterMs / 1000)) : undefined,
      }),
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

function storeDetail(err: unknown): string {
  return err instanceof ProvisioningError ? `registry: ${err.message}`.slice(0, 200) : "internal error";
}
