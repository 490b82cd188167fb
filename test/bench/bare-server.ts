/**
 * A bare baseline server in a process of its own (child_process.fork of this file, with
 * --expose-gc): the floor the package's server is compared with, under the same clients.
 *   mqtt | mqtts   a bare aedes (over TLS: node:tls with the same ECDSA P-256 certificate)
 *                  answering each /provision/request with a fixed SUCCESS, QoS 1, to the
 *                  asking client only
 *   http           node:http answering every request with the fixed body BENCH_ANSWER
 *   coap           node-coap (its default options) answering every request with a fixed SUCCESS
 *   tls            node:tls under the package's server TLS policy, client certificates
 *                  verified against BENCH_TLS_CA: handshakes only (the client closes)
 * Tells the parent `{ port }` once it listens, then answers the stats hook's messages.
 */
import { readFileSync } from "node:fs";
import { createServer as httpServer } from "node:http";
import { createServer as netServer, type AddressInfo, type Server } from "node:net";
import { createServer as tlsServer } from "node:tls";
import { createServer as coapServer } from "coap";
import { loadAedes } from "../../lib/transports/embedded-broker";
import { serverTlsOptions } from "../../lib/transports/tls-policy";
import { installStatsHook } from "./stats-hook";

const SUCCESS = Buffer.from(
  '{"status":"SUCCESS","credentialsType":"ACCESS_TOKEN","credentialsValue":"bench-token"}',
);

/**
 * The accept queue as deep as Linux allows by default (net.core.somaxconn, 4096): at least
 * what provision-response's embedded broker asks for, so neither server drops the SYNs of a
 * storm that Node's default of 511 would.
 */
const BACKLOG = 4096;

async function listenTcp(server: Server): Promise<number> {
  await new Promise<void>((resolve) =>
    server.listen({ port: 0, host: "127.0.0.1", backlog: BACKLOG }, resolve),
  );
  return (server.address() as AddressInfo).port;
}

async function start(kind: string): Promise<number> {
  if (kind === "mqtt" || kind === "mqtts") {
    const { Aedes } = await loadAedes();
    const broker = await Aedes.createBroker({
      authorizePublish: (client, _packet, cb) => {
        cb(null);
        // aedes needs the callback for QoS 1: it is called on PUBACK.
        client?.publish(
          {
            cmd: "publish",
            topic: "/provision/response",
            payload: SUCCESS,
            qos: 1,
            dup: false,
            retain: false,
          },
          () => undefined,
        );
      },
    });
    const server =
      kind === "mqtts"
        ? tlsServer(
            {
              cert: readFileSync(process.env.BENCH_TLS_CERT as string),
              key: readFileSync(process.env.BENCH_TLS_KEY as string),
            },
            broker.handle,
          )
        : netServer(broker.handle);
    return listenTcp(server);
  }
  if (kind === "http") {
    const body = Buffer.from(process.env.BENCH_ANSWER ?? SUCCESS.toString());
    const server = httpServer((req, res) => {
      req.resume();
      req.on("end", () => {
        res.writeHead(200, { "content-type": "application/json", "content-length": body.length });
        res.end(body);
      });
    });
    return listenTcp(server);
  }
  if (kind === "coap") {
    const server = coapServer((_req: unknown, res: { code: string; end: (b: Buffer) => void }) => {
      res.code = "2.01";
      res.end(SUCCESS);
    });
    // The parent picks the UDP port (BENCH_PORT): node-coap does not report an ephemeral one.
    const port = Number(process.env.BENCH_PORT);
    await new Promise<void>((resolve) => server.listen(port, "127.0.0.1", () => resolve()));
    return port;
  }
  if (kind === "tls") {
    const server = tlsServer(
      serverTlsOptions({
        cert: readFileSync(process.env.BENCH_TLS_CERT as string),
        key: readFileSync(process.env.BENCH_TLS_KEY as string),
        ca: readFileSync(process.env.BENCH_TLS_CA as string),
        requestCert: true,
        rejectUnauthorized: true,
      }),
      (socket) => {
        socket.on("error", () => undefined);
        socket.on("end", () => socket.end());
        socket.resume();
      },
    );
    server.on("tlsClientError", () => undefined);
    return listenTcp(server);
  }
  throw new Error(`unknown bare server ${kind}`);
}

installStatsHook();
start(process.argv[2]).then(
  (port) => process.send?.({ port }),
  (err: Error) => {
    process.stderr.write(String(err.stack ?? err) + "\n");
    process.exit(1);
  },
);
