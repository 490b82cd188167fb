/**
 * The serving side of Mainflux bootstrap: the upstream service's answers (status codes
 * and JSON error bodies as mainflux/mainflux bootstrap/api/transport.go encodes them)
 * from configurations in a ConfigRegistry, and a plain request handler for node:http or
 * an Express router (Node-RED's httpNode).
 *
 * Upstream order is kept: a missing key is 401 before anything is read; an unknown
 * external id is 404 before the key is looked at; a key (or its encryption) that does
 * not match is 403. A configuration's state does not matter to bootstrap upstream
 * (it only connects the thing to its channels), so it does not here either.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import { auditEvent, lockAuditEvent, type ServiceAuditEvent } from "../../service/audit";
import type { FailureLimiter, LimitVerdict, LockEvent } from "../../service/failure-limit";
import type { RateLimiter } from "../../service/rate-limit";
import { readRequestBody, sendAnswer, type BodyRefusal } from "../../transports/http-body";
import { parseJsonBounded } from "../../util/json-limits";
import { secretsEqual } from "../../util/secrets";
import {
  cfbEncrypt,
  cfbExternalKey,
  gcmOpenRequest,
  gcmParts,
  gcmSealResponse,
  GCM_DEFAULT_WINDOW_S,
  GCM_SCHEME,
  KeyError,
  ReplayGuard,
  THING_PREFIX,
} from "./crypto";
import { ConfigRegistry, type StoredConfig } from "./registry";
import { ProvisioningError } from "../../model/errors";
import {
  answerJson,
  BOOTSTRAP_PATH,
  errorJson,
  MAX_MANAGE_BODY_BYTES,
  MESSAGES as M,
  SECURE_PATH,
  type FieldGeneration,
} from "./wire";

export interface GcmServerKey {
  keyId: string;
  key: Buffer;
  /** Seconds either side of now an issued-at time may be (default 300). */
  windowSeconds?: number;
}

export interface BootstrapServiceOptions {
  registry: ConfigRegistry;
  /** Mainflux's secure mode (AES-CFB); off when absent. */
  cfbKey?: Buffer;
  /** The stronger, non-Mainflux mode; off when absent. */
  gcm?: GcmServerKey;
  /** Serve the plain endpoint (default true, as upstream). */
  allowPlain?: boolean;
  /** Bearer token of the management endpoints; they are not served without one. */
  managementToken?: string;
  /** Field names of the answers: "thing" (current, default) or "mainflux" (older). */
  fields?: FieldGeneration;
  onAudit?: (event: ServiceAuditEvent) => void;
  now?: () => number;
  replay?: ReplayGuard;
  /**
   * Brute-force protection: failures per address and per external id (known id, wrong
   * key), slowing then locking (429 with Retry-After). Absent: counting is off.
   */
  failures?: FailureLimiter;
}

export interface Answer {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
}

export interface ServiceRequest {
  method: string;
  /** Path below the service root, e.g. /things/bootstrap/abc (percent-encoded as received). */
  path: string;
  authorization?: string;
  contentType?: string;
  body?: Buffer;
  remote?: string;
}

const JSON_TYPE = "application/json";

function json(status: number, body: string, extra: Record<string, string> = {}): Answer {
  return { status, headers: { "content-type": JSON_TYPE, ...extra }, body: Buffer.from(body, "utf8") };
}

function empty(status: number, extra: Record<string, string> = {}): Answer {
  return { status, headers: { ...extra }, body: Buffer.alloc(0) };
}

function decodeSegment(s: string): string | undefined {
  try {
    return decodeURIComponent(s);
  } catch {
    return undefined;
  }
}

type Route =
  | { kind: "bootstrap"; secure: boolean; id: string | undefined }
  | { kind: "configs"; id?: string }
  | { kind: "state"; id: string | undefined }
  | { kind: "none" };

/** Which endpoint a path names; ids are percent-decoded ("" when the segment is empty). */
export function route(path: string): Route {
  const p = path.split("?")[0];
  const seg = (rest: string) => (rest.includes("/") ? undefined : decodeSegment(rest));
  if (p.startsWith(SECURE_PATH))
    return { kind: "bootstrap", secure: true, id: seg(p.slice(SECURE_PATH.length)) };
  if (p === SECURE_PATH.slice(0, -1)) return { kind: "bootstrap", secure: true, id: "" };
  if (p.startsWith(BOOTSTRAP_PATH))
    return { kind: "bootstrap", secure: false, id: seg(p.slice(BOOTSTRAP_PATH.length)) };
  if (p === "/things/configs") return { kind: "configs" };
  if (p.startsWith("/things/configs/")) {
    const id = seg(p.slice("/things/configs/".length));
    return id === undefined ? { kind: "none" } : { kind: "configs", id };
  }
  if (p.startsWith("/things/state/")) return { kind: "state", id: seg(p.slice("/things/state/".length)) };
  return { kind: "none" };
}

export class MainfluxBootstrapService {
  readonly counts = { bootstrapped: 0, refused: 0 };
  private readonly replay: ReplayGuard;
  private readonly now: () => number;

  constructor(private readonly opts: BootstrapServiceOptions) {
    this.replay = opts.replay ?? new ReplayGuard();
    this.now = opts.now ?? Date.now;
  }

  get registry(): ConfigRegistry {
    return this.opts.registry;
  }

  get managementEnabled(): boolean {
    return Boolean(this.opts.managementToken);
  }

  /** Addresses and external ids locked right now after too many failures. */
  lockedNow(): number {
    return this.opts.failures?.lockedCount() ?? 0;
  }

  /** The audit event for a lock that just began (FailureLimiter's onLock). */
  static lockEvent(lock: LockEvent): ServiceAuditEvent {
    return lockAuditEvent("mainflux", lock, "deviceName");
  }

  private audit(
    outcome: ServiceAuditEvent["outcome"],
    fields: {
      reason?: string;
      detail?: string;
      deviceName?: string;
      deviceId?: string;
      remote?: string;
      delayedMs?: number;
      retryAfterS?: number;
    },
    transport = "http",
  ): void {
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
    return this.manage(r, req);
  }

  /** GET /things/bootstrap[/secure]/{external_id}. */
  async bootstrap(
    secure: boolean,
    externalId: string | undefined,
    authorization: string | undefined,
    remote?: string,
  ): Promise<Answer> {
    const transport = secure ? "http+secure" : "http";
    let delayedMs: number | undefined;
    const refuse = (status: number, message: string, error: string, reason: string, detail: string) => {
      this.audit(
        "refused",
        { reason, detail, deviceName: externalId || undefined, remote, delayedMs },
        transport,
      );
      return json(status, errorJson(message, error));
    };
    const f = this.opts.failures;
    // 429 with Retry-After (RFC 6585 section 4, RFC 9110 section 10.2.3): upstream has no
    // such answer; a client written for it sees an HTTP error and retries later.
    const limited = (v: Exclude<LimitVerdict, { action: "go" }>) => {
      const retryAfterS = Math.max(1, Math.ceil(v.retryAfterMs / 1000));
      const locked = v.action === "locked";
      const detail = !locked
        ? "too many requests waiting after failed attempts"
        : v.subject === "account"
          ? "too many failed attempts for this external id from this address"
          : "too many failed attempts from this address";
      this.audit(
        v.action,
        { reason: v.action, detail, deviceName: externalId || undefined, remote, retryAfterS },
        transport,
      );
      return json(429, errorJson(M.validation, locked ? "too many failed attempts" : "too many requests"), {
        "retry-after": String(retryAfterS),
      });
    };
    /** A key that does not open or match: counted against the address and the id. */
    const wrongKey = (status: number, message: string, error: string, reason: string, detail: string) => {
      f?.failed({ remote, account: externalId });
      return refuse(status, message, error, reason, detail);
    };
    if (!externalId) return refuse(400, M.validation, M.missingId, "invalid", "no external id");
    const auth = authorization ?? "";
    const gcm = secure && auth.startsWith(GCM_SCHEME);
    const presented = gcm
      ? auth.slice(GCM_SCHEME.length)
      : auth.startsWith(THING_PREFIX)
        ? auth.slice(THING_PREFIX.length)
        : "";
    if (presented.length === 0) return refuse(401, M.validation, M.bearerKey, "invalid", "no external key");
    if (!secure && this.opts.allowPlain === false)
      return refuse(
        403,
        M.externalKey,
        "plain bootstrap is disabled on this service",
        "denied",
        "plain disabled",
      );
    // A locked address is refused before anything is read.
    const early = f?.check({ remote });
    if (early && early.action !== "go") return limited(early);
    let cfg: StoredConfig | undefined;
    try {
      cfg = await this.opts.registry.get(externalId);
    } catch (err) {
      this.audit(
        "error",
        { reason: "store", detail: (err as Error).message, deviceName: externalId, remote },
        transport,
      );
      return json(503, errorJson(M.readConfig, "the configuration store is unavailable"));
    }
    // Only an id that exists is an account: made-up ids cannot fill the limiter's map.
    const subject = { remote, account: cfg ? externalId : undefined };
    if (f) {
      const v = f.check(subject);
      if (v.action !== "go") return limited(v);
      if (v.delayMs > 0) {
        if (!(await f.wait(subject, v.delayMs)))
          return limited({ action: "throttled", retryAfterMs: v.delayMs });
        // Others may have failed meanwhile; from here to the comparison nothing awaits,
        // so requests waiting in parallel cannot overshoot the lock.
        const again = f.check(subject);
        if (again.action !== "go") return limited(again);
        delayedMs = v.delayMs;
      }
    }
    // An unknown id is not counted: the external id is no secret (often the MAC address),
    // and a device polls with it until its configuration is added (upstream's agent
    // retries); locking it out would keep it from ever bootstrapping. Guesses of the key
    // are what is counted.
    if (!cfg) return refuse(404, M.readConfig, M.notFound, "not-found", "unknown external id");

    let key: string;
    let seal: ((plain: Buffer) => Answer) | undefined;
    if (!secure) {
      key = presented;
    } else if (gcm) {
      const g = this.opts.gcm;
      if (!g)
        return refuse(
          403,
          M.externalKeySecure,
          "the GCM mode is not enabled on this service",
          "denied",
          "gcm off",
        );
      try {
        const { keyId, token } = gcmParts(presented);
        if (keyId !== g.keyId) throw new KeyError("unknown key id");
        const opened = gcmOpenRequest(g.key, keyId, externalId, token);
        const window = (g.windowSeconds ?? GCM_DEFAULT_WINDOW_S) * 1000;
        const now = this.now();
        const iat = opened.issuedAt * 1000;
        if (iat < now - window || iat > now + window)
          throw new KeyError("the request was issued outside the accepted time window");
        if (!this.replay.consume(`${keyId}|${opened.requestId}`, iat + window, now))
          throw new KeyError("the request id was already used (replayed request)");
        key = opened.externalKey;
        seal = (plain) => ({
          status: 200,
          headers: { "content-type": "application/octet-stream", "x-bootstrap-key-id": keyId },
          body: gcmSealResponse(g.key, keyId, externalId, opened.requestId, plain),
        });
      } catch (err) {
        const why = err instanceof KeyError ? err.message : "the request cannot be read";
        return wrongKey(403, M.externalKeySecure, why, "denied", why);
      }
    } else {
      const k = this.opts.cfbKey;
      if (!k)
        return refuse(
          403,
          M.externalKeySecure,
          "secure bootstrap is not enabled on this service",
          "denied",
          "secure off",
        );
      try {
        key = cfbExternalKey(k, presented);
      } catch (err) {
        const why = err instanceof KeyError ? err.message : "the key cannot be decrypted";
        return wrongKey(403, M.externalKeySecure, why, "denied", why);
      }
      seal = (plain) => ({
        status: 200,
        headers: { "content-type": JSON_TYPE },
        body: cfbEncrypt(k, plain),
      });
    }
    if (!secretsEqual(key, cfg.external_key))
      return wrongKey(
        403,
        secure ? M.externalKeySecure : M.externalKey,
        "",
        "denied",
        "external key mismatch",
      );

    const plain = Buffer.from(
      answerJson(
        {
          thingId: cfg.thing_id,
          thingKey: cfg.thing_key,
          channels: cfg.channels,
          content: cfg.content,
          clientCert: cfg.client_cert,
          clientKey: cfg.client_key,
          caCert: cfg.ca_cert,
        },
        this.opts.fields,
      ) + "\n",
      "utf8",
    );
    this.audit(
      "provisioned",
      {
        deviceName: externalId,
        deviceId: cfg.thing_id,
        remote,
        detail: gcm ? "gcm" : secure ? "secure" : "plain",
        delayedMs,
      },
      transport,
    );
    return seal ? seal(plain) : { status: 200, headers: { "content-type": JSON_TYPE }, body: plain };
  }

  /** The 401 answer when the management token is missing or wrong, else undefined. */
  checkToken(authorization: string | undefined): Answer | undefined {
    const token = this.opts.managementToken ?? "";
    const auth = authorization ?? "";
    if (!auth.startsWith("Bearer ") || auth.length === "Bearer ".length)
      return json(401, errorJson(M.validation, M.bearerToken));
    if (!secretsEqual(auth.slice("Bearer ".length), token)) return json(401, errorJson(M.authentication));
    return undefined;
  }

  private parseBody(req: ServiceRequest): { value: Record<string, unknown> } | Answer {
    if (!(req.contentType ?? "").includes(JSON_TYPE))
      return json(415, errorJson(M.validation, M.contentType));
    // Bounded in size and depth (lib/util/json-limits): a deep body is malformed, not a 500.
    const parsed = parseJsonBounded(req.body ?? Buffer.alloc(0), { maxBytes: MAX_MANAGE_BODY_BYTES });
    if (!parsed.ok) return json(400, errorJson(M.validation, M.malformed));
    const v = parsed.value;
    if (typeof v !== "object" || v === null || Array.isArray(v))
      return json(400, errorJson(M.validation, M.malformed));
    return { value: v as Record<string, unknown> };
  }

  private registryAnswer(err: unknown): Answer {
    if (err instanceof ProvisioningError) {
      if (err.code === "CONFLICT") return json(409, errorJson(M.conflict));
      if (err.code === "NOT_FOUND") return json(404, errorJson(M.notFound));
      if (err.code === "INVALID") return json(400, errorJson(M.malformed, err.message));
    }
    return json(503, errorJson(M.readConfig, "the configuration store is unavailable"));
  }

  private async manage(
    r: Exclude<Route, { kind: "bootstrap" | "none" }>,
    req: ServiceRequest,
  ): Promise<Answer> {
    const denied = this.checkToken(req.authorization);
    if (denied) return denied;
    const reg = this.opts.registry;
    try {
      if (r.kind === "state") {
        if (req.method !== "PUT") return json(405, errorJson("method not allowed"));
        if (!r.id) return json(400, errorJson(M.validation, M.missingId));
        const body = this.parseBody(req);
        if ("status" in body) return body;
        const s = body.value.state;
        if (s !== 0 && s !== 1) return json(400, errorJson(M.validation, M.state));
        await reg.setState(r.id, s);
        return empty(200);
      }
      if (r.id === undefined) {
        if (req.method !== "POST") return json(405, errorJson("method not allowed"));
        const body = this.parseBody(req);
        if ("status" in body) return body;
        const v = body.value;
        if (!v.external_id) return json(400, errorJson(M.validation, M.missingId));
        if (!v.external_key) return json(401, errorJson(M.validation, M.bearerKey));
        const cfg = await reg.add(v);
        return empty(201, { location: `/things/configs/${encodeURIComponent(cfg.thing_id)}` });
      }
      if (r.id === "") return json(400, errorJson(M.validation, M.missingId));
      if (req.method === "GET") {
        const cfg = await reg.getByThing(r.id);
        if (!cfg) return json(404, errorJson(M.readConfig, M.notFound));
        return json(200, JSON.stringify(viewOf(cfg)));
      }
      if (req.method === "PUT") {
        const body = this.parseBody(req);
        if ("status" in body) return body;
        // Upstream's update changes name and content; the rest has its own endpoints there.
        const patch: Record<string, unknown> = {};
        if ("name" in body.value) patch.name = body.value.name;
        if ("content" in body.value) patch.content = body.value.content;
        await reg.update(r.id, patch);
        return empty(200);
      }
      if (req.method === "DELETE") {
        await reg.remove(r.id);
        return empty(204);
      }
      return json(405, errorJson("method not allowed"));
    } catch (err) {
      return this.registryAnswer(err);
    }
  }
}

/** Upstream's view of one configuration (management only: it holds the keys). */
export function viewOf(c: StoredConfig): Record<string, unknown> {
  const v: Record<string, unknown> = {
    thing_id: c.thing_id,
    thing_key: c.thing_key,
    channels: c.channels,
    external_id: c.external_id,
    external_key: c.external_key,
    state: c.state,
  };
  if (c.name) v.name = c.name;
  if (c.content) v.content = c.content;
  if (c.client_cert) v.client_cert = c.client_cert;
  if (c.client_key) v.client_key = c.client_key;
  if (c.ca_cert) v.ca_cert = c.ca_cert;
  return v;
}

function send(res: ServerResponse, a: Answer, opts: { close?: boolean; cut?: boolean } = {}): void {
  sendAnswer(res, a.status, a.headers, a.body, opts);
}

/** Why a request was refused by the HTTP adapter: fixed words, never request content. */
export type HttpRefusal = BodyRefusal | "throttled";

export interface HandlerOptions {
  /** A path prefix the endpoints live under (e.g. "/bootstrap"); "" by default. */
  basePath?: string;
  maxBodyBytes?: number;
  /**
   * Per-remote flood protection of every endpoint: a request over the rate is answered
   * 429 with Retry-After (RFC 6585 section 4) before anything else is looked at.
   */
  limiter?: RateLimiter;
  /** Retry-After of a 429 that does not carry its own, in seconds (default 1). */
  retryAfterSeconds?: number;
  /** Called once per refused request with a fixed reason. */
  onRefused?: (reason: HttpRefusal) => void;
}

type Next = (err?: unknown) => void;

export type BootstrapHandler = ((req: IncomingMessage, res: ServerResponse, next?: Next) => void) & {
  /** True for the requests this handler serves (method, URL below the mount point). */
  claims: (method: string, url: string) => boolean;
};

/**
 * A request handler for node:http, or Express middleware (Node-RED's httpNode): paths
 * that are not this service's go to `next` (or get a 404 without one). Bodies are read
 * by lib/transports/http-body within `maxBodyBytes`, and only for the management
 * endpoints, after their token was checked.
 */
export function bootstrapHandler(
  service: MainfluxBootstrapService,
  opts: HandlerOptions = {},
): BootstrapHandler {
  const base = (opts.basePath ?? "").replace(/\/+$/, "");
  const limit = opts.maxBodyBytes ?? MAX_MANAGE_BODY_BYTES;
  const retryAfter = String(Math.max(1, Math.ceil(opts.retryAfterSeconds ?? 1)));
  const pathOf = (url: string): string | undefined => {
    if (base && !(url === base || url.startsWith(base + "/") || url.startsWith(base + "?"))) return undefined;
    return url.slice(base.length) || "/";
  };
  const ours = (url: string): Route | undefined => {
    const path = pathOf(url);
    if (path === undefined) return undefined;
    const r = route(path);
    if (r.kind === "none" || (r.kind !== "bootstrap" && !service.managementEnabled)) return undefined;
    return r;
  };
  const throttled = (): Answer =>
    json(429, errorJson(M.validation, "too many requests from this address"), { "retry-after": retryAfter });
  const handler = (req: IncomingMessage, res: ServerResponse, next?: Next) => {
    const url = req.url ?? "/";
    const pass = () => (next ? next() : send(res, json(404, errorJson("not found"))));
    const r = ours(url);
    if (!r) return pass();
    const path = pathOf(url) as string;
    const remote = req.socket.remoteAddress;
    if (opts.limiter && !opts.limiter.take(remote)) {
      opts.onRefused?.("throttled");
      return send(res, throttled(), { close: true });
    }
    void (async () => {
      try {
        let body: Buffer | undefined;
        const method = (req.method ?? "GET").toUpperCase();
        if (r.kind !== "bootstrap" && (method === "POST" || method === "PUT")) {
          // The token is checked before a body is read from anyone.
          const denied = service.checkToken(header(req, "authorization"));
          if (denied) return send(res, denied, { close: true });
          const read = await readRequestBody(req, { maxBytes: limit });
          if (!read.ok) {
            opts.onRefused?.(read.reason);
            if (read.reason === "aborted") return void req.socket.destroy();
            const answer =
              read.reason === "encoding"
                ? json(415, errorJson(M.contentType, "only identity content coding is accepted"))
                : read.reason === "unreadable"
                  ? json(400, errorJson(M.validation, M.malformed))
                  : json(413, errorJson(M.validation, `request body larger than ${limit} bytes`));
            return send(res, answer, { close: true, cut: read.cut });
          }
          body = read.body;
        }
        const answer = await service.handle({
          method,
          path,
          authorization: header(req, "authorization"),
          contentType: header(req, "content-type"),
          body,
          remote,
        });
        if (!answer) return pass();
        if (answer.status === 429) {
          opts.onRefused?.("throttled");
          if (!Object.keys(answer.headers).some((h) => h.toLowerCase() === "retry-after"))
            answer.headers["retry-after"] = retryAfter;
        }
        send(res, answer);
      } catch {
        send(res, json(500, errorJson("internal error")), { close: true });
      }
    })();
  };
  return Object.assign(handler, { claims: (_method: string, url: string) => ours(url) !== undefined });
}

function header(req: IncomingMessage, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v[0] : v;
}
