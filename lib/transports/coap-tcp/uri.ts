/** Splits a coap+tcp:// or coaps+tcp:// URI (RFC 8323 §8) into what a connect needs. */
export function parseCoapUri(uri: string): { secure: boolean; host: string; port: number } {
  let url: URL;
  try {
    url = new URL(uri.trim());
  } catch {
    throw new TypeError(`not a valid URI: ${JSON.stringify(uri)}`);
  }
  const scheme = url.protocol.toLowerCase();
  let secure: boolean;
  if (scheme === "coap+tcp:") secure = false;
  else if (scheme === "coaps+tcp:") secure = true;
  else
    throw new TypeError(
      `unsupported scheme ${JSON.stringify(url.protocol)}: expected coap+tcp:// or coaps+tcp://`,
    );
  let host = url.hostname;
  if (host.startsWith("[") && host.endsWith("]")) host = host.slice(1, -1);
  if (!host) throw new TypeError(`URI ${JSON.stringify(uri)} has no host`);
  const port = url.port ? Number(url.port) : secure ? 5684 : 5683;
  if (!Number.isInteger(port) || port < 1 || port > 65535)
    throw new TypeError(`invalid port in ${JSON.stringify(uri)}`);
  return { secure, host, port };
}
