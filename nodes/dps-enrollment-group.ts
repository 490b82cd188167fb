/**
 * dps-enrollment-group: one plgd DPS enrollment group as a config node. Its
 * certificates and signing key are parsed once here; dps-service nodes use `group`.
 */
import type { Node, NodeAPI, NodeDef } from "node-red";
import { credentialValue } from "../lib/client/env-ref";
import {
  parseEnrollmentGroup,
  parseValidity,
  pemFrom,
  type EnrollmentGroup,
} from "../lib/dialects/plgd-dps/enrollment";
import { demoPkiOf, type DemoPkiMaterial } from "./shared/demo-pki";

interface GroupDef extends NodeDef {
  groupId?: string;
  owner?: string;
  attestationChain?: string;
  expiredCertificateEnabled?: boolean;
  hubCaPool?: string;
  hubId?: string;
  gateways?: string;
  authorizationProvider?: string;
  tokenMode?: string;
  caCertificate?: string;
  validity?: string;
  attestationChainFile?: string;
  hubCaPoolFile?: string;
  caCertificateFile?: string;
  /** A path to the signing key (plgd style); the key credential wins when both are set. */
  caKeyFile?: string;
  /** The demo PKI's manufacturer CA, hub CA and its key instead of the fields (nodes/shared/demo-pki.ts). */
  demoPki?: boolean;
}

interface GroupCreds {
  preSharedKey?: string;
  caKey?: string;
  caKeyPassphrase?: string;
  accessToken?: string;
}

export = function (RED: NodeAPI) {
  function DpsEnrollmentGroupNode(this: Node<GroupCreds>, config: GroupDef) {
    RED.nodes.createNode(this, config);
    // What dps-service nodes read at run time: the parsed group, or why it is unusable.
    const self = this as Node<GroupCreds> & { group?: EnrollmentGroup; problem?: string };
    const env = (name: string): string | undefined => {
      const v: unknown = RED.util.getSetting(this, name);
      return typeof v === "string" ? v : undefined;
    };
    const c = this.credentials ?? {};
    try {
      const demo: DemoPkiMaterial | undefined =
        config.demoPki === true
          ? demoPkiOf(RED, (dir) => RED._("dps-enrollment-group.warn.demo-pki", { dir }))
          : undefined;
      self.group = parseEnrollmentGroup({
        id: (config.groupId ?? "").trim(),
        name: config.name || undefined,
        owner: config.owner ?? "",
        attestationChain:
          demo?.manufacturerCaCert ??
          pemFrom(config.attestationChain, config.attestationChainFile, "attestation chain"),
        expiredCertificateEnabled: config.expiredCertificateEnabled === true,
        preSharedKey: credentialValue(c.preSharedKey, env) || undefined,
        hub: {
          caPool: demo?.hubCaCert ?? pemFrom(config.hubCaPool, config.hubCaPoolFile, "hub CA pool"),
          hubId: config.hubId ?? "",
          gateways: (config.gateways ?? "").split(/[\s,]+/),
          authorizationProvider: config.authorizationProvider || "plgd",
          tokenMode: config.tokenMode === "static" ? "static" : "random",
          accessToken: credentialValue(c.accessToken, env) || undefined,
        },
        authority: {
          certificate:
            demo?.hubCaCert ??
            pemFrom(config.caCertificate, config.caCertificateFile, "signing CA certificate"),
          key: demo?.hubCaKey ?? pemFrom(credentialValue(c.caKey, env), config.caKeyFile, "signing CA key"),
          passphrase: demo ? undefined : credentialValue(c.caKeyPassphrase, env) || undefined,
        },
        validityMs: parseValidity(config.validity),
      });
    } catch (err) {
      self.problem = (err as Error).message;
      this.warn(RED._("dps-enrollment-group.errors.invalid", { reason: self.problem }));
    }
  }
  RED.nodes.registerType<Node<GroupCreds>, GroupDef, unknown, GroupCreds>(
    "dps-enrollment-group",
    DpsEnrollmentGroupNode,
    {
      credentials: {
        preSharedKey: { type: "password" },
        caKey: { type: "password" },
        caKeyPassphrase: { type: "password" },
        accessToken: { type: "password" },
      },
    },
  );
};
