/**
 * Devices for the soak, fault, race and abuse suites: one honest request per protocol the
 * demo serves, each from a chosen loopback source address (127.0.0.0/8 only), and a scan
 * of everything a run produced for the secrets it used.
 */
import { request as httpRequest } from "node:http";
import { createConnection } from "node:net";
import { MqttClient, type IClientOptions } from "mqtt";
import { join } from "node:path";
import { libcoapClient } from "./coaptcp-peers";
import { pythonDevice } from "./mainflux-fixtures";
import { DEMO_SECRETS } from "./soak-demo";

export interface HttpAnswer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** One HTTP request on a fresh connection, never reused, from `localAddress`. */
export function httpCall(
  port: number,
  path: string,
  opts: {
    method?: string;
    body?: string | Buffer;
    headers?: Record<string, string>;
    localAddress?: string;
    timeoutMs?: number;
  } = {},
): Promise<HttpAnswer> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      {
        host: "127.0.0.1",
        port,
        path,
        method: opts.method ?? "POST",
        localAddress: opts.localAddress ?? "127.0.0.1",
        agent: false,
        headers: { connection: "close", ...(opts.headers ?? { "content-type": "application/json" }) },
        timeout: opts.timeoutMs ?? 15000,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () =>
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body: Buffer.concat(chunks).toString(),
          }),
        );
        res.on("error", reject);
      },
    );
    req.on("timeout", () => req.destroy(new Error(`no answer within ${opts.timeoutMs ?? 15000} ms`)));
    req.on("error", reject);
    req.end(opts.body);
  });
}

export interface TbAnswer {
  status?: string;
  credentialsType?: string;
  credentialsValue?: unknown;
  errorMsg?: string;
  [k: string]: unknown;
}

/** ThingsBoard over HTTP (POST /api/v1/provision); the answer, or the HTTP status when not 200. */
export async function tbHttp(
  port: number,
  deviceName: string,
  opts: { key?: string; secret?: string; localAddress?: string; extra?: Record<string, unknown> } = {},
): Promise<{ http: number; answer?: TbAnswer; body: string; retryAfter?: string }> {
  const res = await httpCall(port, "/api/v1/provision", {
    body: JSON.stringify({
      deviceName,
      provisionDeviceKey: opts.key ?? DEMO_SECRETS.PROVISION_DEVICE_KEY,
      provisionDeviceSecret: opts.secret ?? DEMO_SECRETS.PROVISION_DEVICE_SECRET,
      ...(opts.extra ?? {}),
    }),
    localAddress: opts.localAddress,
  });
  let answer: TbAnswer | undefined;
  try {
    answer = JSON.parse(res.body) as TbAnswer;
  } catch {
    /* not JSON: the caller sees the body */
  }
  const retryAfter = res.headers["retry-after"];
  return {
    http: res.status,
    answer,
    body: res.body,
    retryAfter: typeof retryAfter === "string" ? retryAfter : undefined,
  };
}

/** ThingsBoard over MQTT (user name "provision", /provision/request), one session per device. */
/**
 * An MQTT client on 127.0.0.1:`port` whose TCP connection starts from `localAddress`
 * (mqtt.js's own TCP builder ignores that option, so every "device" came from 127.0.0.1).
 */
export function mqttFrom(port: number, localAddress: string | undefined, opts: IClientOptions): MqttClient {
  return new MqttClient(
    () => createConnection({ host: "127.0.0.1", port, ...(localAddress ? { localAddress } : {}) }),
    { protocolId: "MQTT", keepalive: 60, ...opts },
  );
}

export function tbMqtt(
  port: number,
  deviceName: string,
  opts: { key?: string; secret?: string; localAddress?: string; timeoutMs?: number } = {},
): Promise<TbAnswer> {
  return new Promise((resolve, reject) => {
    const client = mqttFrom(port, opts.localAddress, {
      username: "provision",
      protocolVersion: 4,
      reconnectPeriod: 0,
      connectTimeout: 10000,
      clean: true,
    });
    const timer = setTimeout(() => finish(new Error("no MQTT answer in time")), opts.timeoutMs ?? 15000);
    let done = false;
    const finish = (err: Error | null, value?: TbAnswer) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      client.end(true);
      if (err) reject(err);
      else resolve(value as TbAnswer);
    };
    // A refused CONNECT (MQTT 3.1.1 CONNACK return code, e.g. 3 "server unavailable") is
    // an answer in the protocol's terms, not a lost request.
    client.on("error", (err) => {
      const code = (err as { code?: unknown }).code;
      if (typeof code === "number") finish(null, { status: `CONNACK_${code}` });
      else finish(err);
    });
    client.on("close", () => finish(new Error("MQTT session closed without an answer")));
    client.on("message", (_topic, payload) => {
      try {
        finish(null, JSON.parse(payload.toString()) as TbAnswer);
      } catch (err) {
        finish(err as Error);
      }
    });
    client.on("connect", () => {
      client.subscribe("/provision/response", { qos: 1 }, (err) => {
        if (err) return finish(err);
        client.publish(
          "/provision/request",
          JSON.stringify({
            deviceName,
            provisionDeviceKey: opts.key ?? DEMO_SECRETS.PROVISION_DEVICE_KEY,
            provisionDeviceSecret: opts.secret ?? DEMO_SECRETS.PROVISION_DEVICE_SECRET,
          }),
          { qos: 1 },
        );
      });
    });
  });
}

/** The Mainflux device written in Python (secure mode) against the demo's bootstrap service. */
export function mainfluxDevice(url: string, key = DEMO_SECRETS.BOOTSTRAP_EXTERNAL_KEY) {
  return pythonDevice(url, DEMO_SECRETS.BOOTSTRAP_EXTERNAL_ID, key, DEMO_SECRETS.BOOTSTRAP_ENCRYPT_KEY);
}

/** libcoap over coaps+tcp with the demo manufacturer certificate: GET /x.plgd.dev/time. */
export async function dpsTime(userDir: string, port: number): Promise<boolean> {
  const pki = join(userDir, "plgd-dps-demo-pki");
  const r = await libcoapClient([
    "-m",
    "get",
    "-B",
    "10",
    "-c",
    join(pki, "device-manufacturer.pem"),
    "-j",
    join(pki, "device-manufacturer.key"),
    "-C",
    join(pki, "dps-ca.pem"),
    `coaps+tcp://127.0.0.1:${port}/x.plgd.dev/time`,
  ]);
  return r.code === 0 && /\d{4}-\d{2}-\d{2}T\d{2}:\d{2}/.test(r.stdout.toString("latin1"));
}

/** Where each secret was found: "<secret label> in <place>". */
export function scanForSecrets(
  places: Array<{ place: string; text: string }>,
  secrets: Array<{ label: string; value: string }>,
): string[] {
  const hits: string[] = [];
  for (const s of secrets) {
    if (s.value.length < 6) continue;
    for (const p of places) if (p.text.includes(s.value)) hits.push(`${s.label} in ${p.place}`);
  }
  return hits;
}

/** Distinctive lines of a PEM private key (its base64 body), as needles for scanForSecrets. */
export function pemNeedles(label: string, pem: string): Array<{ label: string; value: string }> {
  return pem
    .split("\n")
    .filter((l) => l.length >= 40 && !l.startsWith("-----"))
    .map((value, i) => ({ label: `${label} line ${i + 1}`, value }));
}
