/**
 * CoAP over TCP and TLS (RFC 8323) with block-wise transfer (RFC 7959): a client and a
 * server on node:net / node:tls, no other dependencies.
 */
export type { CoapMethod, CoapOption } from "./types";
export type {
  CoapRequest,
  CoapResponse,
  CoapServerRequest,
  CoapTcpClientOptions,
  CoapTcpServerOptions,
} from "./types";
export { CoapTcpClient, type CoapTcpClientStats } from "./client";
export { CoapTcpServer, type CoapTcpServerStats } from "./server";
export { ContentFormat, Opt as CoapOptionNumber, codeToString, parseCode } from "./codes";
export { CoapTcpError, type CoapTcpErrorCode } from "./errors";
export { parseCoapUri } from "./uri";
export type { PeerCapabilities } from "./signaling";
