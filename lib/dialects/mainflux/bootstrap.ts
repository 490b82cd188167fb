/**
 * The bootstrap answer: GET /things/bootstrap[/secure]/{external_id}, as upstream's
 * bootstrap service answers it (mainflux/mainflux, bootstrap/api/transport.go and
 * bootstrap/service.go), in steps: the request's form, the failed-attempt guard, the
 * lookup, the key in its mode (plain, Mainflux's AES-CFB secure mode, or the GCM mode of
 * this package), the comparison, the flow's decision, and the answer.
 *
 * Upstream order is kept: a missing key is 401 before anything is read; an unknown
 * external id is 404 before the key is looked at; a key (or its encryption) that does
 * not match is 403. A configuration's state does not matter to bootstrap upstream
 * (it only connects the thing to its channels), so it does not here either.
 */
import type { ServiceAuditEvent } from "../../service/audit";
import type { FailureLimiter, LimitVerdict } from "../../service/failure-limit";
import type { FlowAnswer } from "../../service/pending";
import type { ProvisioningRequest } from "../../model/service";
import { secretsEqual } from "../../util/secrets";
import { json, JSON_TYPE, type Answer } from "./answers";
import {
  cfbEncrypt,
  cfbExternalKey,
  gcmOpenRequest,
  gcmParts,
  gcmSealResponse,
  GCM_DEFAULT_WINDOW_S,
  GCM_SCHEME,
  KeyError,
  THING_PREFIX,
  type ReplayGuard,
} from "./crypto";
import type { ConfigRegistry, StoredConfig } from "./registry";
import { answerJson, errorJson, MESSAGES as M, type FieldGeneration } from "./wire";

export interface GcmServerKey {
  keyId: string;
  key: Buffer;
  /** Seconds either side of now an issued-at time may be (default 300). */
  windowSeconds?: number;
}

/** What the bootstrap answer is made from. */
export interface BootstrapSettings {
  registry: ConfigRegistry;
  /** Mainflux's secure mode (AES-CFB); off when absent. */
  cfbKey?: Buffer;
  /** The stronger, non-Mainflux mode; off when absent. */
  gcm?: GcmServerKey;
  /** Serve the plain endpoint (default true, as upstream). */
  allowPlain?: boolean;
  /** Field names of the answers: "thing" (current, default) or "mainflux" (older). */
  fields?: FieldGeneration;
  /**
   * Brute-force protection: failures per address and per external id (known id, wrong
   * key), slowing then locking (429 with Retry-After). Absent: counting is off.
   */
  failures?: FailureLimiter;
  /**
   * The flow's decision (ServiceContext.decide): a request with the right key waits for
   * it before the configuration is sent; a refusal is upstream's 403 for a wrong key.
   */
  decide?: (request: ProvisioningRequest) => Promise<FlowAnswer>;
}

export type AuditFields = {
  reason?: string;
  detail?: string;
  deviceName?: string;
  deviceId?: string;
  remote?: string;
  delayedMs?: number;
  retryAfterS?: number;
};

/** The service the answer is given for: its settings, replay memory, clock and audit. */
export interface BootstrapDeps {
  readonly settings: BootstrapSettings;
  readonly replay: ReplayGuard;
  now(): number;
  audit(outcome: ServiceAuditEvent["outcome"], fields: AuditFields, transport: string): void;
}

/** One request on its way through the steps. */
interface Attempt {
  deps: BootstrapDeps;
  secure: boolean;
  externalId: string;
  remote?: string;
  transport: string;
  delayedMs?: number;
  /** A failure being counted (in a shared store): the answer waits for it. */
  counted?: Promise<void>;
}

/** A key opened from the request, and how the answer is sealed in that mode. */
interface OpenedKey {
  key: string;
  mode: "plain" | "secure" | "gcm";
  seal?: (plain: Buffer) => Answer;
  /** The GCM request id, single use until its window has passed. */
  replay?: { id: string; untilMs: number };
}

function refuse(
  a: Attempt,
  status: number,
  message: string,
  error: string,
  reason: string,
  detail: string,
): Answer {
  a.deps.audit(
    "refused",
    { reason, detail, deviceName: a.externalId || undefined, remote: a.remote, delayedMs: a.delayedMs },
    a.transport,
  );
  return json(status, errorJson(message, error));
}

/** The store could not be read or written: 503, audited with the store's message (never a secret). */
function storeUnavailable(a: Attempt, externalId: string, err: unknown): Answer {
  a.deps.audit(
    "error",
    { reason: "store", detail: (err as Error).message, deviceName: externalId, remote: a.remote },
    a.transport,
  );
  return json(503, errorJson(M.readConfig, "the configuration store is unavailable"));
}

/** A key that does not open or match: counted against the address and the id. */
function wrongKey(a: Attempt, status: number, message: string, why: string, detail = why): Answer {
  a.counted = a.deps.settings.failures?.failed({ remote: a.remote, account: a.externalId });
  return refuse(a, status, message, why, "denied", detail);
}

/**
 * 429 with Retry-After (RFC 6585 section 4, RFC 9110 section 10.2.3): upstream has no
 * such answer; a client written for it sees an HTTP error and retries later.
 */
function limited(a: Attempt, v: Exclude<LimitVerdict, { action: "go" }>): Answer {
  const retryAfterS = Math.max(1, Math.ceil(v.retryAfterMs / 1000));
  const locked = v.action === "locked";
  const detail = !locked
    ? "too many requests waiting after failed attempts"
    : v.subject === "account"
      ? "too many failed attempts for this external id from this address"
      : "too many failed attempts from this address";
  a.deps.audit(
    v.action,
    { reason: v.action, detail, deviceName: a.externalId || undefined, remote: a.remote, retryAfterS },
    a.transport,
  );
  return json(429, errorJson(M.validation, locked ? "too many failed attempts" : "too many requests"), {
    "retry-after": String(retryAfterS),
  });
}

/** What the Authorization header presents: `Thing <key>`, or the GCM scheme on the secure path. */
function presentedKey(
  secure: boolean,
  authorization: string | undefined,
): { gcm: boolean; presented: string } {
  const auth = authorization ?? "";
  const gcm = secure && auth.startsWith(GCM_SCHEME);
  const presented = gcm
    ? auth.slice(GCM_SCHEME.length)
    : auth.startsWith(THING_PREFIX)
      ? auth.slice(THING_PREFIX.length)
      : "";
  return { gcm, presented };
}

/** Who the guard counts: the address, and the external id once it is known to exist. */
function subjectOf(a: Attempt, known: boolean) {
  // Only an id that exists is an account: made-up ids cannot fill the limiter's map.
  return { remote: a.remote, account: known ? a.externalId : undefined };
}

/** The guard once the configuration is known: locked, too many waiting, or a slowed wait. */
async function slowDown(a: Attempt, known: boolean): Promise<Answer | undefined> {
  const f = a.deps.settings.failures;
  if (!f) return undefined;
  const subject = subjectOf(a, known);
  await f.refresh(subject); // the budget shared with other instances (a shared store)
  const v = f.check(subject);
  if (v.action !== "go") return limited(a, v);
  if (v.delayMs <= 0) return undefined;
  if (!(await f.wait(subject, v.delayMs)))
    return limited(a, { action: "throttled", retryAfterMs: v.delayMs });
  a.delayedMs = v.delayMs;
  return undefined;
}

/**
 * The guard's last word, synchronous: called with nothing awaited between it and the
 * key's comparison (and its count), so requests waiting in parallel cannot overshoot
 * the lock.
 */
function lastCheck(a: Attempt): Answer | undefined {
  const v = a.deps.settings.failures?.check(subjectOf(a, true));
  return v && v.action !== "go" ? limited(a, v) : undefined;
}

/** The GCM mode: key id, time window and replay checked, the answer sealed to the request. */
function openGcm(a: Attempt, presented: string): OpenedKey | Answer {
  const g = a.deps.settings.gcm;
  if (!g)
    return refuse(
      a,
      403,
      M.externalKeySecure,
      "the GCM mode is not enabled on this service",
      "denied",
      "gcm off",
    );
  try {
    const { keyId, token } = gcmParts(presented);
    if (keyId !== g.keyId) throw new KeyError("unknown key id");
    const opened = gcmOpenRequest(g.key, keyId, a.externalId, token);
    const window = (g.windowSeconds ?? GCM_DEFAULT_WINDOW_S) * 1000;
    const now = a.deps.now();
    const iat = opened.issuedAt * 1000;
    if (iat < now - window || iat > now + window)
      throw new KeyError("the request was issued outside the accepted time window");
    return {
      key: opened.externalKey,
      mode: "gcm",
      // Claimed once the key compared equal: a replay carries the right key, and the claim
      // (a store write on a shared store) is then the one await past the comparison.
      replay: { id: `${keyId}|${opened.requestId}`, untilMs: iat + window },
      seal: (plain) => ({
        status: 200,
        headers: { "content-type": "application/octet-stream", "x-bootstrap-key-id": keyId },
        body: gcmSealResponse(g.key, keyId, a.externalId, opened.requestId, plain),
      }),
    };
  } catch (err) {
    return wrongKey(
      a,
      403,
      M.externalKeySecure,
      err instanceof KeyError ? err.message : "the request cannot be read",
    );
  }
}

/** Mainflux's secure mode: the key AES-CFB encrypted (mainflux/mainflux, bootstrap/service.go). */
function openCfb(a: Attempt, presented: string): OpenedKey | Answer {
  const k = a.deps.settings.cfbKey;
  if (!k)
    return refuse(
      a,
      403,
      M.externalKeySecure,
      "secure bootstrap is not enabled on this service",
      "denied",
      "secure off",
    );
  try {
    return {
      key: cfbExternalKey(k, presented),
      mode: "secure",
      seal: (plain) => ({ status: 200, headers: { "content-type": JSON_TYPE }, body: cfbEncrypt(k, plain) }),
    };
  } catch (err) {
    return wrongKey(
      a,
      403,
      M.externalKeySecure,
      err instanceof KeyError ? err.message : "the key cannot be decrypted",
    );
  }
}

/** The configuration as upstream's bootstrap answer, in the configured field names. */
function configurationAnswer(cfg: StoredConfig, fields: FieldGeneration | undefined): Buffer {
  return Buffer.from(
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
      fields,
    ) + "\n",
    "utf8",
  );
}

/** The flow's decision on a request whose key matched; undefined when it may go on. */
async function flowDecision(a: Attempt, cfg: StoredConfig): Promise<Answer | undefined> {
  const decide = a.deps.settings.decide;
  if (!decide) return undefined;
  const answer = await decide({
    dialect: "mainflux",
    transport: a.transport,
    deviceName: a.externalId,
    deviceId: cfg.thing_id,
    proof: "external-key",
    remote: a.remote,
  });
  if (answer.approve) return undefined;
  const detail = answer.timedOut ? "no decision in time" : (answer.reason ?? "refused by the flow");
  // The 403 upstream gives a key it does not accept: a device cannot tell the two apart.
  return refuse(a, 403, a.secure ? M.externalKeySecure : M.externalKey, "", "denied", detail);
}

/** Answers one bootstrap request. */
export async function answerBootstrap(
  deps: BootstrapDeps,
  secure: boolean,
  externalId: string | undefined,
  authorization: string | undefined,
  remote?: string,
): Promise<Answer> {
  const a: Attempt = {
    deps,
    secure,
    externalId: externalId ?? "",
    remote,
    transport: secure ? "http+secure" : "http",
  };
  const answer = await answerAttempt(a, externalId, authorization);
  // A failure counted in a shared store is in before the answer goes out, so the next
  // attempt, at any instance, finds it.
  await a.counted;
  return answer;
}

async function answerAttempt(
  a: Attempt,
  externalId: string | undefined,
  authorization: string | undefined,
): Promise<Answer> {
  const { deps, secure, remote } = a;
  const s = deps.settings;
  if (!externalId) return refuse(a, 400, M.validation, M.missingId, "invalid", "no external id");
  const { gcm, presented } = presentedKey(secure, authorization);
  if (presented.length === 0) return refuse(a, 401, M.validation, M.bearerKey, "invalid", "no external key");
  if (!secure && s.allowPlain === false)
    return refuse(
      a,
      403,
      M.externalKey,
      "plain bootstrap is disabled on this service",
      "denied",
      "plain disabled",
    );
  // A locked address is refused before anything is read.
  await s.failures?.refresh({ remote });
  const early = s.failures?.check({ remote });
  if (early && early.action !== "go") return limited(a, early);
  let cfg: StoredConfig | undefined;
  try {
    cfg = await s.registry.get(externalId);
  } catch (err) {
    return storeUnavailable(a, externalId, err);
  }
  const held = await slowDown(a, cfg !== undefined);
  if (held) return held;
  // An unknown id is not counted: the external id is no secret (often the MAC address),
  // and a device polls with it until its configuration is added (upstream's agent
  // retries); locking it out would keep it from ever bootstrapping. Guesses of the key
  // are what is counted.
  if (!cfg) return refuse(a, 404, M.readConfig, M.notFound, "not-found", "unknown external id");

  // From here to the comparison nothing awaits.
  const last = lastCheck(a);
  if (last) return last;
  const opened: OpenedKey | Answer = !secure
    ? { key: presented, mode: "plain" }
    : gcm
      ? openGcm(a, presented)
      : openCfb(a, presented);
  if (!("key" in opened)) return opened;
  if (!secretsEqual(opened.key, cfg.external_key))
    return wrongKey(a, 403, secure ? M.externalKeySecure : M.externalKey, "", "external key mismatch");
  if (opened.replay) {
    let fresh: boolean;
    try {
      fresh = await deps.replay.claim(opened.replay.id, opened.replay.untilMs, deps.now());
    } catch (err) {
      return storeUnavailable(a, externalId, err);
    }
    if (!fresh)
      return wrongKey(a, 403, M.externalKeySecure, "the request id was already used (replayed request)");
  }

  const refused = await flowDecision(a, cfg);
  if (refused) return refused;
  const plain = configurationAnswer(cfg, s.fields);
  deps.audit(
    "provisioned",
    { deviceName: externalId, deviceId: cfg.thing_id, remote, detail: opened.mode, delayedMs: a.delayedMs },
    a.transport,
  );
  return opened.seal
    ? opened.seal(plain)
    : { status: 200, headers: { "content-type": JSON_TYPE }, body: plain };
}
