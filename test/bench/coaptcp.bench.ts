import { connect as netConnect, createServer as netServer, type Server, type Socket } from "node:net";
import { connect as tlsConnect, createServer as tlsServer } from "node:tls";
import { CoapTcpClient, CoapTcpServer, type CoapTcpClientOptions } from "../../lib/transports/coap-tcp";
import { makeTestPki } from "../support/pki";
import { printFigures, type Figures } from "./report";

/**
 * Requests per second over ONE connection on loopback, `CONCURRENCY` requests in flight.
 * The baseline is the floor our CoAP layer cannot beat: a bare length-prefixed echo over
 * the same kind of socket (plain TCP, then mutual TLS) with the same payload, measured here.
 */
const REQUESTS = 20000;
const CONCURRENCY = 32;
const PAYLOAD = Buffer.alloc(64, 0x61);

async function drive(label: string, request: () => Promise<void>): Promise<Figures> {
  await Promise.all(Array.from({ length: CONCURRENCY }, request));
  let next = 0;
  const t0 = process.hrtime.bigint();
  const worker = async (): Promise<void> => {
    while (next < REQUESTS) {
      next++;
      await request();
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  return { label, count: REQUESTS, seconds: Number(process.hrtime.bigint() - t0) / 1e9 };
}

/** A bare request/response over a socket: 4-byte length prefix, answered in order. */
function framedEcho(socket: Socket): () => Promise<void> {
  const waiting: (() => void)[] = [];
  let buf: Buffer = Buffer.alloc(0);
  socket.on("data", (chunk: Buffer) => {
    buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
    while (buf.length >= 4 && buf.length >= 4 + buf.readUInt32BE(0)) {
      const n = buf.readUInt32BE(0);
      buf = buf.subarray(4 + n);
      waiting.shift()?.();
    }
  });
  const header = Buffer.alloc(4);
  header.writeUInt32BE(PAYLOAD.length);
  return () =>
    new Promise<void>((resolve) => {
      waiting.push(resolve);
      socket.write(Buffer.concat([header, PAYLOAD]));
    });
}

function echoSocket(socket: Socket): void {
  socket.setNoDelay(true);
  socket.on("data", (chunk) => socket.write(chunk));
}

async function listen(server: Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return (server.address() as { port: number }).port;
}

export async function run(): Promise<void> {
  const pki = makeTestPki("Bench");
  const id = pki.issueClient("bench-device");
  const serverTls = { cert: pki.serverCert, key: pki.serverKey, ca: pki.caCert, requestCert: true };
  for (const secure of [false, true]) {
    const kind = secure ? "mutual TLS" : "TCP";
    const raw = secure ? tlsServer(serverTls, echoSocket) : netServer(echoSocket);
    const rawPort = await listen(raw);
    const socket = secure
      ? tlsConnect({
          host: "127.0.0.1",
          port: rawPort,
          ca: pki.caCert,
          cert: id.cert,
          key: id.key,
          servername: "localhost",
        })
      : netConnect({ host: "127.0.0.1", port: rawPort });
    socket.setNoDelay(true);
    await new Promise<void>((resolve) => socket.once(secure ? "secureConnect" : "connect", () => resolve()));
    const base = await drive(`bare framed echo over ${kind} (baseline)`, framedEcho(socket));
    socket.destroy();
    raw.close();
    printFigures(base);

    const server = new CoapTcpServer({
      handler: async () => ({ code: "2.05", payload: PAYLOAD }),
      ...(secure ? { tls: serverTls } : {}),
    });
    const { port } = await server.listen(0, "127.0.0.1");
    const clientOpts: CoapTcpClientOptions = { host: "127.0.0.1", port };
    if (secure) clientOpts.tls = { ca: pki.caCert, cert: id.cert, key: id.key };
    const client = await CoapTcpClient.connect(clientOpts);
    try {
      const figures = await drive(`${secure ? "coaps+tcp" : "coap+tcp"} GET, one connection`, async () => {
        const r = await client.request({ method: "GET", path: "/bench" });
        if (r.code !== "2.05") throw new Error(`unexpected ${r.code}`);
      });
      printFigures(figures, base);
    } finally {
      await client.close();
      await server.close();
    }
  }
}
