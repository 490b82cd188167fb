/**
 * The Azure DPS serving dialect under the serving contract, over HTTPS, with a REST client
 * written on node:https as the device (register, then poll the operation as the
 * retry-after says), signing its SAS token with the key derived from a symmetric-key
 * group's. Microsoft's own SDK meets the service in test/unit/azure-dps/server-sdk-*.
 */
import { readFileSync } from "node:fs";
import { request } from "node:https";
import { azureDpsServing, type AzureRunningService } from "../../lib/dialects/azure-dps/serving";
import type { AzureServeSettings } from "../../lib/dialects/azure-dps/settings";
import { deriveDeviceKey, dpsResource, signSas } from "../../lib/dialects/azure-dps/sas";
import { httpRegisterPath, httpStatusPath } from "../../lib/dialects/azure-dps/wire";
import { makeAzurePki, randomLoopback, type AzurePki } from "../support/azure-dps-fixtures";
import { HUB_A, HUB_B, ID_SCOPE, key } from "../support/azure-dps-service";
import { servingDialectContract, type PeerAnswer } from "./serving-dialect.contract";

const GROUP_KEY = key();
const WRONG_KEY = key();
let fixture: { ip: string; pki: AzurePki } | undefined;
const pkiOnce = () => (fixture ??= ((ip) => ({ ip, pki: makeAzurePki(ip) }))(randomLoopback()));

interface Reply {
  status: number;
  retryAfterS: number;
  text: string;
}

function call(
  port: number,
  method: string,
  path: string,
  token: string,
  body?: string | Buffer,
): Promise<Reply> {
  const { ip, pki } = pkiOnce();
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: ip,
        port,
        method,
        path,
        ca: readFileSync(pki.serverCaPath),
        headers: { "content-type": "application/json", authorization: token },
        agent: false,
      },
      (res) => {
        let text = "";
        res.on("data", (d: Buffer) => (text += d.toString()));
        res.on("end", () =>
          resolve({
            status: res.statusCode ?? 0,
            retryAfterS: Number(res.headers["retry-after"] ?? 0),
            text,
          }),
        );
      },
    );
    req.on("error", reject);
    req.end(body);
  });
}

const tokenFor = (id: string, groupKey = GROUP_KEY) =>
  signSas(dpsResource(ID_SCOPE, id), deriveDeviceKey(groupKey, id), Date.now() / 1000 + 600);

/** Registers `id` and polls until the operation ends: "<status> <body>", or "ERROR <code>" when the socket failed. */
async function register(port: number, id: string, opts: { groupKey?: string; body?: string | Buffer } = {}) {
  const token = tokenFor(id, opts.groupKey);
  try {
    let r = await call(
      port,
      "PUT",
      httpRegisterPath(ID_SCOPE, id),
      token,
      opts.body ?? JSON.stringify({ registrationId: id }),
    );
    if (r.status !== 202) return `${r.status} ${r.text}`;
    const op = (JSON.parse(r.text) as { operationId: string }).operationId;
    for (;;) {
      // The device waits what the service says (here 0 s), at least a few milliseconds.
      await new Promise((resolve) => setTimeout(resolve, Math.max(20, r.retryAfterS * 1000)));
      r = await call(port, "GET", httpStatusPath(ID_SCOPE, id, op), token);
      if (r.status !== 202 && r.status !== 429) return `${r.status} ${r.text}`;
    }
  } catch (err) {
    return `ERROR ${(err as NodeJS.ErrnoException).code ?? "unknown"}`;
  }
}

const answer = async (p: Promise<string>): Promise<PeerAnswer> => ({ raw: await p });
const bodyOf = (a: PeerAnswer) => {
  try {
    return JSON.parse(a.raw.slice(a.raw.indexOf(" ") + 1)) as Record<string, unknown>;
  } catch {
    return {};
  }
};
const stateOf = (a: PeerAnswer) => (bodyOf(a).registrationState ?? {}) as Record<string, unknown>;

servingDialectContract<AzureServeSettings, AzureRunningService>({
  name: "azure-dps over HTTPS (a node:https REST client)",
  dialect: azureDpsServing,
  settings: async () => {
    const { ip, pki } = pkiOnce();
    return {
      idScope: ID_SCOPE,
      linkedHubs: [HUB_A, HUB_B],
      enrollments: [
        {
          kind: "group",
          id: "contract-group",
          attestation: "symmetric-key",
          primaryKey: GROUP_KEY,
          enabled: true,
        },
      ],
      retryAfterS: 0,
      pollLimit: { count: 1000, windowMs: 10000 },
      https: { host: ip, port: 0, tls: { key: pki.serverKey, cert: pki.serverCert } },
    };
  },
  peer: (service) => {
    const port = service.httpsPort as number;
    return {
      valid: (name) => answer(register(port, name)),
      wrongProof: (name) => answer(register(port, name, { groupKey: WRONG_KEY })),
      malformed: () => answer(register(port, "contract-malformed", { body: "{ not json" })),
      oversized: () => answer(register(port, "contract-oversized", { body: Buffer.alloc(200 * 1024, 0x20) })),
      flood: (n) => Promise.all(Array.from({ length: n }, (_, i) => answer(register(port, `flood-${i}`)))),
    };
  },
  is: {
    provisioned: (a) => a.raw.startsWith("200 ") && bodyOf(a).status === "assigned",
    refused: (a) => a.raw.startsWith("401 ") && bodyOf(a).errorCode === 401002,
    failed: (a) => /^(400|413) /u.test(a.raw),
    throttled: (a) => a.raw.startsWith("429 ") && bodyOf(a).errorCode === 429001,
    // Refused by the flow: the operation ends "failed".
    denied: (a) => a.raw.startsWith("200 ") && bodyOf(a).status === "failed",
    locked: (a) => a.raw.startsWith("429 ") && String(bodyOf(a).message).includes("failed attempts"),
    alreadyProvisioned: () => false,
  },
  // A registered device registering again keeps its place (Azure's re-provisioning).
  restartRule: "reuse",
  secrets: [WRONG_KEY, GROUP_KEY, deriveDeviceKey(GROUP_KEY, "contract-ok-1")],
  credentialsOf: (a) => {
    const s = stateOf(a);
    return s.status === "assigned"
      ? [`${String(s.assignedHub)}|${String(s.deviceId)}|${String(s.createdDateTimeUtc)}`]
      : [];
  },
  endpoints: (service) => [{ protocol: "tcp", host: pkiOnce().ip, port: service.httpsPort as number }],
});
