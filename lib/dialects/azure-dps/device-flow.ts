/**
 * Azure DPS device side: what one attempt does with the service's answers, the same over
 * MQTT and HTTPS (each transport only carries a step and brings back its answer). The
 * rules are those of Microsoft's Node SDK (azure-iot-sdk-node provisioning/device/src/
 * polling_state_machine.ts and provisioning/transport/{mqtt,http}/src): a status below 300
 * is read by its body's `status` ("assigning" polls the operation after retry-after,
 * default 2 s; "assigned" ends; "failed", "disabled", "unassigned" are errors; a body
 * without status is an error), 429 and every 5xx are retried after retry-after, 300-428
 * are final errors with Azure's error body.
 */
import type { ConnectionOptions } from "node:tls";
import { finalError, transientError, type ErrorCode, type ProvisioningError } from "../../model/errors";
import { abortableDelay, MAX_RETRY_AFTER_MS } from "../../retry/run";
import { parseJsonBounded } from "../../util/json-limits";
import type { RegistrationState } from "./wire";

export type DpsStep = { kind: "register" } | { kind: "status"; operationId: string };

export interface DpsAnswer {
  /** The HTTP status (MQTT: the `{status}` of the response topic). */
  status: number;
  /** What the service asked to wait (retry-after), in ms. */
  retryAfterMs?: number;
  body: Buffer;
}

/** One transport's way to carry a step to the service and bring back its answer. */
export interface DpsExchange {
  send(step: DpsStep): Promise<DpsAnswer>;
}

/** A transport's connection for one attempt. */
export interface DpsSession extends DpsExchange {
  /** Ends the connection; resolves once it is gone. */
  close(): Promise<void>;
}

export interface SessionOptions {
  /** The SAS token (symmetric keys); none with X.509. */
  password?: string;
  tls?: ConnectionOptions;
  /** Fires when the attempt is over (its time, or the caller's abort). */
  signal: AbortSignal;
  /** The attempt's time: the CONNACK is awaited no longer. */
  timeoutMs: number;
  onRequesting?: () => void;
}

/** The Node SDK's wait between polls when the service names none (ProvisioningDeviceConstants.defaultPollingInterval). */
export const DEFAULT_POLL_MS = 2000;
/** Requests one attempt makes at most (register, polls, retries after 429 and 5xx). */
export const MAX_REQUESTS = 64;

export interface FlowOptions {
  /** Where the service is, as a person reads it. */
  where: string;
  /** When the attempt's time is up (ms since the epoch). */
  deadline: number;
  signal: AbortSignal;
  maxAnswerBytes: number;
  now?: () => number;
}

/** Control characters, which a peer's words lose before they go into a message. */
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f]+/gu;

/** A peer's words, short and on one line, for an error message. */
function peerText(v: unknown, max = 200): string | undefined {
  if (typeof v !== "string" && typeof v !== "number") return undefined;
  const s = String(v).replace(CONTROL, " ").trim();
  if (s === "") return undefined;
  return s.length > max ? `${s.slice(0, max)}...` : s;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function parseBody(a: DpsAnswer, o: FlowOptions): unknown {
  const text = a.body.toString("utf8").trim();
  if (text === "") return undefined;
  const parsed = parseJsonBounded(text, { maxBytes: o.maxAnswerBytes });
  if (!parsed.ok) {
    if (a.body.length > o.maxAnswerBytes)
      throw finalError("TOO_LARGE", `${o.where} sent an answer larger than ${o.maxAnswerBytes} bytes`);
    throw finalError("INVALID_ANSWER", `the answer from ${o.where} (${a.status}): ${parsed.error}`, {
      status: a.status,
    });
  }
  return parsed.value;
}

/** The neutral code of a DPS error status (300-428). */
function codeOfStatus(status: number): ErrorCode {
  if (status === 401 || status === 403) return "DENIED";
  if (status === 404) return "NOT_FOUND";
  if (status === 409 || status === 412) return "CONFLICT";
  if (status === 413) return "TOO_LARGE";
  if (status === 400 || status === 422) return "INVALID";
  return "REFUSED";
}

/** A final error for 300-428, with Azure's errorCode and message (its error body) when it sent them. */
export function dpsErrorFailure(status: number, body: unknown, where: string): ProvisioningError {
  const b = isObject(body) ? body : {};
  const errorCode = peerText(b.errorCode, 16);
  const message = peerText(b.message);
  const said = message ? `: ${message}` : "";
  const code = errorCode ? ` (errorCode ${errorCode})` : "";
  return finalError(codeOfStatus(status), `${where} answered ${status}${said}${code}`, { status });
}

/** What a body says, for status below 300. */
type Reading = { next: "done"; state: RegistrationState } | { next: "poll"; operationId: string };

function readOperation(status: number, body: unknown, where: string): Reading {
  if (!isObject(body) || typeof body.status !== "string")
    throw finalError("INVALID_ANSWER", `the answer from ${where} (${status}) has no registration status`, {
      status,
    });
  const st = body.status;
  const state = isObject(body.registrationState) ? body.registrationState : undefined;
  const errorCode = peerText(state?.errorCode, 16);
  const errorMessage = peerText(state?.errorMessage);
  const why = [errorMessage, errorCode ? `errorCode ${errorCode}` : undefined].filter(Boolean).join(", ");
  const because = why ? ` (${why})` : "";
  switch (st) {
    case "assigned": {
      if (!state || typeof state.assignedHub !== "string" || state.assignedHub === "")
        throw finalError("INVALID_ANSWER", `${where} answered "assigned" without an assigned hub`, {
          status: st,
        });
      if (typeof state.deviceId !== "string" || state.deviceId === "")
        throw finalError("INVALID_ANSWER", `${where} answered "assigned" without a device id`, {
          status: st,
        });
      return { next: "done", state: state as unknown as RegistrationState };
    }
    case "assigning": {
      const op = body.operationId;
      if (typeof op !== "string" || op === "" || op.length > 256)
        throw finalError("INVALID_ANSWER", `${where} answered "assigning" without an operation id`, {
          status: st,
        });
      return { next: "poll", operationId: op };
    }
    case "failed":
      throw finalError("REFUSED", `${where}: the registration failed${because}`, { status: st });
    case "disabled":
      throw finalError("DENIED", `${where}: the enrollment or registration is disabled${because}`, {
        status: st,
      });
    case "unassigned":
      throw finalError("REFUSED", `${where}: the device was not assigned to a hub${because}`, { status: st });
    default:
      throw finalError(
        "INVALID_ANSWER",
        `${where} answered the unknown registration status ${peerText(st, 32) ?? "(empty)"}`,
        { status },
      );
  }
}

/**
 * Registers, polls while the service assigns, and returns the registration state once
 * assigned. Waits are capped by the attempt's remaining time; a throttled or failing
 * service whose wait does not fit is left to the conductor (BUSY / UNAVAILABLE with
 * the retry-after it asked for).
 */
export async function runRegistration(ex: DpsExchange, o: FlowOptions): Promise<RegistrationState> {
  const now = o.now ?? Date.now;
  let step: DpsStep = { kind: "register" };
  for (let n = 1; ; n++) {
    // A service that answers "wait 0 s" for ever would have us ask without pause until
    // the attempt's end; a bounded number of requests leaves the rest to the conductor.
    if (n > MAX_REQUESTS)
      throw transientError(
        "TIMEOUT",
        `${o.where} did not finish the registration in ${MAX_REQUESTS} requests`,
      );
    const a = await ex.send(step);
    // The Node SDK retries every status from 429 up (mqtt.ts, http.ts: `status >= 429`).
    if (a.status >= 429) {
      const wait = Math.min(a.retryAfterMs ?? DEFAULT_POLL_MS, MAX_RETRY_AFTER_MS);
      if (now() + wait < o.deadline) {
        await abortableDelay(wait, o.signal);
        continue;
      }
      const asked = a.retryAfterMs === undefined ? {} : { retryAfterMs: wait };
      if (a.status < 500)
        throw transientError("BUSY", `${o.where} is throttling (${a.status}), try later`, {
          status: a.status,
          ...asked,
        });
      throw transientError("UNAVAILABLE", `${o.where} answered ${a.status}, try later`, {
        status: a.status,
        ...asked,
      });
    }
    const body = parseBody(a, o);
    if (a.status >= 300) throw dpsErrorFailure(a.status, body, o.where);
    if (a.status < 200)
      throw finalError("INVALID_ANSWER", `${o.where} answered ${a.status}`, { status: a.status });
    const r = readOperation(a.status, body, o.where);
    if (r.next === "done") return r.state;
    // Poll after retry-after, but not past the attempt's end: the timer ends it there.
    const wait = Math.max(0, Math.min(a.retryAfterMs ?? DEFAULT_POLL_MS, o.deadline - now()));
    await abortableDelay(wait, o.signal);
    step = { kind: "status", operationId: r.operationId };
  }
}
