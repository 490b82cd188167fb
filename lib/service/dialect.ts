/**
 * The serving side's one seam. Every serving dialect (ThingsBoard, Mainflux bootstrap,
 * plgd DPS, and those to come) implements ServingDialect and gets one ServiceContext:
 * the registry in the credential store, the flow's decision, rate limits and failure
 * counting, audit and the clock. What a serving node offers the flow (a decision output,
 * limits, an audit output) therefore reaches every protocol the same way. A new protocol
 * is a folder under lib/dialects/ with one ServingDialect, listed in lib/dialects/index.ts;
 * lib/service/context.ts builds the
 * context from plain settings, and nodes/shared/serving-node.ts gives it to the dialect.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import type { DialectId } from "../model/result";
import type { ProvisioningRequest } from "../model/service";
import type { StoreBackend } from "../stores/backend";
import type { ServiceAuditEvent } from "./audit";
import type { FailureLimiter } from "./failure-limit";
import type { FlowAnswer } from "./pending";
import type { RateLimiter } from "./rate-limit";

/** What a serving dialect gets from its node; the same for every dialect. */
export interface ServiceContext {
  readonly dialect: DialectId;
  /** The credential store the dialect's registry lives in (memory when none is configured). */
  readonly store: StoreBackend;
  /**
   * The flow's decision on a valid request, when the node asks the flow; absent, the
   * dialect's own rules decide. No answer in time is a refusal.
   */
  readonly decide?: (request: ProvisioningRequest) => Promise<FlowAnswer>;
  /** How long decide() waits for the flow at most (absent when the flow does not decide). */
  readonly decideTimeoutMs?: number;
  /** Per-remote flood protection, shared by every transport of the node. */
  readonly limiter?: RateLimiter;
  /** Failed proofs per address and account: slowed, then locked. */
  readonly failures?: FailureLimiter;
  /** Every outcome, provisioned or not; never a secret. */
  readonly audit: (event: ServiceAuditEvent) => void;
  /** Milliseconds since the epoch; injectable for tests. */
  readonly now: () => number;
  /**
   * Mounts a request handler on the host's HTTP server (Node-RED's httpNode) and returns
   * the function that takes it off again; undefined when the host serves no HTTP.
   */
  readonly mountHttp?: (
    mount: HttpMount,
    handler: HttpHandler,
    claim?: HttpClaim,
  ) => (() => void) | undefined;
  /** A peer was refused before its request was read (for the node's log summary; no peer bytes). */
  readonly refused: (reason: string) => void;
  /** A transport's connection changed (an attached MQTT client reconnecting), for the node's status. */
  readonly transportState?: (state: TransportState, detail?: string) => void;
}

/** `post` serves one path; `use` sees every request first and calls `next` for others. */
export type HttpMount = { post: string } | "use";
/** Which requests a handler serves, so that no body parser in front of it reads their bodies. */
export type HttpClaim = (method: string, url: string) => boolean;
export type HttpHandler = (req: IncomingMessage, res: ServerResponse, next?: (err?: unknown) => void) => void;
/** The states of a client connection a service keeps to someone else's broker. */
export type TransportState = "connected" | "reconnecting" | "offline" | "error";

/** How many requests a running service answered, for the node's status. */
export interface ServiceCounts {
  provisioned: number;
  refused: number;
  /** Addresses and accounts locked right now after failed attempts. */
  locked: number;
}

/** A serving dialect's running service: listeners are started and stopped by its node. */
export interface RunningService {
  /** Short labels of what listens, for the node's status: "mqtt :1883", "coap :5683", "http". */
  readonly labels: readonly string[];
  counts(): ServiceCounts;
  /**
   * Management by message (add, revoke, list, ...): the result names its operation; a
   * refusal throws a ProvisioningError with a secret-free message.
   */
  manage?(operation: unknown, payload: unknown): Promise<{ operation: string }>;
  /** Closes listeners and waits for requests under way; the registry stays in the store. */
  stop(): Promise<void>;
}

export interface ServingDialect<Settings, Service extends RunningService> {
  readonly id: DialectId;
  /** A sentence naming what cannot work in the settings, before anything listens. */
  check(settings: Settings): string | undefined;
  /**
   * Where the failure limiter's account goes in a "locked" audit event: a ThingsBoard
   * profile name, a Mainflux external id, a plgd device id.
   */
  readonly lockAccount: "profile" | "deviceName" | "deviceId";
  /** Builds the service core and starts its listeners. */
  start(settings: Settings, ctx: ServiceContext): Promise<Service>;
}
