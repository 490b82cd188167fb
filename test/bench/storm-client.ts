/**
 * A storm client in a process of its own (child_process.fork of this file): the bench
 * starts as many as it needs so that the client is not what limits the server. It says
 * `{ ready }`, then runs each `{ job }` it is sent and answers `{ result }`: one latency per
 * device (ms, from its first byte to its answer), errors counted with a few samples.
 *
 * Devices are written by hand on the wire, cheap for the client:
 * - mqtt: one session per device, as a ThingsBoard device provisions (user name
 *   `provision`, SUBSCRIBE /provision/response QoS 1, PUBLISH /provision/request QoS 1,
 *   the answer, DISCONNECT; MQTT 3.1.1 sections 3.1 to 3.14), over TCP or TLS (a full
 *   handshake per device, no session resumption, as a fleet of devices does);
 * - http: POST /api/v1/provision over keep-alive connections (one per worker);
 * - coap: confirmable POST coap://.../api/v1/provision (RFC 7252), one UDP socket per
 *   worker so that message ids never repeat within EXCHANGE_LIFETIME (RFC 7252 4.8.2);
 * - bootstrap: the package's own Mainflux client (plain, secure or gcm);
 * - dps: the package's own plgd DPS run (time, owner, cloud, credentials with a fresh key
 *   and CSR, ACLs) over coaps+tcp with the manufacturer certificate, a new device id each;
 * - handshake: a TLS handshake with the manufacturer certificate, then close.
 */
import { createSocket, type Socket as UdpSocket } from "node:dgram";
import { Agent, request as httpRequest } from "node:http";
import { connect as netConnect, type Socket } from "node:net";
import { connect as tlsConnect } from "node:tls";
import { generate as coapGenerate, parse as coapParse } from "coap-packet";
import { randomUUID } from "node:crypto";
import { bootstrapOnce, prepare, type BootstrapMode } from "../../lib/dialects/mainflux/client";
import { provisionOnce } from "../../lib/dialects/plgd-dps/run";
import { STEP_ORDER } from "../../lib/dialects/plgd-dps/status";
import { coapTcpConnector } from "../../lib/dialects/plgd-dps/transport";
import { systemTimerClock } from "../../lib/util/long-timer";

export interface StormJob {
  kind: "mqtt" | "http" | "coap" | "bootstrap" | "dps" | "handshake";
  host: string;
  port: number;
  /** Device names are `${prefix}-${i}` for i in [from, from + count). */
  prefix: string;
  from: number;
  count: number;
  concurrency: number;
  /** MQTT: TLS, trusting this CA (PEM); the certificate's name is checked against "localhost". */
  tlsCa?: string;
  /** Spread sessions over 127.<client>.<w/50>.<w%50+1> (loopback only), under a per-address limit. */
  sourceAddresses?: boolean;
  client?: number;
  key?: string;
  secret?: string;
  /** dps, handshake: the device's manufacturer certificate and key, and the CA of the service (PEM) */
  tlsCert?: string;
  tlsKey?: string;
  /** bootstrap */
  url?: string;
  externalId?: string;
  externalKey?: string;
  mode?: BootstrapMode;
  encryptionKey?: string;
  keyId?: string;
}

export interface StormResult {
  latencies: number[];
  errors: number;
  errorSamples: string[];
}

const TIMEOUT_MS = 30000;
const now = () => Number(process.hrtime.bigint()) / 1e6;

function body(job: StormJob, name: string): string {
  return JSON.stringify({ deviceName: name, provisionDeviceKey: job.key, provisionDeviceSecret: job.secret });
}

function checkAnswer(text: string): void {
  const status = (JSON.parse(text) as { status?: string }).status;
  if (status !== "SUCCESS") throw new Error(`answer ${status}`);
}

function mqttString(s: string): Buffer {
  const b = Buffer.from(s);
  return Buffer.concat([Buffer.from([b.length >> 8, b.length & 255]), b]);
}

function mqttPacket(first: number, parts: Buffer[]): Buffer {
  const payload = Buffer.concat(parts);
  const len: number[] = [];
  let n = payload.length;
  do {
    let byte = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) byte |= 0x80;
    len.push(byte);
  } while (n > 0);
  return Buffer.concat([Buffer.from([first, ...len]), payload]);
}

const SUBSCRIBE = mqttPacket(0x82, [
  Buffer.from([0, 1]),
  mqttString("/provision/response"),
  Buffer.from([1]),
]);
const DISCONNECT = Buffer.from([0xe0, 0]);

/** One MQTT device, start to answer. */
function mqttDevice(job: StormJob, name: string, localAddress: string | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    let socket: Socket;
    const opts = { host: job.host, port: job.port, ...(localAddress ? { localAddress } : {}) };
    let done = false;
    const finish = (err?: Error) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      if (err) socket.destroy();
      else socket.end(DISCONNECT);
      if (err) reject(err);
      else resolve();
    };
    const timer = setTimeout(() => finish(new Error("no answer in 30 s")), TIMEOUT_MS);
    const onConnected = () => {
      socket.setNoDelay(true);
      socket.write(
        mqttPacket(0x10, [
          mqttString("MQTT"),
          Buffer.from([4, 0x82, 0, 60]), // 3.1.1, user name + clean session, keepalive 60 s
          mqttString(name),
          mqttString("provision"),
        ]),
      );
    };
    if (job.tlsCa !== undefined)
      socket = tlsConnect({ ...opts, ca: job.tlsCa, servername: "localhost" }, onConnected);
    else socket = netConnect(opts, onConnected);
    let buf: Buffer = Buffer.alloc(0);
    socket.on("data", (chunk: Buffer) => {
      buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
      for (;;) {
        if (buf.length < 2) return;
        let len = 0;
        let mul = 1;
        let i = 1;
        for (; i < buf.length && i <= 4; i++) {
          len += (buf[i] & 127) * mul;
          mul *= 128;
          if ((buf[i] & 128) === 0) break;
        }
        if (i >= buf.length || buf.length < i + 1 + len) return;
        const type = buf[0] >> 4;
        const p = buf.subarray(i + 1, i + 1 + len);
        const flags = buf[0] & 15;
        buf = buf.subarray(i + 1 + len);
        if (type === 2) {
          if (p[1] !== 0) return finish(new Error(`CONNACK ${p[1]}`));
          socket.write(SUBSCRIBE);
        } else if (type === 9) {
          if (p[2] === 0x80) return finish(new Error("SUBACK refused"));
          socket.write(
            mqttPacket(0x32, [
              mqttString("/provision/request"),
              Buffer.from([0, 2]),
              Buffer.from(body(job, name)),
            ]),
          );
        } else if (type === 3) {
          const tlen = p.readUInt16BE(0);
          let off = 2 + tlen;
          const qos = (flags >> 1) & 3;
          if (qos > 0) {
            socket.write(Buffer.from([0x40, 2, p[off], p[off + 1]]));
            off += 2;
          }
          try {
            checkAnswer(p.subarray(off).toString());
            finish();
          } catch (err) {
            finish(err as Error);
          }
        }
      }
    });
    socket.on("error", (err) => finish(err));
    socket.on("close", () => finish(new Error("closed before the answer")));
  });
}

function httpDevice(job: StormJob, name: string, agent: Agent): Promise<void> {
  return new Promise((resolve, reject) => {
    const payload = Buffer.from(body(job, name));
    const req = httpRequest(
      {
        host: job.host,
        port: job.port,
        path: "/api/v1/provision",
        method: "POST",
        agent,
        headers: { "content-type": "application/json", "content-length": payload.length },
        timeout: TIMEOUT_MS,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => {
          try {
            if (res.statusCode !== 200) throw new Error(`HTTP ${res.statusCode}`);
            checkAnswer(Buffer.concat(chunks).toString());
            resolve();
          } catch (err) {
            reject(err);
          }
        });
      },
    );
    req.on("timeout", () => req.destroy(new Error("no answer in 30 s")));
    req.on("error", reject);
    req.end(payload);
  });
}

/** A CoAP endpoint of one worker: one request at a time, retransmitted as RFC 7252 4.2 says. */
class CoapWorker {
  private readonly sock: UdpSocket = createSocket("udp4");
  private messageId = Math.floor(Math.random() * 65536);
  private waiting?: { token: Buffer; resolve: (b: Buffer) => void; code?: string };
  constructor(private readonly job: StormJob) {
    this.sock.on("message", (msg) => {
      const p = coapParse(msg);
      if (this.waiting && p.token.equals(this.waiting.token) && p.code !== "0.00") {
        const w = this.waiting;
        this.waiting = undefined;
        w.code = p.code;
        w.resolve(p.payload);
      }
    });
  }
  request(name: string): Promise<void> {
    this.messageId = (this.messageId + 1) & 0xffff;
    const token = Buffer.from([this.messageId >> 8, this.messageId & 255, 0, 1]);
    const packet = coapGenerate({
      confirmable: true,
      messageId: this.messageId,
      token,
      code: "0.02",
      options: [
        { name: "Uri-Path", value: Buffer.from("api") },
        { name: "Uri-Path", value: Buffer.from("v1") },
        { name: "Uri-Path", value: Buffer.from("provision") },
        { name: "Content-Format", value: Buffer.from([50]) },
      ],
      payload: Buffer.from(body(this.job, name)),
    });
    return new Promise((resolve, reject) => {
      let tries = 0;
      let timer: NodeJS.Timeout;
      const send = () => {
        if (++tries > 5) {
          this.waiting = undefined;
          return reject(new Error("no CoAP answer after 5 transmissions"));
        }
        this.sock.send(packet, this.job.port, this.job.host);
        timer = setTimeout(send, 2000 * 2 ** (tries - 1));
      };
      const w = {
        token,
        resolve: (payload: Buffer) => {
          clearTimeout(timer);
          try {
            if (w.code !== "2.01") throw new Error(`CoAP ${w.code}`);
            checkAnswer(payload.toString());
            resolve();
          } catch (err) {
            reject(err);
          }
        },
        code: undefined as string | undefined,
      };
      this.waiting = w;
      send();
    });
  }
  close(): void {
    this.sock.close();
  }
}

function dpsDevice(job: StormJob): Promise<void> {
  return provisionOnce({
    connect: coapTcpConnector({ cert: job.tlsCert, key: job.tlsKey, ca: job.tlsCa }),
    endpoint: `coaps+tcp://${job.host}:${job.port}`,
    deviceId: randomUUID(),
    steps: STEP_ORDER,
    answers: {},
    signal: new AbortController().signal,
    stepTimeoutMs: () => TIMEOUT_MS,
    expiringLimitS: 0,
    clock: systemTimerClock,
  });
}

function handshake(job: StormJob): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = tlsConnect(
      { host: job.host, port: job.port, cert: job.tlsCert, key: job.tlsKey, ca: job.tlsCa },
      () => {
        socket.end();
        resolve();
      },
    );
    socket.setTimeout(TIMEOUT_MS, () => socket.destroy(new Error("no handshake in 30 s")));
    socket.on("error", reject);
  });
}

export async function runJob(job: StormJob): Promise<StormResult> {
  const latencies: number[] = [];
  const samples = new Set<string>();
  let errors = 0;
  let next = job.from;
  const end = job.from + job.count;
  const agents: Agent[] = [];
  const worker = async (w: number) => {
    const localAddress = job.sourceAddresses
      ? `127.${(job.client ?? 0) + 1}.${Math.floor(w / 50)}.${(w % 50) + 1}`
      : undefined;
    const agent = job.kind === "http" ? new Agent({ keepAlive: true, maxSockets: 1 }) : undefined;
    if (agent) agents.push(agent);
    const coap = job.kind === "coap" ? new CoapWorker(job) : undefined;
    while (next < end) {
      const name = `${job.prefix}-${next++}`;
      const t0 = now();
      try {
        if (job.kind === "mqtt") await mqttDevice(job, name, localAddress);
        else if (job.kind === "http") await httpDevice(job, name, agent as Agent);
        else if (job.kind === "coap") await (coap as CoapWorker).request(name);
        else if (job.kind === "dps") await dpsDevice(job);
        else if (job.kind === "handshake") await handshake(job);
        else {
          const req = {
            url: job.url as string,
            externalId: job.externalId as string,
            externalKey: job.externalKey as string,
            mode: job.mode,
            encryptionKey: job.encryptionKey,
            keyId: job.keyId,
          };
          await bootstrapOnce(req, { timeoutMs: TIMEOUT_MS, policy: { maxAttempts: 1 } }, prepare(req));
        }
        latencies.push(now() - t0);
      } catch (err) {
        errors++;
        if (samples.size < 5) samples.add((err as Error).message);
      }
    }
    coap?.close();
  };
  await Promise.all(Array.from({ length: Math.min(job.concurrency, job.count) }, (_, w) => worker(w)));
  for (const a of agents) a.destroy();
  return { latencies, errors, errorSamples: [...samples] };
}

if (require.main === module) {
  process.on("message", (m: { job?: StormJob; exit?: boolean }) => {
    if (m.exit) process.exit(0);
    if (m.job)
      runJob(m.job).then(
        (result) => process.send?.({ result }),
        (err: Error) => process.send?.({ result: { latencies: [], errors: 1, errorSamples: [err.message] } }),
      );
  });
  process.send?.({ ready: true });
}
