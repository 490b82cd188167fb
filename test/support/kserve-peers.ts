/**
 * Peers of the Everyware / Kura serving tests: the package's own device core
 * (provisionKuraDevice) as the honest device, and MQTT.js for raw sessions, each answer
 * written as one line of text ("OK <account password>", "DENIED CONNACK 4 ...").
 */
import { connectAsync } from "mqtt";
import { provisionKuraDevice, type KuraDeviceSettings } from "../../lib/dialects/kura/device";
import {
  DEFAULT_TOPICS,
  parseProvisionAnswer,
  PROVISION_APP_ID,
  topicFor,
} from "../../lib/dialects/kura/namespace";
import { decodeKuraPayload, encodeKuraPayload } from "../../lib/dialects/kura/payload";
import { ProvisioningError } from "../../lib/model/errors";

export const ACCOUNT = "kserve-acct";
export const PASSWORD = "provision-pass-0815";
export const WRONG_PASSWORD = "not-the-provision-pass";
export const ACTIVATION_KEY = "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6";
export const WRONG_KEY = "wrong-activation-key-0000000000000";
export const accountPassword = (clientId: string) => `account-pass-of-${clientId}`;
export const usernameOf = (clientId: string) => `${clientId}-SN1`;

/** A provision request for `clientId` as management takes it. */
export function requestFor(clientId: string, over: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    clientId,
    username: usernameOf(clientId),
    password: PASSWORD,
    activationKey: ACTIVATION_KEY,
    configuration: {
      brokerUrl: "mqtt://account-broker.example:1883",
      accountName: "ACME",
      username: `acme-${clientId}`,
      password: accountPassword(clientId),
      clientId,
    },
    applications: [{ name: "org.example.app", version: "1.0.0", uri: "https://example.org/app.dp" }],
    ...over,
  };
}

/** The answer, or the failure, as one line. */
export async function asLine(p: Promise<{ credentials: { password?: string } }>): Promise<string> {
  try {
    const r = await p;
    return `OK ${r.credentials.password ?? ""}`;
  } catch (err) {
    if (err instanceof ProvisioningError) return `${err.code} ${err.status ?? ""} ${err.message}`;
    return `ERROR ${(err as Error).message}`;
  }
}

export function device(
  port: number,
  clientId: string,
  over: Partial<KuraDeviceSettings> = {},
): KuraDeviceSettings {
  return {
    brokerUrl: `mqtt://127.0.0.1:${port}`,
    accountName: ACCOUNT,
    clientId,
    username: usernameOf(clientId),
    password: PASSWORD,
    activationKey: ACTIVATION_KEY,
    identity: { modelName: "test-gw", serialNumber: "SN1", firmwareVersion: "1.2.3" },
    ...over,
  };
}

/** The honest device: one attempt. */
export function provisionLine(
  port: number,
  clientId: string,
  over: Partial<KuraDeviceSettings> = {},
): Promise<string> {
  return asLine(provisionKuraDevice(device(port, clientId, over), { timeoutMs: 15000 }));
}

/**
 * A raw session sending `body` as its provision message (request id `rid`), waiting for
 * the answer on its reply topic: the answer as a line, or "NO ANSWER" when the session
 * is closed without one.
 */
export async function rawProvision(
  url: string,
  clientId: string,
  body: Buffer,
  rid: string,
  opts: { password?: string } = {},
): Promise<string> {
  const values = { account: ACCOUNT, clientId, appId: PROVISION_APP_ID, requestId: rid };
  const client = await connectAsync(url, {
    protocolVersion: 4,
    clientId,
    username: usernameOf(clientId),
    password: opts.password ?? PASSWORD,
    reconnectPeriod: 0,
  });
  try {
    await client.subscribeAsync(topicFor(DEFAULT_TOPICS.reply, values), { qos: 1 });
    const answer = new Promise<string>((resolve) => {
      client.on("message", (_t, payload) => {
        try {
          parseProvisionAnswer(decodeKuraPayload(payload));
          resolve("OK");
        } catch (err) {
          const e = err as ProvisioningError;
          resolve(`${e.code} ${e.status ?? ""} ${e.message}`);
        }
      });
      client.on("close", () => resolve("NO ANSWER"));
    });
    await client.publishAsync(topicFor(DEFAULT_TOPICS.request, values), body, { qos: 1 });
    return await answer;
  } finally {
    client.end(true);
  }
}

/** A provision message with a request id and no requester.client.id: malformed. */
export function malformedMessage(rid: string): Buffer {
  return encodeKuraPayload({ metrics: [{ name: "request.id", type: "STRING", value: rid }] });
}
