/**
 * What the ThingsBoard device-side transports share: the options of one exchange. Every
 * failure is a ProvisioningError (lib/model/errors.ts) whose `final` tells the retry
 * policy whether to go on; socket and TLS failures are read by classifyNetworkFailure
 * (lib/transports/network-failure.ts), the same reading every protocol uses.
 */
import { tlsSocketOptions, type ClientTlsOptions } from "../../transports/tls-client";

/** The TLS options a ThingsBoard transport uses (verification on unless explicitly false). */
export type TbTlsOptions = ClientTlsOptions;
export { tlsSocketOptions };

export interface TbExchangeOptions {
  /** Time for the whole attempt: connect, request, answer. */
  timeoutMs: number;
  tls?: TbTlsOptions;
  signal?: AbortSignal;
  /** Told when the transport is connected and the request goes out. */
  onRequesting?: () => void;
}

/** Sends one request body to `uri` and resolves with the raw answer body. */
export type TbExchange = (uri: URL, body: string, opts: TbExchangeOptions) => Promise<Buffer>;

/** Host and port of a URI as a person reads it (no credentials: the URIs here carry none). */
export function describeUri(uri: URL): string {
  return `${uri.protocol}//${uri.host}`;
}
