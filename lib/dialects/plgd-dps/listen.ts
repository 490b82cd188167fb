/** Puts a DpsService on coaps+tcp (RFC 8323) with mutual TLS, as plgd's service runs. */
import type { SecureContextOptions } from "node:tls";
import { CoapTcpServer } from "../../transports/coap-tcp";
import type { DpsService } from "./server";

export interface DpsListenOptions {
  service: DpsService;
  host: string;
  port: number;
  /** The service's certificate and key (and passphrase). */
  tls: Pick<SecureContextOptions, "cert" | "key" | "passphrase">;
  /** plgd's default is 20 s. */
  inactivityTimeoutMs?: number;
  /** Connections held at once (default 1000) and from one address (default 50). */
  maxConnections?: number;
  maxConnectionsPerAddress?: number;
  /** A message that has begun must be complete within this long (default 10 s). */
  frameTimeoutMs?: number;
  /** Every connection begins with a PROXY protocol header (behind HAProxy send-proxy-v2). */
  proxyProtocol?: boolean;
  onError?: (err: Error) => void;
}

export interface DpsListener {
  port: number;
  close(): Promise<void>;
}

export async function listenDps(opts: DpsListenOptions): Promise<DpsListener> {
  if (!opts.tls.cert || !opts.tls.key) throw new Error("the DPS service needs a TLS certificate and key");
  const server = new CoapTcpServer({
    // The chain is checked per enrollment group by the service, so the handshake asks for
    // a certificate without judging it; the groups' chains let Node link the issuers.
    tls: {
      ...opts.tls,
      requestCert: true,
      rejectUnauthorized: false,
      ca: opts.service.trustAnchors(),
      ALPNProtocols: ["coap"],
    },
    handler: (req) => opts.service.handle(req),
    // The manufacturer chain is judged before any Block1 upload is buffered.
    authorize: (req) => opts.service.authorize(req),
    maxMessageSize: 262144,
    blockSize: 1024,
    inactivityTimeoutMs: opts.inactivityTimeoutMs ?? 20000,
    ...(opts.maxConnections !== undefined ? { maxConnections: opts.maxConnections } : {}),
    ...(opts.maxConnectionsPerAddress !== undefined
      ? { maxConnectionsPerAddress: opts.maxConnectionsPerAddress }
      : {}),
    ...(opts.frameTimeoutMs !== undefined ? { frameTimeoutMs: opts.frameTimeoutMs } : {}),
    proxyProtocol: opts.proxyProtocol === true,
  });
  server.on("error", (err: Error) => opts.onError?.(err));
  const { port } = await server.listen(opts.port, opts.host);
  return { port, close: () => server.close() };
}
