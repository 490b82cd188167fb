/**
 * The lifecycle every serving node shares, whatever its protocol: the store from the
 * dialog (memory when none), the ServiceContext from the dialog's common fields (rate
 * limit, failed-attempt guard, the flow's decision and its timeout), the dialect's start,
 * the status ("serving <transports> · N provisioned, M refused", yellow while something
 * is locked out), refusals summarised in the log, decisions in by msg.correlationId and
 * out on the decision output, audit events and management results out, and a close that
 * stops the listeners, refuses the decisions still open and then calls done.
 */
import type { Node, NodeAPI, NodeMessageInFlow } from "node-red";
import { codeOf } from "../../lib/model/errors";
import { buildServiceContext, type BuiltServiceContext } from "../../lib/service/context";
import type { RunningService, ServingDialect } from "../../lib/service/dialect";
import { failureLimitOptions, type FailureLimitSettings } from "../../lib/service/failure-limit";
import { DEFAULT_RATE_LIMIT } from "../../lib/service/rate-limit";
import type { StoreBackend } from "../../lib/stores/backend";
import { MemoryBackend } from "../../lib/stores/memory";
import { num, warnBadSettings } from "./config";
import { localizedError } from "./errors";
import { httpNodeAuthOn, mountOnHttpNode } from "./http-node";
import { formatCounts, LogSummary } from "./log-summary";
import { storeFromConfig } from "./store-ref";

/** The dialog fields every serving node reads the same way. */
export interface ServingNodeConfig extends FailureLimitSettings {
  store?: string;
  decide?: boolean;
  decideTimeout?: string | number;
  rateLimit?: string | number;
  rateBurst?: string | number;
}

export interface ServingNodeOptions<Settings, Service extends RunningService> {
  RED: NodeAPI;
  node: Node;
  config: ServingNodeConfig;
  /** The node type: the prefix of its i18n keys (status.*, errors.*, warn.*). */
  type: string;
  dialect: ServingDialect<Settings, Service>;
  /** The dialect's settings from the dialog; throws with a sentence the user can act on. */
  settings: () => Settings;
  /** Which output carries what; `count` is the node's number of outputs. */
  outputs: { count: number; decisions?: number; audit: number; manage: number };
  /** Whether the dialog has the rate-limit fields (rateLimit, rateBurst); off when not. */
  rateLimit?: boolean;
  /** More values for the status text (a registry's size, the served modes). */
  statusValues?: (service: Service) => Record<string, string | number>;
  /** Runs once the service listens, before the first status (a configuration from the dialog). */
  afterStart?: (service: Service) => Promise<void>;
}

type Msg = NodeMessageInFlow & Record<string, unknown>;

/** How often the editor is sent a new status at most: counts change per request. */
const STATUS_EVERY_MS = 250;
/** Locks end without a request: the status is looked at again this often while one is on. */
const LOCK_RECHECK_MS = 60_000;

export function runServingNode<Settings, Service extends RunningService>(
  o: ServingNodeOptions<Settings, Service>,
): { started: Promise<Service | undefined> } {
  const { RED, node, config, type } = o;
  const t = (key: string, values?: Record<string, string | number>) => RED._(`${type}.${key}`, values);
  let service: Service | undefined;
  let built: BuiltServiceContext | undefined;
  let closed = false;
  let statusTimer: NodeJS.Timeout | undefined;
  let lockTimer: NodeJS.Timeout | undefined;

  const out = (index: number, msg: Record<string, unknown>) => {
    const msgs: Array<Record<string, unknown> | null> = new Array<null>(o.outputs.count).fill(null);
    msgs[index] = msg;
    node.send(msgs as never);
  };
  // Refusals of peers (cut sessions, bad requests): one log line per minute with counts
  // per reason, never what the peer sent.
  const refusals = new LogSummary((line) =>
    node.warn(
      line.first !== undefined
        ? t("warn.refused-first", { reason: line.first, seconds: line.seconds })
        : t("warn.refused-summary", {
            total: line.total ?? 0,
            seconds: line.seconds,
            reasons: formatCounts(line.counts ?? {}),
          }),
    ),
  );
  warnBadSettings(RED, node, type, config);
  const fail = (text: string) => {
    node.status({ fill: "red", shape: "ring", text: t("status.failed") });
    node.error(text);
  };
  const showStatus = () => {
    if (!service || closed) return;
    const counts = service.counts();
    const locked = counts.locked;
    if (locked > 0 && !lockTimer)
      lockTimer = setTimeout(() => {
        lockTimer = undefined;
        showStatus();
      }, LOCK_RECHECK_MS);
    node.status({
      // Yellow while addresses or accounts are locked out after failed attempts.
      fill: locked > 0 ? "yellow" : "green",
      shape: "dot",
      text: t(locked > 0 ? "status.serving-locked" : "status.serving", {
        transports: service.labels.join(", ") || t("status.nothing"),
        provisioned: counts.provisioned,
        refused: counts.refused,
        locked,
        ...o.statusValues?.(service),
      }),
    });
  };
  const scheduleStatus = () => {
    if (statusTimer || closed) return;
    statusTimer = setTimeout(() => {
      statusTimer = undefined;
      showStatus();
    }, STATUS_EVERY_MS);
  };

  const start = async (): Promise<Service | undefined> => {
    let settings: Settings;
    let store: StoreBackend;
    try {
      store = storeFromConfig(RED, type, config.store) ?? new MemoryBackend();
      settings = o.settings();
    } catch (err) {
      return void fail((err as Error).message);
    }
    // The dialect's own check speaks English (lib/): the node's sentence goes before it.
    const problem = o.dialect.check(settings);
    if (problem) return void fail(t("errors.start", { detail: problem }));
    const rate = num(config.rateLimit, DEFAULT_RATE_LIMIT.perSecond, 0);
    const burst = num(config.rateBurst, DEFAULT_RATE_LIMIT.burst, 1);
    built = buildServiceContext({
      dialect: o.dialect.id,
      store,
      // One limiter for every transport of the node: a device is charged once.
      rateLimit: o.rateLimit === false ? false : { perSecond: rate, burst },
      failureLimit: failureLimitOptions(config),
      lockAccount: o.dialect.lockAccount,
      decide:
        config.decide && o.outputs.decisions !== undefined
          ? {
              timeoutMs: num(config.decideTimeout, 10, 0.1) * 1000,
              ask: (correlationId, request) =>
                out(o.outputs.decisions ?? 0, {
                  topic: "provision-request",
                  correlationId,
                  payload: request,
                }),
            }
          : undefined,
      audit: (event) => {
        out(o.outputs.audit, { topic: "audit", payload: event });
        scheduleStatus();
      },
      mountHttp: (mount, handler, claim) => {
        const unmount = mountOnHttpNode(RED, mount, handler, claim);
        if (!unmount) node.warn(t("errors.no-http"));
        else if (httpNodeAuthOn(RED)) node.warn(t("warn.node-auth"));
        return unmount;
      },
      refused: (reason) => refusals.count(reason),
      transportState: (state, detail) => {
        if (closed) return;
        if (state === "connected") showStatus();
        else if (state === "error") node.warn(t("errors.attached", { detail: detail ?? state }));
        else node.status({ fill: "yellow", shape: "ring", text: t(`status.${state}`) });
      },
    });
    node.status({ fill: "blue", shape: "ring", text: t("status.starting") });
    let s: Service;
    try {
      s = await o.dialect.start(settings, built.ctx);
    } catch (err) {
      // Closed while starting (a redeploy): the store it was opening was closed under it,
      // which is no fault to report.
      if (closed) return undefined;
      return void fail(t("errors.start", { detail: (err as Error).message }));
    }
    if (closed) {
      await s.stop().catch(() => undefined);
      return undefined;
    }
    try {
      await o.afterStart?.(s);
    } catch (err) {
      await s.stop().catch(() => undefined);
      return void fail((err as Error).message);
    }
    service = s;
    showStatus();
    return s;
  };
  const started = start().catch((err: Error) => {
    if (!closed) fail(t("errors.start", { detail: err.message }));
    return undefined;
  });

  node.on("input", (msg: Msg, send, done) => {
    void (async () => {
      await started;
      if (!service || !built) return done(new Error(t("errors.not-running")));
      if (msg.correlationId !== undefined) {
        const r = built.answer(msg.correlationId, msg.payload);
        if (r === "answered") return done();
        return done(new Error(t(`errors.decision-${r}`)));
      }
      if (!service.manage) return done(new Error(t("errors.not-running")));
      try {
        const result = await service.manage(msg.operation ?? msg.topic, msg.payload);
        const msgs: Array<Record<string, unknown> | null> = new Array<null>(o.outputs.count).fill(null);
        msgs[o.outputs.manage] = { ...msg, topic: result.operation, payload: result };
        send(msgs as never);
        showStatus();
        done();
      } catch (err) {
        const e = err as Error & { code?: unknown; status?: unknown };
        // The registry's own codes pass as they are until it speaks the neutral vocabulary.
        const code = typeof e.code === "string" ? e.code : codeOf(err);
        // As on the device side: the code reaches a Catch node's msg.error.code, the
        // earlier or protocol word rides on the message (see device-requests.ts).
        if (e.status !== undefined) msg.errorStatus = e.status;
        else delete msg.errorStatus;
        done(localizedError(RED, type, Object.assign(e, { code })));
      }
    })().catch((err: Error) => done(localizedError(RED, type, err)));
  });

  node.on("close", (_removed: boolean, done: () => void) => {
    closed = true;
    if (statusTimer) clearTimeout(statusTimer);
    if (lockTimer) clearTimeout(lockTimer);
    built?.cancelDecisions("node closed");
    refusals.close();
    void started
      .then((s) => s?.stop())
      .catch(() => undefined)
      .then(() => {
        // A start still under way when close began: its decisions too.
        built?.cancelDecisions("node closed");
        node.status({});
        done();
      });
  });

  return { started };
}
