/**
 * provisioning-profile: one ThingsBoard-style device profile served by provision-response
 * (name, strategy, credentials type, re-provision policy). The provision key and secret
 * are credentials of type password, so they never sit in flows.json; either may be a
 * `${ENV_VAR}` reference, resolved when the flow starts.
 */
import type { Node, NodeAPI, NodeDef } from "node-red";
import type { TbProfile, TbStrategy } from "../lib/dialects/thingsboard/server";
import type { TbCredentialsType } from "../lib/dialects/thingsboard/wire";

interface ProfileDef extends NodeDef {
  strategy?: string;
  credentialsType?: string;
  allowReprovision?: boolean;
}

interface ProfileCreds {
  key?: string;
  secret?: string;
}

/** provision-response reads `tbProfile` and `problem` from these nodes. */
interface ProvisioningProfileNode extends Node<ProfileCreds> {
  /** The profile as the service core takes it, or undefined when it is unusable. */
  tbProfile?: TbProfile;
  /** Why it is unusable (no secret in it). */
  problem?: string;
}

const ENV_REF = /\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g;

export = function (RED: NodeAPI) {
  function resolve(node: Node, value: string | undefined): string {
    return (value ?? "").replace(ENV_REF, (_m, name: string) => {
      try {
        const v = RED.util.getSetting(node, name) as unknown;
        if (typeof v === "string") return v;
      } catch {
        // Older runtimes: fall back to the process environment.
      }
      return process.env[name] ?? "";
    });
  }

  function ProvisioningProfile(this: ProvisioningProfileNode, config: ProfileDef) {
    RED.nodes.createNode(this, config);
    const strategy: TbStrategy =
      config.strategy === "check-pre-provisioned" ? "check-pre-provisioned" : "allow-create";
    const type = (
      ["ACCESS_TOKEN", "MQTT_BASIC", "X509_CERTIFICATE"].includes(config.credentialsType ?? "")
        ? config.credentialsType
        : "ACCESS_TOKEN"
    ) as TbCredentialsType;
    const key = resolve(this, this.credentials?.key);
    const secret = resolve(this, this.credentials?.secret);
    const name = (config.name ?? "").trim();
    if (!name) this.problem = RED._("provisioning-profile.errors.no-name");
    else if (!key || !secret) this.problem = RED._("provisioning-profile.errors.no-key", { name });
    else {
      this.tbProfile = {
        name,
        provisionDeviceKey: key,
        provisionDeviceSecret: secret,
        strategy,
        credentialsType: type,
        allowReprovision: config.allowReprovision === true,
      };
    }
  }

  RED.nodes.registerType<ProvisioningProfileNode, ProfileDef, unknown, ProfileCreds>(
    "provisioning-profile",
    ProvisioningProfile,
    {
      credentials: {
        key: { type: "password" },
        secret: { type: "password" },
      },
    },
  );
};
