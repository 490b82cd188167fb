/**
 * dps-service: serves plgd DPS on coaps+tcp with mutual TLS for the configured
 * enrollment groups, and sends one audit event per outcome (never a secret).
 */
import type { Node, NodeAPI, NodeDef } from "node-red";
import { listenDps, type DpsListener } from "../lib/dialects/plgd-dps/listen";
import { DpsService } from "../lib/dialects/plgd-dps/server";
import type { EnrollmentGroup } from "../lib/dialects/plgd-dps/enrollment";

interface ServiceDef extends NodeDef {
  host?: string;
  port?: string | number;
  tls?: string;
  groups?: string[] | string;
  maxConnections?: string | number;
  maxConnectionsPerAddress?: string | number;
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

interface TlsConfigNode {
  addTLSOptions(opts: Record<string, unknown>): Record<string, unknown>;
}

const S = "dps-service.";

export = function (RED: NodeAPI) {
  function DpsServiceNode(this: Node, config: ServiceDef) {
    RED.nodes.createNode(this, config);
    // eslint-disable-next-line @typescript-eslint/no-this-alias
    const node = this;
    let listener: DpsListener | undefined;
    let closing = false;
    let provisioned = 0;
    let problem: string | undefined;

    const fail = (reason: string) => {
      problem = reason;
      node.status({ fill: "red", shape: "ring", text: RED._(S + "status.failed") });
      node.error(RED._(S + "errors.start", { reason }));
    };

    const host = (config.host ?? "").trim() || "127.0.0.1";
    const port = Number(config.port ?? 15684);
    const ids = Array.isArray(config.groups)
      ? config.groups
      : typeof config.groups === "string" && config.groups
        ? [config.groups]
        : [];
    const groups: EnrollmentGroup[] = [];
    for (const id of ids) {
      const g = RED.nodes.getNode(id) as unknown as EnrollmentGroupNode | null;
      if (!g) problem ??= RED._(S + "errors.group-missing", { id });
      else if (!g.group) problem ??= RED._(S + "errors.group-invalid", { reason: g.problem ?? "" });
      else groups.push(g.group);
    }
    if (!problem && groups.length === 0) problem = RED._(S + "errors.no-groups");
    if (!problem && !(Number.isInteger(port) && port >= 0 && port < 65536))
      problem = RED._(S + "errors.port");
    const maxConnections = cap(config.maxConnections, DEFAULT_MAX_CONNECTIONS);
    const maxConnectionsPerAddress = cap(config.maxConnectionsPerAddress, DEFAULT_MAX_PER_ADDRESS);
    if (!problem && (maxConnections === undefined || maxConnectionsPerAddress === undefined))
      problem = RED._(S + "errors.limits");
    const tlsNode = config.tls ? (RED.nodes.getNode(config.tls) as unknown as TlsConfigNode | null) : null;
    if (!problem && (!tlsNode || typeof tlsNode.addTLSOptions !== "function"))
      problem = RED._(S + "errors.tls-missing");

    if (problem) {
      fail(problem);
    } else {
      const service = new DpsService({
        groups,
        onAudit: (event) => {
          if (event.outcome === "provisioned") provisioned++;
          node.send({ topic: "plgd-dps/audit", payload: event });
          node.status({
            fill: "green",
            shape: "dot",
            text: RED._(S + "status.serving", {
              port: String(listener?.port ?? port),
              count: String(provisioned),
            }),
          });
        },
      });
      const opts = (tlsNode as TlsConfigNode).addTLSOptions({});
      node.status({ fill: "blue", shape: "ring", text: RED._(S + "status.starting") });
      listenDps({
        service,
        host,
        port,
        tls: {
          cert: opts.cert as string,
          key: opts.key as string,
          passphrase: opts.passphrase as string | undefined,
        },
        maxConnections,
        maxConnectionsPerAddress,
        onError: (err) => node.debug(err.message),
      }).then(
        (l) => {
          if (closing) {
            void l.close();
            return;
          }
          listener = l;
          node.status({
            fill: "green",
            shape: "dot",
            text: RED._(S + "status.serving", { port: String(l.port), count: "0" }),
          });
          node.log(RED._(S + "log.listening", { host, port: String(l.port) }));
        },
        (err: Error) => fail(err.message),
      );
    }

    node.on("close", (_removed: boolean, done: () => void) => {
      closing = true;
      const l = listener;
      listener = undefined;
      if (!l) return done();
      l.close().then(
        () => done(),
        () => done(),
      );
    });
  }
  RED.nodes.registerType("dps-service", DpsServiceNode);
};
