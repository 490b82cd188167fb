/**
 * What the DPS client needs of a connection, so the step machine can be tested
 * in-process and run over CoAP-TCP/TLS (RFC 8323) in production.
 */
import type { ConnectionOptions } from "node:tls";
import { CoapTcpClient, parseCoapUri } from "../../transports/coap-tcp";
import type { CoapRequest, CoapResponse } from "../../transports/coap-tcp/types";

export interface DpsTransport {
  request(req: CoapRequest, opts: { timeoutMs: number; signal?: AbortSignal }): Promise<CoapResponse>;
  close(): Promise<void>;
}

/** Opens a connection to one DPS endpoint URI. */
export type DpsConnector = (
  endpoint: string,
  opts: { timeoutMs: number; signal?: AbortSignal },
) => Promise<DpsTransport>;

/**
 * Connects with coaps+tcp (mutual TLS: the manufacturer certificate and key in `tls`,
 * the DPS CA to verify the service). coap+tcp:// (no TLS) is refused: DPS needs the
 * manufacturer certificate.
 */
export function coapTcpConnector(tls: ConnectionOptions): DpsConnector {
  return async (endpoint, opts) => {
    const { secure, host, port } = parseCoapUri(endpoint);
    if (!secure)
      throw new Error(`${endpoint}: plgd DPS needs coaps+tcp:// (TLS with the manufacturer certificate)`);
    const client = await CoapTcpClient.connect({
      host,
      port,
      tls: { servername: /^[\d.]+$|:/.test(host) ? undefined : host, ...tls },
      connectTimeoutMs: opts.timeoutMs,
      requestTimeoutMs: opts.timeoutMs,
    });
    // An unexpected close surfaces as a failed request; nothing to do here.
    client.on("error", () => undefined);
    return {
      request: (req, o) => client.request(req, o),
      close: () => client.close(),
    };
  };
}
