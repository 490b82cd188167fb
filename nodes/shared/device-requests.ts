/**
 * What every device-side node does with a message: run one abortable request through
 * the conductor (lib/client/conductor.ts: identity, reuse, retry, save) with the node's
 * dialect, send the neutral result as msg.payload, or report the failure as a red status
 * and done(err) with the shared vocabulary's code (Catch nodes see msg.error.code, and,
 * where the peer said something in its own words, msg.errorStatus). A request may start
 * at deploy, like inject's "once"; on close every request under way is aborted and
 * waited for.
 */
import type { ConnectionOptions } from "node:tls";
import type { Node, NodeAPI, NodeMessage, NodeMessageInFlow } from "node-red";
import { conduct } from "../../lib/client/conductor";
import type { DeviceDialect } from "../../lib/client/dialect";
import type { EnvLookup } from "../../lib/client/env-ref";
import { asProvisioningError, finalError, ProvisioningError } from "../../lib/model/errors";
import type { ProvisioningResult } from "../../lib/model/result";
import type { RetryPolicy } from "../../lib/retry/policy";
import { AbortedError } from "../../lib/retry/run";
import { localizedError } from "./errors";
import { storeFromConfig } from "./store-ref";

export type DeviceMsg = NodeMessageInFlow & Record<string, unknown>;

/** The status texts of one node type (i18n keys resolved by the node). */
export interface DeviceTexts {
  reused: () => string;
  /** Before each attempt. */
  attempt: () => string;
  /** When the connection is up and the request goes out; defaults to `attempt`. */
  requesting?: () => string;
  /** Before a wait; `attempt` is the number of the attempt that failed, `error` its failure. */
  retrying: (seconds: number, code: string, attempt: number, error: ProvisioningError) => string;
  done: () => string;
  /** A failed request, by its code; `error` says more where a dialect's texts need it. */
  failed: (code: string, error: ProvisioningError) => string;
  saveFailed: (code: string) => string;
}

export interface DeviceNodeOptions<S> {
  dialect: DeviceDialect<S, unknown>;
  /** The dialect's settings for one message (a message property overrides the dialog). */
  settingsFor: (msg: DeviceMsg) => S;
  /** The dialog's identity (device name, external id), after `${ENV}` references. */
  identitySetting?: string;
  env: EnvLookup;
  /** The credential-store-config node's id, when the node has one. */
  storeId?: string;
  storeKeyTemplate?: string;
  /** Whether the message asks the service again even with a stored result. */
  force: (msg: DeviceMsg) => boolean;
  policy: Partial<RetryPolicy>;
  timeoutMs: number;
  /** The TLS options at request time (throws CONFIG when the tls-config is missing). */
  tls: () => ConnectionOptions | undefined;
  texts: DeviceTexts;
  /** Start one request at deploy. */
  onDeploy: boolean;
  /** Settings that cannot work, found at deploy: every message fails with it. */
  configError?: Error;
  /** Sets extra properties of the outgoing message (e.g. its topic). */
  decorate?: (msg: DeviceMsg) => void;
}

/** Runs the node's dialect for every message; see the file's comment. */
export function serveDevice<S>(RED: NodeAPI, node: Node, opts: DeviceNodeOptions<S>): void {
  serveDeviceRequests(node, {
    onDeploy: opts.onDeploy,
    failedText: opts.texts.failed,
    localize: (e) => localizedError(RED, node.type, e) as ProvisioningError,
    decorate: opts.decorate,
    handle: async (msg, signal) => {
      if (opts.configError) throw opts.configError;
      let store;
      try {
        store = storeFromConfig(RED, node.type, opts.storeId);
      } catch (err) {
        throw finalError("CONFIG", (err as Error).message);
      }
      const status = (fill: "blue" | "yellow" | "green", text: string) =>
        node.status({ fill, shape: fill === "green" ? "dot" : "ring", text });
      const messageKey = msg.storeKey;
      const out = await conduct(opts.dialect, opts.settingsFor(msg), {
        identity: { message: msg[opts.dialect.identity.messageProperty], setting: opts.identitySetting },
        env: opts.env,
        store,
        storeKey: typeof messageKey === "string" && messageKey ? messageKey : undefined,
        storeKeyTemplate: opts.storeKeyTemplate,
        force: opts.force(msg),
        policy: opts.policy,
        timeoutMs: opts.timeoutMs,
        tls: opts.tls(),
        signal,
        hooks: {
          onReused: () => status("green", opts.texts.reused()),
          onAttempt: () => status("blue", opts.texts.attempt()),
          onRequesting: () => status("blue", (opts.texts.requesting ?? opts.texts.attempt)()),
          onRetry: ({ attempt, delayMs, error }) => {
            const e = asProvisioningError(error);
            status("yellow", opts.texts.retrying(Math.ceil(delayMs / 1000), e.code, attempt, e));
          },
        },
      });
      if (out.storeError) {
        // The credentials were obtained: a store that fails does not fail the request.
        node.warn(opts.texts.saveFailed(out.storeError.code));
        msg.storeError = out.storeError;
      }
      if (!out.result.reused) status("green", opts.texts.done());
      return out.result;
    },
  });
}

export interface DeviceRequestOptions {
  /** The request for one message; resolves with the result to send. */
  handle: (msg: DeviceMsg, signal: AbortSignal) => Promise<ProvisioningResult>;
  /** The status text shown when a request failed with this code. */
  failedText: (code: string, error: ProvisioningError) => string;
  /** The error given to done(err): the node's sentence for its code before the detail (./errors.ts). */
  localize?: (e: ProvisioningError) => ProvisioningError;
  /** Start one request at deploy. */
  onDeploy: boolean;
  /** Sets extra properties of the outgoing message (e.g. its topic). */
  decorate?: (msg: DeviceMsg) => void;
}

/** One abortable request per message; the failure path of every device node. */
export function serveDeviceRequests(node: Node, opts: DeviceRequestOptions): void {
  const running = new Set<{ ac: AbortController; settled: Promise<void> }>();

  node.on("input", (msg: NodeMessageInFlow, send, done) => {
    const m = msg as DeviceMsg;
    const ac = new AbortController();
    const entry = { ac, settled: Promise.resolve() };
    entry.settled = Promise.resolve()
      .then(() => opts.handle(m, ac.signal))
      .then(
        (result) => {
          m.payload = result;
          opts.decorate?.(m);
          send(m as NodeMessage);
          done();
        },
        (err: unknown) => {
          if (err instanceof AbortedError || ac.signal.aborted) return done();
          const e = asProvisioningError(err);
          node.status({ fill: "red", shape: "ring", text: opts.failedText(e.code, e) });
          done(reportable(opts.localize?.(e) ?? e, m));
        },
      )
      .finally(() => running.delete(entry));
    running.add(entry);
  });

  // Give the flow a moment to start its other nodes (a local service among them).
  const deployTimer = opts.onDeploy ? setTimeout(() => node.receive({}), 100) : undefined;

  node.on("close", (_removed: boolean, done: () => void) => {
    if (deployTimer) clearTimeout(deployTimer);
    const pending = [...running];
    for (const r of pending) r.ac.abort();
    void Promise.allSettled(pending.map((r) => r.settled)).then(() => {
      node.status({});
      done();
    });
  });
}

/**
 * The error given to done(err). Node-RED builds a Catch node's msg.error from it with only
 * `message`, `source` and the error's own `code`, `stack` and `cause` (@node-red/runtime,
 * lib/flows/Flow.js, handleError), beside a clone of the failed message: so the neutral
 * code arrives as msg.error.code, and the peer's own word (ThingsBoard's "FAILURE", an HTTP
 * 403) rides on the message as msg.errorStatus, as the core http request node leaves
 * msg.statusCode on the message it fails.
 */
function reportable(e: ProvisioningError, msg: DeviceMsg): ProvisioningError {
  if (e.status !== undefined) msg.errorStatus = e.status;
  else delete msg.errorStatus;
  return e;
}
