/**
 * provision-response: the serving side of ThingsBoard device provisioning, of
 * Everyware / Kura provisioning when its dialect says "kura", and of Azure IoT Hub DPS
 * when it says "azure-dps" (a flow saved before the dialect choice has none and stays
 * ThingsBoard). Reads its
 * settings, builds the service core over a registry in a credential store, starts the
 * transports (embedded or attached MQTT, CoAP; HTTP on Node-RED's own server), and maps
 * decisions, audit events and management messages to and from the flow.
 */
import type { Node, NodeAPI, NodeDef } from "node-red";
import { finalError } from "../lib/model/errors";
import type { TbProfile } from "../lib/dialects/thingsboard/server";
import type { TbMqttConfig } from "../lib/dialects/thingsboard/server-host";
import { TB_MQTT_SESSION_DEFAULTS } from "../lib/dialects/thingsboard/server-mqtt";
import { thingsboardServing, type TbServeSettings } from "../lib/dialects/thingsboard/serving";
import { envOf, num, portOf, seconds, text, tlsServerOptionsOf } from "./shared/config";
import { profileIdsOf } from "./shared/profile-list";
import { runServingNode, type ServingNodeConfig } from "./shared/serving-node";
import { kuraServing, type KuraMqttConfig, type KuraServeSettings } from "../lib/dialects/kura/serving";
import { DEFAULT_TOPICS } from "../lib/dialects/kura/namespace";
import { kuraRequestsOf, kuraSecretsOf } from "./shared/kura-serving-settings";
import { azureDpsServing } from "../lib/dialects/azure-dps/serving";
import type { AzureAllocation, AzureServeSettings } from "../lib/dialects/azure-dps/settings";
import { azureEnrollmentsOf, azureHubsOf, azureKeysOf } from "./shared/azure-serving-settings";
import { azureDemoPkiOf } from "./shared/azure-demo-pki";

interface ProvisionResponseDef extends NodeDef, ServingNodeConfig {
  /** "thingsboard" (also when absent: flows saved before the choice), "kura" or "azure-dps". */
  dialect?: string;
  /** Azure DPS: the service's id scope, linked hubs, enrollments (keys in the credentials). */
  azureIdScope?: string;
  azureHubs?: string;
  azureAllocation?: string;
  azureEnrollments?: unknown;
  azureListenHost?: string;
  azureMqtt?: boolean;
  azureMqttPort?: string | number;
  azureHttps?: boolean;
  azureHttpsPort?: string | number;
  /** Serve with the demo PKI's certificate (for trying out only) instead of mqttTls. */
  azureDemoPki?: boolean;
  azureRetryAfter?: string | number;
  azurePollCount?: string | number;
  azurePollWindow?: string | number;
  azureRegistrationsPerMinute?: string | number;
  /** Everyware / Kura: the provision account, and the requests (their secrets in the credentials). */
  kuraAccount?: string;
  kuraRequests?: unknown;
  kuraAccountBroker?: boolean;
  kuraAccountBrokerPort?: string | number;
  /** The exchange's topic templates; empty keeps namespace.ts's defaults. */
  kuraTopicRequest?: string;
  kuraTopicReply?: string;
  kuraTopicCompleted?: string;
  /** The provisioning-profile config node ids, in order (the first is the default of add). */
  profiles?: unknown;
  /** Before the list: three fixed slots, still read when `profiles` is absent. */
  profile?: string;
  profile2?: string;
  profile3?: string;
  mqtt?: string;
  mqttHost?: string;
  mqttPort?: string | number;
  mqttTls?: string;
  /** The embedded MQTT listener (and Azure's MQTT) expects a PROXY protocol header; absent before the option: off. */
  mqttProxyProtocol?: boolean;
  /** Azure's HTTPS listener expects a PROXY protocol header. */
  azureHttpsProxyProtocol?: boolean;
  attachedUrl?: string;
  attachedTls?: string;
  http?: boolean;
  httpPath?: string;
  coap?: boolean;
  coapHost?: string;
  coapPort?: string | number;
  closeAfter?: string | number;
  mqttMaxSessions?: string | number;
  mqttPerRemote?: string | number;
  mqttFirstRequest?: string | number;
  mqttLifetime?: string | number;
  repeatWindow?: string | number;
}

interface ProvisionResponseCreds {
  attachedUsername?: string;
  attachedPassword?: string;
  /** Everyware / Kura: every request's secrets, JSON by client id (nodes/shared/kura-serving-settings.ts). */
  kuraSecrets?: string;
  /** Azure DPS: every enrollment's keys, JSON by `individual:<id>` / `group:<id>` (nodes/shared/azure-serving-settings.ts). */
  azureKeys?: string;
}

interface ProfileNodeShape {
  tbProfile?: TbProfile;
  problem?: string;
}

/** The embedded broker's session slots and deadlines from the dialog (seconds there, ms here). */
function mqttSessionLimits(config: ProvisionResponseDef) {
  const d = TB_MQTT_SESSION_DEFAULTS;
  return {
    maxSessions: Math.floor(num(config.mqttMaxSessions, d.maxSessions, 1)),
    maxSessionsPerRemote: Math.floor(num(config.mqttPerRemote, d.maxSessionsPerRemote, 1)),
    firstRequestMs: seconds(config.mqttFirstRequest, d.firstRequestMs / 1000, 1),
    sessionLifetimeMs: seconds(config.mqttLifetime, d.sessionLifetimeMs / 1000, 1),
  };
}

const T = "provision-response.";

export = function (RED: NodeAPI) {
  function tlsClientOptions(id: string | undefined): Record<string, unknown> {
    if (!id) return {};
    const tls = RED.nodes.getNode(id) as unknown as {
      addTLSOptions?(o: Record<string, unknown>): Record<string, unknown>;
    } | null;
    if (!tls?.addTLSOptions) throw finalError("CONFIG", RED._(T + "errors.tls-missing"));
    return tls.addTLSOptions({});
  }

  function ProvisionResponseNode(this: Node<ProvisionResponseCreds>, config: ProvisionResponseDef) {
    RED.nodes.createNode(this, config);
    // eslint-disable-next-line @typescript-eslint/no-this-alias
    const node = this;

    const profilesOf = (): TbProfile[] => {
      const profiles: TbProfile[] = [];
      for (const id of profileIdsOf(config)) {
        const p = RED.nodes.getNode(id) as (Node & ProfileNodeShape) | null;
        if (!p) throw finalError("CONFIG", RED._(T + "errors.profile-missing"));
        if (!p.tbProfile) throw finalError("CONFIG", p.problem ?? RED._(T + "errors.profile-missing"));
        profiles.push(p.tbProfile);
      }
      if (profiles.length === 0) throw finalError("CONFIG", RED._(T + "errors.no-profile"));
      return profiles;
    };

    const unset = (name: string) => RED._(T + "errors.port-unset", { name });
    const mqttOf = (): TbMqttConfig => {
      const mode = config.mqtt === "attached" || config.mqtt === "off" ? config.mqtt : "embedded";
      if (mode === "embedded")
        return {
          mode,
          host: text(config.mqttHost) ?? "127.0.0.1",
          port: portOf(config.mqttPort, 1883, unset),
          tls: tlsServerOptionsOf(RED, config.mqttTls, {
            missing: RED._(T + "errors.tls-missing"),
            invalid: RED._(T + "errors.tls-invalid"),
          }),
          proxyProtocol: config.mqttProxyProtocol === true,
          closeAfterMs: seconds(config.closeAfter, 60, 0),
          ...mqttSessionLimits(config),
        };
      if (mode === "attached") {
        const url = text(config.attachedUrl) ?? "";
        if (!/^mqtts?:\/\//.test(url)) throw finalError("CONFIG", RED._(T + "errors.attached-url"));
        return {
          mode,
          url,
          client: {
            ...tlsClientOptions(config.attachedTls),
            username: node.credentials?.attachedUsername || undefined,
            password: node.credentials?.attachedPassword || undefined,
          },
        };
      }
      return { mode: "off" };
    };

    if (config.dialect === "kura") {
      const kuraMqttOf = (): KuraMqttConfig => {
        const m = mqttOf();
        if (m.mode === "off") throw finalError("CONFIG", RED._(T + "errors.kura-mqtt-off"));
        if (m.mode === "attached") return m;
        const limits = mqttSessionLimits(config);
        return {
          mode: "embedded",
          host: m.host,
          port: m.port,
          tls: m.tls,
          proxyProtocol: m.proxyProtocol,
          limits: {
            maxConnections: limits.maxSessions,
            maxPerRemote: limits.maxSessionsPerRemote,
            firstRequestMs: limits.firstRequestMs,
            maxLifetimeMs: limits.sessionLifetimeMs,
          },
        };
      };
      runServingNode({
        RED,
        node,
        config,
        type: "provision-response",
        dialect: kuraServing,
        outputs: { count: 2, decisions: 0, audit: 1, manage: 1 },
        settings: (): KuraServeSettings => ({
          accountName: text(config.kuraAccount) ?? "",
          topics: {
            request: text(config.kuraTopicRequest) ?? DEFAULT_TOPICS.request,
            reply: text(config.kuraTopicReply) ?? DEFAULT_TOPICS.reply,
            completed: text(config.kuraTopicCompleted) ?? DEFAULT_TOPICS.completed,
          },
          requests: kuraRequestsOf(
            config.kuraRequests,
            kuraSecretsOf(node.credentials?.kuraSecrets, RED._(T + "errors.kura-secrets")),
            envOf(RED, node),
          ),
          mqtt: kuraMqttOf(),
          accountBroker: config.kuraAccountBroker
            ? {
                host: text(config.mqttHost) ?? "127.0.0.1",
                port: portOf(config.kuraAccountBrokerPort, 1884, unset),
              }
            : undefined,
        }),
      });
      return;
    }

    if (config.dialect === "azure-dps") {
      const env = envOf(RED, node);
      const allocation: AzureAllocation =
        config.azureAllocation === "static" || config.azureAllocation === "custom"
          ? config.azureAllocation
          : "hashed";
      const rows = Array.isArray(config.azureEnrollments) ? (config.azureEnrollments as unknown[]) : [];
      // Custom allocation is the flow's decision (Azure calls a webhook): the decision output is on then.
      const custom =
        allocation === "custom" || rows.some((r) => (r as { allocation?: unknown })?.allocation === "custom");
      const serverTls = () => {
        if (config.azureDemoPki) {
          const pki = azureDemoPkiOf(RED, (dir) => RED._(T + "warn.azure-demo-pki", { dir }));
          return { cert: pki.serverCert, key: pki.serverKey };
        }
        const tls = tlsServerOptionsOf(RED, config.mqttTls, {
          missing: RED._(T + "errors.tls-missing"),
          invalid: RED._(T + "errors.tls-invalid"),
        });
        if (!tls) throw finalError("CONFIG", RED._(T + "errors.azure-tls"));
        return tls;
      };
      runServingNode({
        RED,
        node,
        config: { ...config, decide: config.decide === true || custom },
        type: "provision-response",
        dialect: azureDpsServing,
        outputs: { count: 2, decisions: 0, audit: 1, manage: 1 },
        settings: (): AzureServeSettings => {
          const host = text(config.azureListenHost) ?? "127.0.0.1";
          const tls = config.azureMqtt !== false || config.azureHttps ? serverTls() : undefined;
          const limits = mqttSessionLimits(config);
          const hubs = azureHubsOf(config.azureHubs, env);
          return {
            idScope: text(config.azureIdScope) ?? "",
            linkedHubs: hubs.linkedHubs,
            hubWeights: hubs.hubWeights,
            allocation,
            enrollments: azureEnrollmentsOf(
              rows,
              azureKeysOf(node.credentials?.azureKeys, RED._(T + "errors.azure-keys")),
              env,
              (id) => RED._(T + "errors.azure-twin", { id }),
            ),
            retryAfterS: num(config.azureRetryAfter, 3, 0),
            pollLimit: {
              count: Math.floor(num(config.azurePollCount, 5, 1)),
              windowMs: seconds(config.azurePollWindow, 10, 0.001),
            },
            registrationsPerMinute: Math.floor(num(config.azureRegistrationsPerMinute, 1000, 1)),
            decisionTimeoutMs: seconds(config.decideTimeout, 10, 0.1),
            mqtt:
              config.azureMqtt !== false && tls
                ? {
                    host,
                    port: portOf(config.azureMqttPort, 8883, unset),
                    tls,
                    proxyProtocol: config.mqttProxyProtocol === true,
                    limits: {
                      maxConnections: limits.maxSessions,
                      maxPerRemote: limits.maxSessionsPerRemote,
                      firstRequestMs: limits.firstRequestMs,
                      maxLifetimeMs: limits.sessionLifetimeMs,
                    },
                  }
                : undefined,
            https:
              config.azureHttps && tls
                ? {
                    host,
                    port: portOf(config.azureHttpsPort, 443, unset),
                    tls,
                    proxyProtocol: config.azureHttpsProxyProtocol === true,
                  }
                : undefined,
          };
        },
      });
      return;
    }

    runServingNode({
      RED,
      node,
      config,
      type: "provision-response",
      dialect: thingsboardServing,
      outputs: { count: 2, decisions: 0, audit: 1, manage: 1 },
      settings: (): TbServeSettings => ({
        profiles: profilesOf(),
        repeatWindowMs: seconds(config.repeatWindow, 0, 0),
        mqtt: mqttOf(),
        coap: config.coap
          ? { host: text(config.coapHost) ?? "127.0.0.1", port: portOf(config.coapPort, 5683, unset) }
          : undefined,
        http: config.http ? { path: text(config.httpPath) } : undefined,
      }),
    });
  }

  RED.nodes.registerType<Node<ProvisionResponseCreds>, ProvisionResponseDef, unknown, ProvisionResponseCreds>(
    "provision-response",
    ProvisionResponseNode,
    {
      credentials: {
        attachedUsername: { type: "text" },
        attachedPassword: { type: "password" },
        kuraSecrets: { type: "text" },
        azureKeys: { type: "text" },
      },
    },
  );
};
