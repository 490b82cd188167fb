/**
 * ThingsBoard's serving dialect under the serving contract, once per transport with the
 * real device-side peers the suite already uses: Python paho-mqtt running as ThingsBoard's
 * reference self-provisioning script does (test/support/tbserve-paho-device.py) with
 * MQTT.js for the flood, curl over HTTP, libcoap's coap-client over CoAP.
 */

import { join } from "node:path";
import { connect } from "mqtt";
import {
  thingsboardServing,
  type TbRunningService,
  type TbServeSettings,
} from "../../lib/dialects/thingsboard/serving";
import { HTTP_PATH, MAX_REQUEST_BYTES } from "../../lib/dialects/thingsboard/wire";
import { PROJECT_ROOT } from "../support/node-red";
import { freeTcpPort, freeUdpPort } from "../support/ports";
import { run } from "../support/process";
import { KEY, profile, SECRET } from "../support/tbserve-fixtures";
import { servingDialectContract, type PeerAnswer } from "./serving-dialect.contract";

const PAHO_DEVICE = join(PROJECT_ROOT, "test", "support", "tbserve-paho-device.py");
const WRONG_SECRET = "not-the-provision-secret";
const FAILURE = '{"status":"FAILURE","errorMsg":"Failed to provision device!"}';
const NOT_FOUND = '{"status":"NOT_FOUND","errorMsg":"Provision data was not found!"}';
const NOT_JSON = "{this is not json";
const OVERSIZED = JSON.stringify({ provisionDeviceKey: KEY, pad: "x".repeat(MAX_REQUEST_BYTES + 1024) });

const request = (deviceName: string, secret = SECRET) =>
  JSON.stringify({ deviceName, provisionDeviceKey: KEY, provisionDeviceSecret: secret });

function body(raw: string): string {
  return raw.replace(/^(\d{3}|\d\.\d\d) /, "");
}

function statusOf(raw: string): string | undefined {
  try {
    return (JSON.parse(body(raw)) as { status?: string }).status;
  } catch {
    return undefined;
  }
}

function credentialsOf(a: PeerAnswer): string[] {
  try {
    const j = JSON.parse(body(a.raw)) as { credentialsValue?: unknown };
    if (typeof j.credentialsValue === "string") return [j.credentialsValue];
    if (j.credentialsValue && typeof j.credentialsValue === "object")
      return Object.values(j.credentialsValue as Record<string, unknown>).filter(
        (v): v is string => typeof v === "string" && v.length > 0,
      );
  } catch {
    // Not JSON: no credentials in it.
  }
  return [];
}

const base = {
  dialect: thingsboardServing,
  restartRule: "already-provisioned" as const,
  secrets: [SECRET, WRONG_SECRET],
  credentialsOf,
};

async function settingsFor(transport: "mqtt" | "http" | "coap"): Promise<TbServeSettings> {
  const profiles = [profile()];
  if (transport === "mqtt")
    return {
      profiles,
      mqtt: { mode: "embedded", host: "127.0.0.1", port: await freeTcpPort(), closeAfterMs: 0 },
    };
  if (transport === "coap")
    return { profiles, mqtt: { mode: "off" }, coap: { host: "127.0.0.1", port: await freeUdpPort() } };
  return { profiles, mqtt: { mode: "off" }, http: { path: HTTP_PATH } };
}

function mqttPort(settings: TbServeSettings): number {
  if (settings.mqtt.mode !== "embedded") throw new Error("embedded MQTT expected");
  return settings.mqtt.port;
}

/** One paho-mqtt device run; its printed reply, or what kept it from one. */
async function paho(port: number, name: string, env: Record<string, string>): Promise<PeerAnswer> {
  const out = await run("/usr/bin/python3", [PAHO_DEVICE, "127.0.0.1", String(port), name], {
    env: {
      ...process.env,
      THINGSBOARD_PROVISION_DEVICE_KEY: KEY,
      THINGSBOARD_PROVISION_DEVICE_SECRET: SECRET,
      ...env,
    },
  });
  const line = out.stdout
    .toString()
    .split("\n")
    .find((l) => l.startsWith("REPLY "));
  return { raw: line ? line.slice(6) : `NO REPLY (exit ${out.code})` };
}

/** MQTT.js as a flooding device: CONNACK refusals come back as "CONNACK <code>". */
function mqttOnce(port: number, payload: string): Promise<PeerAnswer> {
  return new Promise((resolve) => {
    const client = connect(`mqtt://127.0.0.1:${port}`, {
      username: "provision",
      protocolVersion: 4,
      reconnectPeriod: 0,
      connectTimeout: 10000,
    });
    const finish = (raw: string) => {
      client.end(true);
      resolve({ raw });
    };
    client.on("error", (err: Error & { code?: number }) => finish(`CONNACK ${err.code ?? err.message}`));
    client.on("message", (_topic, msg) => finish(msg.toString()));
    client.on("connect", () => {
      void client
        .subscribeAsync("/provision/response", { qos: 1 })
        .then(() => client.publishAsync("/provision/request", payload, { qos: 1 }))
        .catch((err: Error) => finish(`ERROR ${err.message}`));
    });
  });
}

servingDialectContract<TbServeSettings, TbRunningService>({
  ...base,
  name: "thingsboard over embedded MQTT (paho-mqtt, MQTT.js)",
  settings: () => settingsFor("mqtt"),
  peer: (_service, settings) => {
    const port = mqttPort(settings);
    return {
      valid: (name) => paho(port, name, {}),
      wrongProof: (name) => paho(port, name, { THINGSBOARD_PROVISION_DEVICE_SECRET: WRONG_SECRET }),
      malformed: () => paho(port, "x", { TBSERVE_RAW_PAYLOAD: NOT_JSON }),
      oversized: () => paho(port, "x", { TBSERVE_RAW_PAYLOAD: OVERSIZED }),
      flood: (n) => Promise.all(Array.from({ length: n }, (_, i) => mqttOnce(port, request(`flood-${i}`)))),
    };
  },
  is: {
    provisioned: (a) => statusOf(a.raw) === "SUCCESS",
    refused: (a) => a.raw === NOT_FOUND,
    failed: (a) => a.raw === FAILURE,
    // The embedded broker charges the rate at CONNECT: 3, server unavailable (MQTT 3.1.1, 3.2.2.3).
    throttled: (a) => a.raw === "CONNACK 3",
    denied: (a) => a.raw === FAILURE,
    locked: (a) => a.raw === FAILURE,
    alreadyProvisioned: (a) => a.raw === FAILURE,
  },
  endpoints: (_service, settings) => [{ protocol: "tcp", host: "127.0.0.1", port: mqttPort(settings) }],
});

/** curl as the device: "<status> <body>". */
async function curl(baseUrl: string, payload: string): Promise<PeerAnswer> {
  const out = await run(
    "curl",
    [
      "-sS",
      "-o",
      "-",
      "-w",
      "\n%{http_code}",
      "-X",
      "POST",
      "-H",
      "content-type: application/json",
      "--data-binary",
      "@-",
      baseUrl + HTTP_PATH,
    ],
    { input: payload },
  );
  const text = out.stdout.toString();
  const nl = text.lastIndexOf("\n");
  return { raw: `${text.slice(nl + 1)} ${text.slice(0, nl)}` };
}

servingDialectContract<TbServeSettings, TbRunningService>({
  ...base,
  name: "thingsboard over HTTP (curl)",
  settings: () => settingsFor("http"),
  peer: (_service, _settings, host) => ({
    valid: (name) => curl(host.httpBase, request(name)),
    wrongProof: (name) => curl(host.httpBase, request(name, WRONG_SECRET)),
    malformed: () => curl(host.httpBase, NOT_JSON),
    oversized: () => curl(host.httpBase, OVERSIZED),
    flood: (n) =>
      Promise.all(Array.from({ length: n }, (_, i) => curl(host.httpBase, request(`flood-${i}`)))),
  }),
  is: {
    provisioned: (a) => a.raw.startsWith("200 ") && statusOf(a.raw) === "SUCCESS",
    refused: (a) => a.raw === `200 ${NOT_FOUND}`,
    failed: (a) => a.raw === `200 ${FAILURE}`,
    // RFC 6585 section 4, as ThingsBoard's HTTP transport answers its rate limits.
    throttled: (a) => a.raw === `429 ${FAILURE}`,
    denied: (a) => a.raw === `200 ${FAILURE}`,
    locked: (a) => a.raw === `429 ${FAILURE}`,
    alreadyProvisioned: (a) => a.raw === `200 ${FAILURE}`,
  },
  endpoints: () => [],
  httpRoutes: () => [{ method: "POST", path: HTTP_PATH }],
});

/** libcoap's coap-client as the device: "<code> <body>". */
async function coap(port: number, payload: string): Promise<PeerAnswer> {
  const out = await run(
    "coap-client-notls",
    [
      "-m",
      "post",
      "-t",
      "application/json",
      "-f",
      "-",
      "-B",
      "10",
      "-v",
      "6",
      `coap://127.0.0.1:${port}/api/v1/provision`,
    ],
    { input: payload },
  );
  // A piggybacked answer comes in the ACK, a later one (after a decision) as its own CON.
  const m = /t:(?:ACK|CON|NON) c:(\d\.\d\d)[^\n]*?(?: :: '(.*)')?\n/.exec(out.stdout.toString());
  return { raw: m ? `${m[1]} ${m[2] ?? ""}` : `NO ANSWER ${out.stdout.toString().slice(0, 200)}` };
}

function coapPort(settings: TbServeSettings): number {
  if (!settings.coap) throw new Error("CoAP expected");
  return settings.coap.port;
}

servingDialectContract<TbServeSettings, TbRunningService>({
  ...base,
  name: "thingsboard over CoAP (libcoap coap-client)",
  settings: () => settingsFor("coap"),
  peer: (_service, settings) => {
    const port = coapPort(settings);
    return {
      valid: (name) => coap(port, request(name)),
      wrongProof: (name) => coap(port, request(name, WRONG_SECRET)),
      malformed: () => coap(port, NOT_JSON),
      // No oversized case: one datagram cannot carry 64 KiB, and a block-wise (RFC 7959)
      // upload past the limit is refused by the transport, block by block, with 5.00 and a
      // diagnostic before the service sees anything (test/unit/thingsboard/
      // server-coap-unacked.test.ts), not with the service's FAILURE.
      flood: (n) => Promise.all(Array.from({ length: n }, (_, i) => coap(port, request(`flood-${i}`)))),
    };
  },
  is: {
    provisioned: (a) => a.raw.startsWith("2.01 ") && statusOf(a.raw) === "SUCCESS",
    refused: (a) => a.raw === `4.00 ${NOT_FOUND}`,
    failed: (a) => a.raw === `4.00 ${FAILURE}`,
    // ThingsBoard's CoAP transport has no throttling code of its own: FAILURE, 4.00.
    throttled: (a) => a.raw === `4.00 ${FAILURE}`,
    denied: (a) => a.raw === `4.00 ${FAILURE}`,
    locked: (a) => a.raw === `4.00 ${FAILURE}`,
    alreadyProvisioned: (a) => a.raw === `4.00 ${FAILURE}`,
  },
  endpoints: (_service, settings) => [{ protocol: "udp", host: "127.0.0.1", port: coapPort(settings) }],
});
