/**
 * bootstrap-service: the serving side of Mainflux bootstrap on Node-RED's own HTTP server
 * (httpNode, under httpNodeRoot). Configurations live in a credential store (memory when
 * none is chosen); they are managed by message, by the upstream management endpoints
 * (with a bearer token) and, for one device, in the dialog itself. The lifecycle, the
 * flow's decision, the rate limit and the failed-attempt guard are every serving node's
 * (nodes/shared/serving-node.ts).
 */
import type { Node, NodeAPI, NodeDef } from "node-red";
import { resolveEnvRefs } from "../lib/client/env-ref";
import { summaryOf, type StoredConfig } from "../lib/dialects/mainflux/registry";
import {
  mainfluxServing,
  type MainfluxRunningService,
  type MainfluxServeSettings,
} from "../lib/dialects/mainflux/serving";
import { codeOf } from "../lib/model/errors";
import { num } from "./shared/config";
import { runServingNode, type ServingNodeConfig } from "./shared/serving-node";

interface ServiceDef extends NodeDef, ServingNodeConfig {
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

const S = "bootstrap-service.";

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

    const settings = (): MainfluxServeSettings => ({
      allowPlain: config.allowPlain !== false,
      encryptionKey: cred(creds.encryptionKey) || undefined,
      gcm: cred(creds.gcmKey)
        ? {
            keyId: (config.gcmKeyId ?? "").trim(),
            key: cred(creds.gcmKey),
            windowSeconds: num(config.gcmWindow, 300, 1),
          }
        : undefined,
      managementToken: cred(creds.managementToken) || undefined,
      fields: config.fields === "mainflux" ? "mainflux" : "thing",
      basePath: (config.basePath ?? "").trim(),
    });

    // The registry knows the configuration this dialog made by this name, so a restart
    // with another external id replaces it instead of colliding with it.
    const owner = `dialog:${node.id}`;
    const removedMsg = (c: StoredConfig) => ({
      topic: "remove",
      payload: { operation: "remove", config: summaryOf(c) },
    });

    const initial = async (s: MainfluxRunningService) => {
      const registry = s.registry;
      if (!config.initEnabled) {
        for (const c of await registry.removeOwned(owner)) node.send([removedMsg(c), null]);
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
      const existing = externalId ? await registry.get(externalId).catch(() => undefined) : undefined;
      cfg.thing_id = thingId || existing?.thing_id;
      cfg.thing_key = thingKey || existing?.thing_key;
      if (config.initName) cfg.name = config.initName;
      if (config.initContent) cfg.content = resolveEnvRefs(config.initContent, env);
      if (existing) cfg.state = existing.state;
      const { saved, removed } = await registry.putOwned(cfg, owner);
      for (const c of removed) node.send([removedMsg(c), null]);
      node.send([{ topic: "add", payload: { operation: "add", config: summaryOf(saved) } }, null]);
    };

    runServingNode({
      RED,
      node,
      config,
      type: "bootstrap-service",
      dialect: mainfluxServing,
      // Management results (and, with Decision on, the requests to decide) on 1, audit on 2.
      outputs: { count: 2, decisions: 0, audit: 1, manage: 0 },
      settings,
      statusValues: (s) => ({ modes: s.modes.join("+"), configs: s.registry.size }),
      afterStart: async (s) => {
        try {
          await initial(s);
        } catch (err) {
          throw new Error(RED._(S + "errors.initial", { code: codeOf(err), reason: (err as Error).message }));
        }
        if (!s.modes.includes("secure") && !s.modes.includes("gcm")) node.warn(RED._(S + "warn.plain-only"));
      },
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
