/**
 * A small DPS-like service for the device side's tests: aedes over TLS (MQTT, answering
 * each request on the connection that asked, on `$dps/registrations/res/{status}/?$rid=..
 * &retry-after=..`) and an HTTPS server (PUT register, GET operation status), both on one
 * loopback address, with a server certificate naming that address. Each request is
 * answered by a script a test sets (`responder.script`), and recorded with the time it
 * came, its CONNECT fields (MQTT) or its method, path and headers (HTTPS).
 */
import { execFileSync } from "node:child_process";
import { EventEmitter, once } from "node:events";
import { readFileSync, writeFileSync } from "node:fs";
import { createServer as createHttpsServer, type Server as HttpsServer } from "node:https";
import type { IncomingMessage, ServerResponse } from "node:http";
import { createServer as createTlsServer, type Server as TlsServer, type TLSSocket } from "node:tls";
import type { Socket } from "node:net";
import { join } from "node:path";
import { Aedes } from "aedes";
import { parseHttpRequest, parseRequestTopic, responseTopic } from "../../lib/dialects/azure-dps/wire";
import type { TestPki } from "./pki";

/** What a device sent, as the responder saw it. */
export interface Seen {
  transport: "mqtt" | "https";
  kind: "register" | "status" | "other";
  /** Date.now() when it arrived. */
  at: number;
  body: string;
  /** MQTT: the publish topic, its rid and QoS; the CONNECT of its connection. */
  topic?: string;
  rid?: string;
  qos?: number;
  operationId?: string;
  connect?: ConnectSeen;
  /** HTTPS: method, path with query, lower-case headers. */
  method?: string;
  url?: string;
  headers?: Record<string, string | string[] | undefined>;
  /** The SAS token: the MQTT password or the Authorization header. */
  token?: string;
  /** The CN of the client certificate the device presented over TLS. */
  peerCn?: string;
}

export interface ConnectSeen {
  clientId: string;
  username?: string;
  password?: string;
  protocolVersion: number;
  clean: boolean;
  keepalive: number;
  peerCn?: string;
}

/** How to answer one request; undefined leaves the device waiting (silence). */
export interface Reply {
  status: number;
  retryAfterS?: number;
  /** A string goes as is (garbage); anything else as JSON. */
  body?: unknown;
  /** MQTT: answer under this rid instead of the request's (an answer meant for someone else). */
  rid?: string;
  /** HTTPS: the content-type header (default application/json). */
  contentType?: string;
  /** MQTT: answers published first (under other rids: meant for someone else). */
  before?: Reply[];
}

export type Script = (req: Seen, index: number) => Reply | undefined;

/** A server certificate from the test CA for `ip`, 127.0.0.1 and localhost. */
export function issueServerCert(pki: TestPki, ip: string): { cert: string; key: string } {
  const base = `azure-${ip.replace(/\./g, "-")}-${process.pid}-${Date.now()}`;
  const run = (args: string[]) =>
    execFileSync("openssl", args, { cwd: pki.dir, stdio: ["ignore", "ignore", "pipe"] });
  run(["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", `${base}.key`]);
  run(["req", "-new", "-key", `${base}.key`, "-subj", `/CN=${ip}`, "-out", `${base}.csr`]);
  writeFileSync(
    join(pki.dir, `${base}.ext`),
    `subjectAltName=IP:${ip},IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n`,
  );
  run([
    "x509",
    "-req",
    "-in",
    `${base}.csr`,
    "-CA",
    "ca.pem",
    "-CAkey",
    "ca.key",
    "-CAcreateserial",
    "-days",
    "2",
    "-sha256",
    "-extfile",
    `${base}.ext`,
    "-out",
    `${base}.pem`,
  ]);
  return {
    cert: readFileSync(join(pki.dir, `${base}.pem`), "utf8"),
    key: readFileSync(join(pki.dir, `${base}.key`), "utf8"),
  };
}

/** A random loopback address other than 127.0.0.1 (Linux routes all of 127/8 to lo). */
export function randomLoopback(): string {
  const b = () => 1 + Math.floor(Math.random() * 254);
  return `127.${b()}.${b()}.${b()}`;
}

function peerCnOf(socket: unknown): string | undefined {
  const s = socket as Partial<TLSSocket>;
  if (typeof s.getPeerCertificate !== "function") return undefined;
  const c = s.getPeerCertificate();
  const cn = c?.subject?.CN;
  return Array.isArray(cn) ? cn[0] : cn || undefined;
}

export interface ResponderOptions {
  pki: TestPki;
  /** The address both servers listen on (default a random 127.a.b.c). */
  ip?: string;
  /** HTTPS port (default ephemeral; 443 for the SDK, which always uses it). */
  httpsPort?: number;
  /** A server certificate from elsewhere (an unknown CA). */
  serverTls?: { cert: string; key: string };
}

/** The service's answers and what it saw. Emits "request" (Seen) as each one arrives. */
export class AzureResponder extends EventEmitter {
  script: Script = () => undefined;
  /** MQTT: refuse every CONNECT with this CONNACK return code. */
  refuseConnect?: 2 | 3 | 4 | 5;
  readonly seen: Seen[] = [];
  readonly connects: ConnectSeen[] = [];
  readonly subscriptions: Array<{ topic: string; qos: number }> = [];
  ip = "";
  mqttPort = 0;
  httpsPort = 0;
  private broker?: Aedes;
  private tlsServer?: TlsServer;
  private httpsServer?: HttpsServer;
  private readonly sockets = new Set<Socket>();

  /** `ip:port` of the MQTT listener. */
  get mqttHost(): string {
    return `${this.ip}:${this.mqttPort}`;
  }

  get httpsHost(): string {
    return `${this.ip}:${this.httpsPort}`;
  }

  /** Requests of one kind (or all). */
  requests(kind?: Seen["kind"]): Seen[] {
    return kind ? this.seen.filter((s) => s.kind === kind) : this.seen;
  }

  private answer(req: Seen): Reply | undefined {
    this.seen.push(req);
    this.emit("request", req);
    return this.script(req, this.seen.length - 1);
  }

  /** Starts both listeners; on failure (443 without root), what was started is stopped again. */
  async start(o: ResponderOptions): Promise<this> {
    try {
      return await this.listen(o);
    } catch (err) {
      await this.stop();
      throw err;
    }
  }

  private async listen(o: ResponderOptions): Promise<this> {
    this.ip = o.ip ?? randomLoopback();
    const tls = o.serverTls ?? issueServerCert(o.pki, this.ip);
    const serverTls = { ...tls, ca: o.pki.caCert, requestCert: true, rejectUnauthorized: false };
    const conns = new Map<unknown, ConnectSeen>();
    const broker = await Aedes.createBroker({
      maxClientsIdLength: 256,
      preConnect: (client, packet, cb) => {
        conns.set(client, {
          clientId: packet.clientId,
          username: packet.username,
          password: packet.password === undefined ? undefined : Buffer.from(packet.password).toString("utf8"),
          protocolVersion: packet.protocolVersion ?? 4,
          clean: packet.clean !== false,
          keepalive: packet.keepalive ?? 0,
          peerCn: peerCnOf(client.conn),
        });
        this.connects.push(conns.get(client) as ConnectSeen);
        cb(null, true);
      },
      authenticate: (_client, _user, _pass, done) => {
        if (this.refuseConnect === undefined) return done(null, true);
        done(Object.assign(new Error("refused"), { returnCode: this.refuseConnect }), null);
      },
    });
    this.broker = broker;
    broker.on("subscribe", (subs) => {
      for (const s of subs) this.subscriptions.push({ topic: s.topic, qos: s.qos });
    });
    broker.on("publish", (packet, client) => {
      if (!client) return;
      const t = parseRequestTopic(packet.topic);
      const connect = conns.get(client);
      const reply = this.answer({
        transport: "mqtt",
        kind: t?.kind ?? "other",
        at: Date.now(),
        body: Buffer.from(packet.payload).toString("utf8"),
        topic: packet.topic,
        rid: t?.rid,
        qos: packet.qos,
        operationId: t?.kind === "status" ? t.operationId : undefined,
        connect,
        token: connect?.password,
        peerCn: connect?.peerCn,
      });
      if (!reply) return;
      const payload = Buffer.from(
        typeof reply.body === "string" ? reply.body : JSON.stringify(reply.body ?? {}),
      );
      client.publish(
        {
          cmd: "publish",
          topic: responseTopic(reply.status, reply.rid ?? t?.rid ?? "", reply.retryAfterS),
          payload,
          qos: 1,
          retain: false,
          dup: false,
        },
        () => undefined,
      );
    });
    this.tlsServer = createTlsServer(serverTls, (s) => broker.handle(s));
    this.tlsServer.on("connection", (s: Socket) => this.track(s));
    this.tlsServer.on("tlsClientError", () => undefined);
    this.tlsServer.listen(0, this.ip);
    await once(this.tlsServer, "listening");
    this.mqttPort = (this.tlsServer.address() as { port: number }).port;

    this.httpsServer = createHttpsServer(serverTls, (req, res) => this.onHttp(req, res));
    this.httpsServer.on("connection", (s: Socket) => this.track(s));
    this.httpsServer.on("tlsClientError", () => undefined);
    this.httpsServer.listen(o.httpsPort ?? 0, this.ip);
    await once(this.httpsServer, "listening");
    this.httpsPort = (this.httpsServer.address() as { port: number }).port;
    return this;
  }

  private track(s: Socket): void {
    s.setNoDelay(true);
    this.sockets.add(s);
    s.on("close", () => this.sockets.delete(s));
  }

  private onHttp(req: IncomingMessage, res: ServerResponse): void {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const parsed = parseHttpRequest(req.method ?? "", req.url ?? "");
      const kind = parsed?.kind === "register" || parsed?.kind === "status" ? parsed.kind : "other";
      const auth = req.headers.authorization;
      const reply = this.answer({
        transport: "https",
        kind,
        at: Date.now(),
        body: Buffer.concat(chunks).toString("utf8"),
        method: req.method,
        url: req.url,
        headers: { ...req.headers },
        operationId: parsed?.kind === "status" ? parsed.operationId : undefined,
        token: typeof auth === "string" ? auth : undefined,
        peerCn: peerCnOf(req.socket),
      });
      if (!reply) return;
      const body = typeof reply.body === "string" ? reply.body : JSON.stringify(reply.body ?? {});
      const headers: Record<string, string | number> = {
        "content-type": reply.contentType ?? "application/json; charset=utf-8",
        "content-length": Buffer.byteLength(body),
      };
      if (reply.retryAfterS !== undefined) headers["retry-after"] = String(reply.retryAfterS);
      res.writeHead(reply.status, headers).end(body);
    });
  }

  async stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await Promise.all(
      [this.tlsServer, this.httpsServer].map(
        (srv) => new Promise<void>((r) => (srv?.listening ? srv.close(() => r()) : r())),
      ),
    );
    await new Promise<void>((r) => (this.broker ? this.broker.close(() => r()) : r()));
  }
}

export async function startAzureResponder(o: ResponderOptions): Promise<AzureResponder> {
  return new AzureResponder().start(o);
}

/** A registration state as DPS gives it once assigned. */
export function assignedState(registrationId: string, extra: Record<string, unknown> = {}) {
  return {
    registrationId,
    createdDateTimeUtc: "2026-01-02T03:04:05.0000000Z",
    assignedHub: "hub-one.azure-devices.net",
    deviceId: registrationId,
    status: "assigned",
    substatus: "initialAssignment",
    lastUpdatedDateTimeUtc: "2026-01-02T03:04:06.0000000Z",
    etag: "IjAwMDAwMDAwLTAwMDAtMDAwMC0wMDAwLTAwMDAwMDAwMDAwMCI=",
    ...extra,
  };
}

/** The registration id a request is for (its body's, else its path's). */
export function registrationIdOf(req: Seen): string {
  try {
    const b = JSON.parse(req.body) as { registrationId?: unknown };
    if (typeof b.registrationId === "string") return b.registrationId;
  } catch {
    // a status poll: one space (MQTT) or nothing (HTTPS)
  }
  const m = /^\/[^/]+\/registrations\/([^/?]+)/u.exec(req.url ?? "");
  if (m) return decodeURIComponent(m[1]);
  return req.connect?.clientId ?? "";
}

/**
 * DPS's usual exchange: register answers 202 "assigning" with an operation id, each poll
 * answers 202 `pollsBeforeAssigned` times, then 200 "assigned" with the registration state.
 */
export function assigningThenAssigned(
  opts: { retryAfterS?: number; pollsBeforeAssigned?: number; state?: (regId: string) => unknown } = {},
): Script {
  const polls = new Map<string, number>();
  let n = 0;
  return (req) => {
    const regId = registrationIdOf(req);
    if (req.kind === "register") {
      const operationId = `4.${(++n).toString(16).padStart(16, "0")}.${regId.length}`;
      polls.set(operationId, 0);
      return { status: 202, retryAfterS: opts.retryAfterS ?? 0, body: { operationId, status: "assigning" } };
    }
    if (req.kind === "status" && req.operationId !== undefined && polls.has(req.operationId)) {
      const k = (polls.get(req.operationId) ?? 0) + 1;
      polls.set(req.operationId, k);
      if (k <= (opts.pollsBeforeAssigned ?? 0))
        return {
          status: 202,
          retryAfterS: opts.retryAfterS ?? 0,
          body: { operationId: req.operationId, status: "assigning" },
        };
      return {
        status: 200,
        body: {
          operationId: req.operationId,
          status: "assigned",
          registrationState: opts.state ? opts.state(regId) : assignedState(regId),
        },
      };
    }
    return {
      status: 404,
      body: { errorCode: 404202, trackingId: "t", message: "The operation was not found." },
    };
  };
}
