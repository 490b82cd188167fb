/**
 * dps-service: serves plgd DPS on coaps+tcp with mutual TLS for the configured
 * enrollment groups. The lifecycle is every serving node's (nodes/shared/serving-node.ts):
 * the devices are kept in the credential store, the rate limit and the failed-proof guard
 * apply, and with "decide" on the flow approves each identity certificate before it is
 * issued. One audit event per outcome (never a secret).
 */
import type { Node, NodeAPI, NodeDef } from "node-red";
import type { EnrollmentGroup } from "../lib/dialects/plgd-dps/enrollment";
import { plgdDpsServing, type DpsServeSettings } from "../lib/dialects/plgd-dps/serving";
import { text } from "./shared/config";
import { tlsServerOptionsOf } from "./shared/config";
import { runServingNode, type ServingNodeConfig } from "./shared/serving-node";
import { demoPkiOf } from "./shared/demo-pki";

interface ServiceDef extends NodeDef, ServingNodeConfig {
  host?: string;
  port?: string | number;
  /** The demo PKI's DPS server certificate instead of a tls-config (nodes/shared/demo-pki.ts). */
  demoPki?: boolean;
  tls?: string;
  /** The enrollment groups: four config references (the dialog's slots). */
  group?: string;
  group2?: string;
  group3?: string;
  group4?: string;
  /** Before the slots: a list of group ids, still read when every slot is empty. */
  groups?: string[] | string;
  maxConnections?: string | number;
  maxConnectionsPerAddress?: string | number;
  /** Expect a PROXY protocol header on every connection (absent in flows saved before it: off). */
  proxyProtocol?: boolean;
}

/** Defaults of the connection caps (lib/transports/coap-tcp/server.ts has the same). */
const DEFAULT_MAX_CONNECTIONS = 1000;
const DEFAULT_MAX_PER_ADDRESS = 50;

/** A whole number from 1; an empty field (flows made before the setting) is the default. */
function cap(v: string | number | undefined, dflt: number): number | undefined {
  if (v === undefined || v === "") return dflt;
  const n = Number(v);
  return Number.isInteger(n) && n >= 1 ? n : undefined;
}

/** What a dps-enrollment-group config node holds at run time. */
interface EnrollmentGroupNode {
  group?: EnrollmentGroup;
  problem?: string;
}

const S = "dps-service.";

/**
 * The group ids a saved node names: its slots (group .. group4), or, when every slot is
 * empty (a flow saved before them), its `groups` list; repeats count once, as the dialog's.
 */
function groupIdsOf(config: Pick<ServiceDef, "group" | "group2" | "group3" | "group4" | "groups">): string[] {
  const slots = [config.group, config.group2, config.group3, config.group4];
  const clean = (v: unknown) => (typeof v === "string" ? v.trim() : "");
  const listed = slots.some((id) => clean(id) !== "");
  const ids: unknown[] = listed ? slots : Array.isArray(config.groups) ? config.groups : [config.groups];
  const out: string[] = [];
  for (const id of ids) {
    const t = clean(id);
    if (t && !out.includes(t)) out.push(t);
  }
  return out;
}

export = function (RED: NodeAPI) {
  function DpsServiceNode(this: Node, config: ServiceDef) {
    RED.nodes.createNode(this, config);
    // eslint-disable-next-line @typescript-eslint/no-this-alias
    const node = this;
    const t = (key: string, values?: Record<string, string>) => RED._(S + key, values);
    // Read at construction, as a tls-config would be (the dialog's choice, never a default).
    let demoPki: ReturnType<typeof demoPkiOf> | undefined;
    let demoProblem: string | undefined;
    try {
      if (config.demoPki === true) demoPki = demoPkiOf(RED, (dir) => t("warn.demo-pki", { dir }));
    } catch (err) {
      demoProblem = (err as Error).message;
    }

    const settings = (): DpsServeSettings => {
      const problem = (reason: string) => new Error(t("errors.start", { detail: reason }));
      if (demoProblem !== undefined) throw problem(demoProblem);
      const ids = groupIdsOf(config);
      const groups: EnrollmentGroup[] = [];
      for (const id of ids) {
        const g = RED.nodes.getNode(id) as unknown as EnrollmentGroupNode | null;
        if (!g) throw problem(t("errors.group-missing", { id }));
        if (!g.group) throw problem(t("errors.group-invalid", { reason: g.problem ?? "" }));
        groups.push(g.group);
      }
      if (groups.length === 0) throw problem(t("errors.no-groups"));
      const port = Number(config.port ?? 15684);
      if (!(Number.isInteger(port) && port >= 0 && port < 65536)) throw problem(t("errors.port"));
      const maxConnections = cap(config.maxConnections, DEFAULT_MAX_CONNECTIONS);
      const maxConnectionsPerAddress = cap(config.maxConnectionsPerAddress, DEFAULT_MAX_PER_ADDRESS);
      if (maxConnections === undefined || maxConnectionsPerAddress === undefined)
        throw problem(t("errors.limits"));
      let tls;
      try {
        tls = demoPki
          ? { cert: demoPki.dpsServerCert, key: demoPki.dpsServerKey }
          : tlsServerOptionsOf(RED, config.tls, {
              missing: t("errors.tls-missing"),
              invalid: t("errors.tls-missing"),
            });
      } catch (err) {
        throw problem((err as Error).message);
      }
      if (!tls) throw problem(t("errors.tls-missing"));
      return {
        groups,
        host: text(config.host) ?? "127.0.0.1",
        port,
        tls: { cert: tls.cert, key: tls.key, passphrase: tls.passphrase },
        maxConnections,
        maxConnectionsPerAddress,
        proxyProtocol: config.proxyProtocol === true,
        onError: (err) => node.debug(err.message),
      };
    };

    // With "decide" on, output 1 carries the requests to decide and output 2 the audit;
    // without it (every flow made before the option) the audit stays on output 1.
    const decide = config.decide === true;
    const { started } = runServingNode({
      RED,
      node,
      config,
      type: "dps-service",
      dialect: plgdDpsServing,
      settings,
      outputs: decide ? { count: 2, decisions: 0, audit: 1, manage: 1 } : { count: 1, audit: 0, manage: 0 },
      // The status says it while the demo PKI serves: its keys are no secret.
      statusValues: demoPki
        ? (service) => ({ transports: `${service.labels.join(", ")} · ${t("status.demo-pki")}` })
        : undefined,
    });
    void started.then((s) => {
      if (s) node.log(t("log.listening", { host: text(config.host) ?? "127.0.0.1", port: String(s.port) }));
    });
  }
  RED.nodes.registerType("dps-service", DpsServiceNode);
};
