/**
 * The one way a plgd DPS result is built: from the answers of a run, and, for what a run
 * did not ask again (a renewal asks for credentials only), from the result it renews.
 */
import type { Configuration, Endpoint, ProvisioningResult } from "../../model/result";
import type { DpsAnswers } from "./run";

export interface ResultContext {
  endpoint: string;
  deviceId: string;
  deviceName?: string;
  /** Local time of the result (ms). */
  obtainedAt: number;
  /** The result a renewal replaces: its configuration and access token stay. */
  previous?: ProvisioningResult;
}

/** Throws when an answer the result needs is neither in `answers` nor in `previous`. */
export function buildResult(answers: DpsAnswers, ctx: ResultContext): ProvisioningResult {
  const { cloud, owner, acls, credentials: creds } = answers;
  const prev = ctx.previous;
  let configuration: Configuration | undefined = prev?.configuration;
  let token = prev?.credentials.token;
  if (cloud || owner || acls) {
    if (!cloud || !owner || !acls) throw new Error("provisioning finished without every step's answer");
    const servers: Endpoint[] = [{ uri: cloud.cis, id: cloud.sid }];
    for (const s of cloud["x.org.iotivity.servers"] ?? []) {
      if (!servers.some((x) => x.uri === s.uri && x.id === s.id)) servers.push({ uri: s.uri, id: s.id });
    }
    configuration = {
      owner,
      hubId: cloud.sid,
      servers,
      authorizationProvider: cloud.apn,
      acls: acls.aclist2,
    };
    token = cloud.at;
  }
  if (!creds || !configuration) throw new Error("provisioning finished without every step's answer");
  const result: ProvisioningResult = {
    dialect: "plgd-dps",
    endpoint: ctx.endpoint,
    device: { id: ctx.deviceId },
    proof: "manufacturer-certificate",
    credentials: {
      type: "IDENTITY_CERTIFICATE",
      certificate: creds.chain,
      privateKey: creds.privateKey,
      caCertificates: creds.caCertificates,
    },
    configuration,
    obtainedAt: new Date(ctx.obtainedAt).toISOString(),
    expiresAt: creds.notAfter.toISOString(),
    reused: false,
  };
  if (token !== undefined) result.credentials.token = token;
  const name = ctx.deviceName ?? prev?.device.name;
  if (name) result.device.name = name;
  const password = creds.psk ?? prev?.credentials.password;
  if (password !== undefined) result.credentials.password = password;
  return result;
}
