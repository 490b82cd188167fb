/**
 * Decisions made by the flow: each request waits under a correlation id until the flow
 * answers or the timeout passes. No answer is a refusal, so a broken flow never lets a
 * device in.
 */

import { randomUUID } from "node:crypto";
import type { Credentials } from "../model/result";
import { setLongTimeout, type LongTimer } from "../util/long-timer";

export type FlowAnswer =
  | {
      approve: true;
      credentials?: Partial<Credentials>;
      attributes?: Record<string, unknown>;
      /**
       * Azure DPS custom allocation, as Azure's webhook answers: the hub to assign (one of
       * the linked hubs), the initial twin, and the payload handed to the device.
       */
      iotHubHostName?: string;
      initialTwin?: unknown;
      payload?: unknown;
    }
  | { approve: false; reason?: string; timedOut?: boolean };

export type AnswerResult = "answered" | "unknown" | "invalid";

interface Waiting {
  resolve: (a: FlowAnswer) => void;
  timer: LongTimer;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Reads a flow's answer; undefined when it is not one (approve must be a boolean). */
export function parseFlowAnswer(payload: unknown): FlowAnswer | undefined {
  if (!isPlainObject(payload) || typeof payload.approve !== "boolean") return undefined;
  if (!payload.approve) {
    return { approve: false, reason: typeof payload.reason === "string" ? payload.reason : undefined };
  }
  const out: FlowAnswer = { approve: true };
  if (payload.credentials !== undefined) {
    if (!isPlainObject(payload.credentials)) return undefined;
    out.credentials = payload.credentials as Partial<Credentials>;
  }
  if (payload.attributes !== undefined) {
    if (!isPlainObject(payload.attributes)) return undefined;
    out.attributes = payload.attributes;
  }
  if (payload.iotHubHostName !== undefined) {
    if (typeof payload.iotHubHostName !== "string") return undefined;
    out.iotHubHostName = payload.iotHubHostName;
  }
  if (payload.initialTwin !== undefined) out.initialTwin = payload.initialTwin;
  if (payload.payload !== undefined) out.payload = payload.payload;
  return out;
}

export class PendingDecisions {
  private readonly waiting = new Map<string, Waiting>();

  constructor(private readonly timeoutMs: number) {}

  get size(): number {
    return this.waiting.size;
  }

  /** Opens a decision; `answer` settles with the flow's answer or a timed-out refusal. */
  ask(): { correlationId: string; answer: Promise<FlowAnswer> } {
    const correlationId = randomUUID();
    const answer = new Promise<FlowAnswer>((resolve) => {
      // The timeout is the user's; a long one must not overflow into an instant refusal.
      const timer = setLongTimeout(() => {
        this.waiting.delete(correlationId);
        resolve({ approve: false, reason: "no decision in time", timedOut: true });
      }, this.timeoutMs);
      this.waiting.set(correlationId, { resolve, timer });
    });
    return { correlationId, answer };
  }

  /** Delivers the flow's answer for one correlation id. */
  answer(correlationId: unknown, payload: unknown): AnswerResult {
    if (typeof correlationId !== "string") return "unknown";
    const w = this.waiting.get(correlationId);
    if (!w) return "unknown";
    const parsed = parseFlowAnswer(payload);
    if (!parsed) return "invalid";
    this.waiting.delete(correlationId);
    w.timer.cancel();
    w.resolve(parsed);
    return "answered";
  }

  /** Refuses every open decision (node closing). */
  cancelAll(reason: string): void {
    for (const [id, w] of this.waiting) {
      w.timer.cancel();
      w.resolve({ approve: false, reason });
      this.waiting.delete(id);
    }
  }
}
