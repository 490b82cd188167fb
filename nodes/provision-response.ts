/**
 * provision-response: the serving side of ThingsBoard device provisioning. Reads its
 * settings, builds the service core over a registry in a credential store, starts the
 * transports (embedded or attached MQTT, CoAP; HTTP on Node-RED's own server), and maps
 * decisions, audit events and management messages to and from the flow.
 */
import type { Node, NodeAPI, NodeDef, NodeMessageInFlow } from "node-red";
import type { TlsOptions } from "node:tls";
import { TbProvisioningService, tbRegistry, type TbProfile } from "../lib/dialects/thingsboard/server";
import { startTbHost, type TbHost, type TbMqttConfig } from "../lib/dialects/thingsboard/server-host";
import { tbHttpHandler } from "../lib/dialects/thingsboard/server-http";
import { manage, ManageError } from "../lib/dialects/thingsboard/server-manage";
import { HTTP_PATH } from "../lib/dialects/thingsboard/wire";
import { lockAuditEvent } from "../lib/service/audit";
import { FailureLimiter, failureLimitOptions, type FailureLimitSettings } from "../lib/service/failure-limit";
import { PendingDecisions } from "../lib/service/pending";
import { DEFAULT_RATE_LIMIT, RateLimiter } from "../lib/service/rate-limit";
import { TB_MQTT_SESSION_DEFAULTS } from "../lib/dialects/thingsboard/server-mqtt";
import { RegistryError } from "../lib/service/registry";
import type { StoreBackend } from "../lib/stores/backend";
import { MemoryBackend } from "../lib/stores/memory";
import { httpNodeAuthOn, mountOnHttpNode } from "./shared/http-node";
import { formatCounts, LogSummary } from "./shared/log-summary";
import { storeFromConfig } from "./shared/store-ref";

interface ProvisionResponseDef extends NodeDef, FailureLimitSettings {
  profile?: string;
  profile2?: string;
  profile3?: string;
  mqtt?: string;
  mqttHost?: string;
  mqttPort?: string | number;
  mqttTls?: string;
  attachedUrl?: string;
  attachedTls?: string;
  http?: boolean;
  httpPath?: string;
  coap?: boolean;
  coapHost?: string;
  coapPort?: string | number;
  store?: string;
  decide?: boolean;
  decideTimeout?: string | number;
  closeAfter?: string | number;
  mqttMaxSessions?: string | number;
  mqttPerRemote?: string | number;
  mqttFirstRequest?: string | number;
  mqttLifetime?: string | number;
  rateLimit?: string | number;
  rateBurst?: string | number;
  repeatWindow?: string | number;
}

interface ProvisionResponseCreds {
  attachedUsername?: string;
  attachedPassword?: string;
}

interface ProfileNodeShape {
  tbProfile?: TbProfile;
  problem?: string;
}

interface TlsConfigNode {
  valid?: boolean;
  key?: string | Buffer;
  cert?: string | Buffer;
  ca?: string | Buffer;
  credentials?: { passphrase?: string };
  addTLSOptions?(opts: Record<string, unknown>): Record<string, unknown>;
}

type Msg = NodeMessageInFlow & Record<string, unknown>;

function num(v: unknown, fallback: number, min = 0): number {
  const n = typeof v === "number" ? v : typeof v === "string" && v.trim() !== "" ? Number(v) : NaN;
  return Number.isFinite(n) && n >= min ? n : fallback;
}

/** The embedded broker's session slots and deadlines from the dialog (seconds there, ms here). */
function mqttSessionLimits(config: ProvisionResponseDef) {
  const d = TB_MQTT_SESSION_DEFAULTS;
  return {
    maxSessions: Math.floor(num(config.mqttMaxSessions, d.maxSessions, 1)),
    maxSessionsPerRemote: Math.floor(num(config.mqttPerRemote, d.maxSessionsPerRemote, 1)),
    firstRequestMs: num(config.mqttFirstRequest, d.firstRequestMs / 1000, 1) * 1000,
    sessionLifetimeMs: num(config.mqttLifetime, d.sessionLifetimeMs / 1000, 1) * 1000,
  };
}

export = function (RED: NodeAPI) {
  function tlsServerOptions(id: string | undefined): TlsOptions | undefined {
    if (!id) return undefined;
    const tls = RED.nodes.getNode(id) as TlsConfigNode | null;
    if (!tls) throw new Error(RED._("provision-response.errors.tls-missing"));
    if (tls.valid === false || !tls.key || !tls.cert)
      throw new Error(RED._("provision-response.errors.tls-invalid"));
    const opts: TlsOptions = { key: tls.key, cert: tls.cert };
    if (tls.ca) opts.ca = tls.ca;
    if (tls.credentials?.passphrase) opts.passphrase = tls.credentials.passphrase;
    return opts;
  }

  function tlsClientOptions(id: string | undefined): Record<string, unknown> {
    if (!id) return {};
    const tls = RED.nodes.getNode(id) as TlsConfigNode | null;
    if (!tls?.addTLSOptions) throw new Error(RED._("provision-response.errors.tls-missing"));
    return tls.addTLSOptions({});
  }

  function ProvisionResponseNode(this: Node<ProvisionResponseCreds>, config: ProvisionResponseDef) {
    RED.nodes.createNode(this, config);
    // eslint-disable-next-line @typescript-eslint/no-this-alias
    const node = this;
    let host: TbHost | undefined;
    let service: TbProvisioningService | undefined;
    let closed = false;
    let labels: string[] = [];
    let statusTimer: NodeJS.Timeout | undefined;
    // Refusals of peers (cut MQTT sessions, bad HTTP requests): one log line per minute
    // with counts per reason, never what the peer sent.
    const refusals = new LogSummary((line) =>
      node.warn(
        line.first !== undefined
          ? RED._("provision-response.warn.refused-first", { reason: line.first, seconds: line.seconds })
          : RED._("provision-response.warn.refused-summary", {
              total: line.total ?? 0,
              seconds: line.seconds,
              reasons: formatCounts(line.counts ?? {}),
            }),
      ),
    );
    let lockTimer: NodeJS.Timeout | undefined;
    const pending = new PendingDecisions(num(config.decideTimeout, 10, 0.1) * 1000);
    let unmountHttp: (() => void) | undefined;
    const httpPath = (config.httpPath || HTTP_PATH).trim();

    const showStatus = () => {
      if (!service) return;
      const locked = service.lockedNow();
      // Locks end without a request: look again later so the status does not stay yellow.
      if (locked > 0 && !lockTimer && !closed)
        lockTimer = setTimeout(() => {
          lockTimer = undefined;
          showStatus();
        }, 60000);
      node.status({
        // Yellow while addresses or profiles are locked out after failed attempts.
        fill: locked > 0 ? "yellow" : "green",
        shape: "dot",
        text: RED._(`provision-response.status.${locked > 0 ? "serving-locked" : "serving"}`, {
          transports: labels.join(", ") || RED._("provision-response.status.nothing"),
          provisioned: service.counts.provisioned,
          refused: service.counts.refused,
          locked,
        }),
      });
    };
    // Counts change per request; the editor needs them a few times a second at most.
    const scheduleStatus = () => {
      if (statusTimer || closed) return;
      statusTimer = setTimeout(() => {
        statusTimer = undefined;
        showStatus();
      }, 250);
    };
    const fail = (text: string) => {
      node.status({ fill: "red", shape: "ring", text: RED._("provision-response.status.failed") });
      node.error(text);
    };

    const setup = (): { service: TbProvisioningService; limiter: RateLimiter } | undefined => {
      const profiles: TbProfile[] = [];
      for (const id of [config.profile, config.profile2, config.profile3]) {
        if (!id) continue;
        const p = RED.nodes.getNode(id) as (Node & ProfileNodeShape) | null;
        if (!p) return void fail(RED._("provision-response.errors.profile-missing"));
        if (!p.tbProfile) return void fail(p.problem ?? RED._("provision-response.errors.profile-missing"));
        profiles.push(p.tbProfile);
      }
      if (profiles.length === 0) return void fail(RED._("provision-response.errors.no-profile"));
      let backend: StoreBackend;
      try {
        backend = storeFromConfig(RED, config.store) ?? new MemoryBackend();
      } catch (err) {
        return void fail((err as Error).message);
      }
      const rate = num(config.rateLimit, DEFAULT_RATE_LIMIT.perSecond);
      const burst = num(config.rateBurst, DEFAULT_RATE_LIMIT.burst, 1);
      // One limiter for the service and the embedded broker's CONNECT check: a device is
      // charged once, and refused with CONNACK 3 before it sends anything when over its rate.
      const limiter = new RateLimiter({ perSecond: rate, burst });
      const audit = (event: unknown) => {
        node.send([null, { topic: "audit", payload: event }]);
        scheduleStatus();
      };
      try {
        const s = new TbProvisioningService({
          profiles,
          registry: tbRegistry(backend),
          limiter,
          failures: new FailureLimiter(failureLimitOptions(config), Date.now, (lock) =>
            audit(lockAuditEvent("thingsboard", lock, "profile")),
          ),
          repeatWindowMs: num(config.repeatWindow, 0) * 1000,
          onAudit: audit,
          decide: config.decide
            ? (request) => {
                const { correlationId, answer } = pending.ask();
                node.send([{ topic: "provision-request", correlationId, payload: request }, null]);
                return answer;
              }
            : undefined,
        });
        return { service: s, limiter };
      } catch (err) {
        return void fail((err as Error).message);
      }
    };

    const start = async () => {
      const ready = setup();
      if (!ready) return;
      service = ready.service;
      const mode = config.mqtt === "attached" || config.mqtt === "off" ? config.mqtt : "embedded";
      let mqtt: TbMqttConfig;
      let coap: { host: string; port: number } | undefined;
      try {
        if (mode === "embedded") {
          mqtt = {
            mode,
            host: (config.mqttHost || "127.0.0.1").trim(),
            port: num(config.mqttPort, 1883),
            tls: tlsServerOptions(config.mqttTls),
            closeAfterMs: num(config.closeAfter, 60) * 1000,
            ...mqttSessionLimits(config),
          };
        } else if (mode === "attached") {
          const url = (config.attachedUrl || "").trim();
          if (!/^mqtts?:\/\//.test(url)) throw new Error(RED._("provision-response.errors.attached-url"));
          mqtt = {
            mode,
            url,
            client: {
              ...tlsClientOptions(config.attachedTls),
              username: node.credentials?.attachedUsername || undefined,
              password: node.credentials?.attachedPassword || undefined,
            },
          };
        } else mqtt = { mode: "off" };
        if (config.coap)
          coap = { host: (config.coapHost || "127.0.0.1").trim(), port: num(config.coapPort, 5683) };
      } catch (err) {
        return fail((err as Error).message);
      }
      node.status({ fill: "blue", shape: "ring", text: RED._("provision-response.status.starting") });
      try {
        const h = await startTbHost(service, {
          mqtt,
          coap,
          serviceLimiter: ready.limiter,
          onViolation: (what) => refusals.count(`mqtt: ${what}`),
          onAttachedState: (state, detail) => {
            if (state === "connected") showStatus();
            else if (state === "error")
              node.warn(RED._("provision-response.errors.attached", { detail: detail ?? state }));
            else
              node.status({
                fill: "yellow",
                shape: "ring",
                text: RED._(`provision-response.status.${state}`),
              });
          },
        });
        if (closed) return void (await h.close());
        host = h;
        labels = [...h.labels];
      } catch (err) {
        return fail(RED._("provision-response.errors.start", { detail: (err as Error).message }));
      }
      if (config.http) {
        const handler = tbHttpHandler(service, {
          retryAfterSeconds: ready.limiter.retryAfterSeconds,
          onRefused: (reason) => refusals.count(`http: ${reason}`),
        });
        unmountHttp = mountOnHttpNode(RED, { post: httpPath }, handler);
        if (unmountHttp) labels.push("http");
        else node.warn(RED._("provision-response.errors.no-http"));
        if (unmountHttp && httpNodeAuthOn(RED)) node.warn(RED._("provision-response.warn.node-auth"));
      }
      showStatus();
    };

    const started = start().catch((err: Error) => fail(err.message));

    node.on("input", (msg: Msg, send, done) => {
      void (async () => {
        await started;
        if (!service) return done(new Error(RED._("provision-response.errors.not-running")));
        if (msg.correlationId !== undefined) {
          const r = pending.answer(msg.correlationId, msg.payload);
          if (r === "answered") return done();
          return done(new Error(RED._(`provision-response.errors.decision-${r}`)));
        }
        const operation = msg.operation ?? msg.topic;
        try {
          const result = await manage(service, operation, msg.payload);
          send([null, { ...msg, topic: result.operation, payload: result }]);
          done();
        } catch (err) {
          const code = err instanceof ManageError || err instanceof RegistryError ? err.code : "ERROR";
          msg.error = { code, message: (err as Error).message };
          done(err as Error);
        }
      })().catch((err: Error) => done(err));
    });

    node.on("close", (_removed: boolean, done: () => void) => {
      closed = true;
      if (statusTimer) clearTimeout(statusTimer);
      if (lockTimer) clearTimeout(lockTimer);
      pending.cancelAll("node closed");
      unmountHttp?.();
      refusals.close();
      void started
        .then(() => host?.close())
        .catch(() => undefined)
        .then(() => {
          node.status({});
          done();
        });
    });
  }

  RED.nodes.registerType<Node<ProvisionResponseCreds>, ProvisionResponseDef, unknown, ProvisionResponseCreds>(
    "provision-response",
    ProvisionResponseNode,
    {
      credentials: {
        attachedUsername: { type: "text" },
        attachedPassword: { type: "password" },
      },
    },
  );
};
