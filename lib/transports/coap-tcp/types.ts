import type { ProxyProtocolSetting } from "../proxy-listener";
import type { X509Certificate } from "node:crypto";
import type { ConnectionOptions, DetailedPeerCertificate, TlsOptions } from "node:tls";
import type { CoapMethod } from "./codes";
import type { CoapOption } from "./options";

export type { CoapMethod } from "./codes";
export type { CoapOption } from "./options";

export interface CoapRequest {
  method: CoapMethod;
  /** "/api/v1/provisioning/ownership": one Uri-Path option per segment. */
  path: string;
  /** One Uri-Query option each, e.g. ["di=..."]. */
  query?: string[];
  contentFormat?: number;
  accept?: number;
  payload?: Buffer;
}

export interface CoapResponse {
  /** "2.05" */
  code: string;
  contentFormat?: number;
  payload: Buffer;
  /**
   * Client side: every option of the final response (block options included).
   * Server side: extra options to send (e.g. Location-Path, Max-Age); the server adds
   * Content-Format and block options itself.
   */
  options?: CoapOption[];
}

export interface CoapServerRequest extends CoapRequest {
  /** "127.0.0.1:40123" */
  remote: string;
  /** TLS only: the leaf with its issuer chain (as Node's getPeerCertificate(true) links it). */
  peerCertificate?: DetailedPeerCertificate;
  /** TLS only: leaf first, then each issuer the handshake knew about. */
  peerCertificateChain?: X509Certificate[];
  /** TLS only: whether the chain verified against the server's CAs. */
  authorized?: boolean;
  /** TLS only: why it did not verify (with requestCert and rejectUnauthorized: false). */
  authorizationError?: string;
  /** Every option of the (reassembled) request. The server always fills this, `query` and `payload`. */
  options?: CoapOption[];
}

export interface CoapTcpClientOptions {
  host: string;
  port: number;
  /** Present => coaps+tcp. ALPN "coap" is offered unless ALPNProtocols is given. */
  tls?: ConnectionOptions;
  /** TCP connect + TLS handshake + the server's CSM. Default 10000. */
  connectTimeoutMs?: number;
  /** Default 10000; covers every block of a block-wise exchange. */
  requestTimeoutMs?: number;
  /** Largest message and reassembled body we accept. Default 262144. */
  maxMessageSize?: number;
  /** 16..1024, power of two. Default 1024. */
  blockSize?: number;
}

export interface CoapTcpServerOptions {
  tls?: TlsOptions;
  handler: (req: CoapServerRequest) => Promise<CoapResponse>;
  /** Largest message and reassembled body we accept. Default 262144. */
  maxMessageSize?: number;
  /** 16..1024, power of two. Default 1024. */
  blockSize?: number;
  /** Release a connection after this long without traffic. Default 20000 (as plgd). */
  inactivityTimeoutMs?: number;
  /** Longest a handler may take before the client gets 5.03. Default: no limit. */
  requestTimeoutMs?: number;
  /** A message that has begun must be complete within this long. Default 10000. */
  frameTimeoutMs?: number;
  /** Connections held at once (TLS handshakes included); more are closed at once. Default 1000. */
  maxConnections?: number;
  /** Connections held at once from one remote address. Default 50. */
  maxConnectionsPerAddress?: number;
  /**
   * Every connection begins with a PROXY protocol header (v1 or v2, before TLS; behind
   * HAProxy send-proxy-v2): the caps, the requests' remote and the reports see the
   * client's address from it (lib/transports/proxy-listener.ts). Default off.
   */
  proxyProtocol?: ProxyProtocolSetting;
  /**
   * Decides whether a request may be served before anything of it is buffered or the
   * handler runs: called once per request, at the first block of a Block1 upload (RFC
   * 7959 §2.5). Return a response (4.01, 4.03) to refuse; undefined to go on.
   */
  authorize?: (req: CoapServerRequest) => CoapResponse | undefined | Promise<CoapResponse | undefined>;
}
