/**
 * Builds the one ServiceContext (lib/service/dialect.ts) a serving dialect gets, from
 * plain settings: the store (memory when none), the per-remote rate limit, the
 * failed-attempt guard, the flow's decision with its timeout, the audit sink, HTTP
 * mounting and the refusal counter. No Node-RED here: nodes/shared/serving-node.ts feeds
 * it from a dialog, and the contract tests feed it directly.
 */

import type { DialectId } from "../model/result";
import type { ProvisioningRequest } from "../model/service";
import type { StoreBackend } from "../stores/backend";
import { MemoryBackend } from "../stores/memory";
import { lockAuditEvent, type ServiceAuditEvent } from "./audit";
import type { HttpClaim, HttpHandler, HttpMount, ServiceContext, TransportState } from "./dialect";
import { FailureLimiter, type FailureLimitOptions } from "./failure-limit";
import { PendingDecisions, type AnswerResult } from "./pending";
import { DEFAULT_RATE_LIMIT, RateLimiter, type RateLimitOptions } from "./rate-limit";

export interface ServiceSettings {
  dialect: DialectId;
  /** The registry's store; a fresh memory store when absent (forgotten at restart). */
  store?: StoreBackend;
  /** Per-remote rate limit; DEFAULT_RATE_LIMIT when absent, none when false. */
  rateLimit?: RateLimitOptions | false;
  /** The failed-attempt guard's options (failureLimitOptions() reads a dialog); defaults when absent. */
  failureLimit?: Partial<FailureLimitOptions>;
  /** Where the guard's account goes in a "locked" audit event (ServingDialect.lockAccount). */
  lockAccount: "profile" | "deviceName" | "deviceId";
  /**
   * When set, every valid request waits for the flow: `ask` hands the request out under a
   * correlation id, `answer()` of the built context takes the flow's reply; no reply
   * within `timeoutMs` is a refusal.
   */
  decide?: { timeoutMs: number; ask: (correlationId: string, request: ProvisioningRequest) => void };
  /** Every audit event, locks included. A throwing sink never changes a device's answer. */
  audit?: (event: ServiceAuditEvent) => void;
  mountHttp?: (mount: HttpMount, handler: HttpHandler, claim?: HttpClaim) => (() => void) | undefined;
  /** A peer refused before its request was read (a fixed reason word, never peer bytes). */
  refused?: (reason: string) => void;
  transportState?: (state: TransportState, detail?: string) => void;
  now?: () => number;
}

export interface BuiltServiceContext {
  readonly ctx: ServiceContext;
  /** Delivers the flow's answer for one correlation id ("unknown" when decisions are off). */
  answer(correlationId: unknown, payload: unknown): AnswerResult;
  /** Requests waiting for the flow right now. */
  readonly waiting: number;
  /** Refuses every request still waiting for the flow (the node is closing). */
  cancelDecisions(reason: string): void;
}

function safe<A extends unknown[]>(f: ((...a: A) => void) | undefined): (...a: A) => void {
  return (...a) => {
    try {
      f?.(...a);
    } catch {
      // A consumer's bug (the flow, a log) must not change what a device is answered.
    }
  };
}

export function buildServiceContext(s: ServiceSettings): BuiltServiceContext {
  const now = s.now ?? Date.now;
  const audit = safe(s.audit);
  const pending = s.decide ? new PendingDecisions(s.decide.timeoutMs) : undefined;
  const ask = s.decide?.ask;
  const rate = s.rateLimit === undefined ? DEFAULT_RATE_LIMIT : s.rateLimit;
  const store = s.store ?? new MemoryBackend();
  const ctx: ServiceContext = {
    dialect: s.dialect,
    store,
    decide:
      pending && ask
        ? (request) => {
            const { correlationId, answer } = pending.ask();
            try {
              ask(correlationId, request);
            } catch {
              // The request could not reach the flow: it stays open until the timeout refuses it.
            }
            return answer;
          }
        : undefined,
    decideTimeoutMs: pending && ask ? s.decide?.timeoutMs : undefined,
    limiter: rate === false ? undefined : new RateLimiter({ ...rate }, now),
    // On a shared store (PostgreSQL) the instances over it keep one failure budget.
    failures: new FailureLimiter(
      s.failureLimit ?? {},
      now,
      (lock) => audit(lockAuditEvent(s.dialect, lock, s.lockAccount, new Date(now()))),
      { backend: store, service: s.dialect },
    ),
    audit,
    now,
    mountHttp: s.mountHttp,
    refused: safe(s.refused),
    transportState: s.transportState ? safe(s.transportState) : undefined,
  };
  return {
    ctx,
    answer: (correlationId, payload) => pending?.answer(correlationId, payload) ?? "unknown",
    get waiting() {
      return pending?.size ?? 0;
    },
    cancelDecisions: (reason) => pending?.cancelAll(reason),
  };
}
