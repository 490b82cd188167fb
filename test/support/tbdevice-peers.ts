/**
 * Real peers that answer like ThingsBoard on the other transports: an HTTP(S) server, a
 * CoAP server (node-coap) and an MQTT broker (aedes) that, like ThingsBoard, answers only
 * the session that asked.
 */
import { createServer as createHttpServer, type IncomingMessage, type ServerResponse } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import { createServer as createNetServer, type Server as NetServer, type Socket } from "node:net";
import { once } from "node:events";
import {
  createServer as createCoapServer,
  type IncomingMessage as CoapIn,
  type OutgoingMessage as CoapOut,
} from "coap";
import { Aedes } from "aedes";
import { HTTP_PATH, TOPIC_REQUEST, TOPIC_RESPONSE } from "../../lib/dialects/thingsboard/wire";
import type { TbLikeProfile } from "./tbdevice-responder";
import { freeUdpPort } from "./ports";

export interface Peer {
  port: number;
  url: string;
  stop: () => Promise<void>;
}

export async function startHttpPeer(
  profile: TbLikeProfile,
  tls?: { cert: string; key: string },
): Promise<Peer & { paths: string[] }> {
  const paths: string[] = [];
  const sockets = new Set<Socket>();
  const handler = (req: IncomingMessage, res: ServerResponse) => {
    paths.push(`${req.method} ${req.url}`);
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      if (req.method !== "POST" || req.url !== HTTP_PATH) {
        res.writeHead(404).end();
        return;
      }
      const answer = profile.handle(Buffer.concat(chunks));
      if (answer === undefined) return; // leave the device waiting
      res.writeHead(200, { "content-type": "application/json" }).end(answer);
    });
  };
  const server = tls
    ? createHttpsServer({ cert: tls.cert, key: tls.key }, handler)
    : createHttpServer(handler);
  server.on("connection", (s: Socket) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const { port } = server.address() as { port: number };
  return {
    port,
    url: `${tls ? "https" : "http"}://127.0.0.1:${port}`,
    paths,
    stop: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

export async function startCoapPeer(profile: TbLikeProfile): Promise<Peer & { codes: string[] }> {
  const port = await freeUdpPort();
  const codes: string[] = [];
  const server = createCoapServer({ type: "udp4", cacheSize: 64 * 1024 }, (req: CoapIn, res: CoapOut) => {
    if (req.method !== "POST" || req.url !== HTTP_PATH) {
      res.code = "4.04";
      res.end();
      return;
    }
    const answer = profile.handle(req.payload);
    if (answer === undefined) return;
    const success = answer.includes('"SUCCESS"');
    res.code = success ? "2.01" : "4.00";
    codes.push(res.code);
    res.setOption("Content-Format", "application/json");
    res.end(answer);
  });
  await new Promise<void>((resolve) => server.listen(port, "127.0.0.1", () => resolve()));
  return {
    port,
    url: `coap://127.0.0.1:${port}`,
    codes,
    stop: () => new Promise<void>((r) => server.close(() => r())),
  };
}

/** aedes answering each request on the session that sent it, as ThingsBoard does. */
export async function startAedesPeer(profile: TbLikeProfile): Promise<Peer & { broker: Aedes }> {
  const broker = await Aedes.createBroker();
  broker.on("publish", (packet, client) => {
    if (!client || packet.topic !== TOPIC_REQUEST) return;
    const answer = profile.handle(Buffer.from(packet.payload));
    if (answer === undefined) return;
    client.publish(
      {
        cmd: "publish",
        topic: TOPIC_RESPONSE,
        payload: Buffer.from(answer),
        qos: 1,
        retain: false,
        dup: false,
      },
      () => undefined,
    );
  });
  const server: NetServer = createNetServer((s) => broker.handle(s));
  const sockets = new Set<Socket>();
  server.on("connection", (s: Socket) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const { port } = server.address() as { port: number };
  return {
    port,
    url: `mqtt://127.0.0.1:${port}`,
    broker,
    stop: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
      await new Promise<void>((r) => broker.close(() => r()));
    },
  };
}
