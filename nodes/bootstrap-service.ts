/**
 * bootstrap-service: the serving side of Mainflux bootstrap on Node-RED's own HTTP server
 * (httpNode, under httpNodeRoot). Configurations live in a credential store (memory when
 * none is chosen); they are managed by message, by the upstream management endpoints
 * (with a bearer token) and, for one device, in the dialog itself.
 */
import type { Node, NodeAPI, NodeDef, NodeMessageInFlow } from "node-red";
import { resolveEnvRefs } from "../lib/client/env-ref";
import { cfbKey, checkKeyId, gcmKey } from "../lib/dialects/mainflux/crypto";
import { manage } from "../lib/dialects/mainflux/manage";
import { ConfigRegistry, summaryOf, type StoredConfig } from "../lib/dialects/mainflux/registry";
import { codeOf } from "../lib/model/errors";
import { bootstrapHandler, MainfluxBootstrapService } from "../lib/dialects/mainflux/server";
import { lockAuditEvent } from "../lib/service/audit";
import { FailureLimiter, failureLimitOptions, type FailureLimitSettings } from "../lib/service/failure-limit";
import type { StoreBackend } from "../lib/stores/backend";
import { MemoryBackend } from "../lib/stores/memory";
import { httpNodeAuthOn, mountOnHttpNode } from "./shared/http-node";
import { formatCounts, LogSummary } from "./shared/log-summary";
import { storeFromConfig } from "./shared/store-ref";

interface ServiceDef extends NodeDef, FailureLimitSettings {
  store?: string;
  basePath?: string;
  allowPlain?: boolean;
  fields?: string;
  gcmKeyId?: string;
  gcmWindow?: string | number;
  initEnabled?: boolean;
  initExternalId?: string;
  initThingId?: string;
  initName?: string;
  initChannels?: string;
  initContent?: string;
}

interface ServiceCreds {
  encryptionKey?: string;
  gcmKey?: string;
  managementToken?: string;
  initExternalKey?: string;
  initThingKey?: string;
}

type Msg = NodeMessageInFlow & Record<string, unknown>;
const S = "bootstrap-service.";

function num(v: unknown, fallback: number, min = 0): number {
  const n = typeof v === "number" ? v : typeof v === "string" && v.trim() !== "" ? Number(v) : NaN;
  return Number.isFinite(n) && n >= min ? n : fallback;
}

export = function (RED: NodeAPI) {
  function BootstrapServiceNode(this: Node<ServiceCreds>, config: ServiceDef) {
    RED.nodes.createNode(this, config);
    // eslint-disable-next-line @typescript-eslint/no-this-alias
    const node = this;
    const env = (name: string): string | undefined => {
      const v: unknown = RED.util.getSetting(node, name);
      return typeof v === "string" ? v : undefined;
    };
    const cred = (v: string | undefined) => resolveEnvRefs(v ?? "", env);
    const creds = node.credentials ?? {};
    let unmountHttp: (() => void) | undefined;
    let service: MainfluxBootstrapService | undefined;
    let statusTimer: NodeJS.Timeout | undefined;
    let lockTimer: NodeJS.Timeout | undefined;
    let closed = false;
    let modes: string[] = [];
    // Bad HTTP requests: one log line per minute with counts per reason, never their bytes.
    const refusals = new LogSummary((line) =>
      node.warn(
        line.first !== undefined
          ? RED._(S + "warn.refused-first", { reason: line.first, seconds: line.seconds })
          : RED._(S + "warn.refused-summary", {
              total: line.total ?? 0,
              seconds: line.seconds,
              reasons: formatCounts(line.counts ?? {}),
            }),
      ),
    );

    const fail = (text: string) => {
      node.status({ fill: "red", shape: "ring", text: RED._(S + "status.failed") });
      node.error(text);
    };
    const showStatus = () => {
      if (!service || closed) return;
      const locked = service.lockedNow();
      // Locks end without a request: look again later so the status does not stay yellow.
      if (locked > 0 && !lockTimer && !closed)
        lockTimer = setTimeout(() => {
          lockTimer = undefined;
          showStatus();
        }, 60000);
      node.status({
        // Yellow while addresses or external ids are locked out after failed attempts.
        fill: locked > 0 ? "yellow" : "green",
        shape: "dot",
        text: RED._(S + (locked > 0 ? "status.serving-locked" : "status.serving"), {
          modes: modes.join("+"),
          configs: service.registry.size,
          ok: service.counts.bootstrapped,
          refused: service.counts.refused,
          locked,
        }),
      });
    };
    const scheduleStatus = () => {
      if (statusTimer || closed) return;
      statusTimer = setTimeout(() => {
        statusTimer = undefined;
        showStatus();
      }, 250);
    };

    const build = (): MainfluxBootstrapService | undefined => {
      let backend: StoreBackend;
      try {
        backend = storeFromConfig(RED, config.store) ?? new MemoryBackend();
      } catch (err) {
        return void fail(RED._(S + "errors.store", { reason: (err as Error).message }));
      }
      try {
        const encryption = cred(creds.encryptionKey);
        const gcmSecret = cred(creds.gcmKey);
        const gcmId = (config.gcmKeyId ?? "").trim();
        modes = [];
        if (config.allowPlain !== false) modes.push("plain");
        if (encryption) modes.push("secure");
        if (gcmSecret) modes.push("gcm");
        return new MainfluxBootstrapService({
          registry: new ConfigRegistry(backend),
          cfbKey: encryption ? cfbKey(encryption) : undefined,
          gcm: gcmSecret
            ? {
                keyId: checkKeyId(gcmId),
                key: gcmKey(gcmSecret),
                windowSeconds: num(config.gcmWindow, 300, 1),
              }
            : undefined,
          allowPlain: config.allowPlain !== false,
          managementToken: cred(creds.managementToken) || undefined,
          fields: config.fields === "mainflux" ? "mainflux" : "thing",
          failures: new FailureLimiter(failureLimitOptions(config), Date.now, (lock) => {
            node.send([null, { topic: "audit", payload: lockAuditEvent("mainflux", lock, "deviceName") }]);
            scheduleStatus();
          }),
          onAudit: (event) => {
            node.send([null, { topic: "audit", payload: event }]);
            scheduleStatus();
          },
        });
      } catch (err) {
        return void fail(RED._(S + "errors.config", { reason: (err as Error).message }));
      }
    };

    // The registry knows the configuration this dialog made by this name, so a restart
    // with another external id replaces it instead of colliding with it.
    const owner = `dialog:${node.id}`;
    const removedMsg = (c: StoredConfig) => ({
      topic: "remove",
      payload: { operation: "remove", config: summaryOf(c) },
    });

    const initial = async (s: MainfluxBootstrapService) => {
      if (!config.initEnabled) {
        for (const c of await s.registry.removeOwned(owner)) node.send([removedMsg(c), null]);
        return;
      }
      const externalId = resolveEnvRefs((config.initExternalId ?? "").trim(), env);
      const cfg: Record<string, unknown> = {
        external_id: externalId,
        external_key: cred(creds.initExternalKey),
        channels: resolveEnvRefs(config.initChannels ?? "", env),
      };
      const thingId = resolveEnvRefs((config.initThingId ?? "").trim(), env);
      const thingKey = cred(creds.initThingKey);
      // Without a thing id the one stored earlier is kept, so devices keep their identity.
      const existing = externalId ? await s.registry.get(externalId).catch(() => undefined) : undefined;
      cfg.thing_id = thingId || existing?.thing_id;
      cfg.thing_key = thingKey || existing?.thing_key;
      if (config.initName) cfg.name = config.initName;
      if (config.initContent) cfg.content = resolveEnvRefs(config.initContent, env);
      if (existing) cfg.state = existing.state;
      const { saved, removed } = await s.registry.putOwned(cfg, owner);
      for (const c of removed) node.send([removedMsg(c), null]);
      node.send([{ topic: "add", payload: { operation: "add", config: summaryOf(saved) } }, null]);
    };

    const start = async () => {
      const s = build();
      if (!s) return;
      try {
        await s.registry.load();
        await initial(s);
      } catch (err) {
        const code = (err as { code?: string }).code ?? "ERROR";
        return fail(RED._(S + "errors.initial", { code, reason: (err as Error).message }));
      }
      if (closed) return;
      service = s;
      const handler = bootstrapHandler(s, {
        basePath: (config.basePath ?? "").trim(),
        onRefused: (reason) => refusals.count(reason),
      });
      // The claim keeps Node-RED's admin body parsers away from these requests.
      unmountHttp = mountOnHttpNode(RED, "use", handler, handler.claims);
      if (!unmountHttp) node.warn(RED._(S + "errors.no-http"));
      else if (httpNodeAuthOn(RED)) node.warn(RED._(S + "warn.node-auth"));
      if (!modes.includes("secure") && !modes.includes("gcm")) node.warn(RED._(S + "warn.plain-only"));
      showStatus();
    };
    const started = start().catch((err: Error) => fail(err.message));

    node.on("input", (msg: Msg, send, done) => {
      void (async () => {
        await started;
        if (!service) return done(new Error(RED._(S + "errors.not-running")));
        try {
          const result = await manage(service.registry, msg.operation ?? msg.topic, msg.payload);
          send([{ ...msg, topic: result.operation, payload: result }, null]);
          showStatus();
          done();
        } catch (err) {
          const code = codeOf(err);
          msg.error = { code, message: (err as Error).message };
          done(Object.assign(err as Error, { code }));
        }
      })().catch((err: Error) => done(err));
    });

    node.on("close", (_removed: boolean, done: () => void) => {
      closed = true;
      if (statusTimer) clearTimeout(statusTimer);
      if (lockTimer) clearTimeout(lockTimer);
      unmountHttp?.();
      refusals.close();
      void started.then(() => {
        node.status({});
        done();
      });
    });
  }

  RED.nodes.registerType<Node<ServiceCreds>, ServiceDef, unknown, ServiceCreds>(
    "bootstrap-service",
    BootstrapServiceNode,
    {
      credentials: {
        encryptionKey: { type: "password" },
        gcmKey: { type: "password" },
        managementToken: { type: "password" },
        initExternalKey: { type: "password" },
        initThingKey: { type: "password" },
      },
    },
  );
};
