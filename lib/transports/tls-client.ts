import type { ConnectionOptions } from "node:tls";

/** What a client's TLS socket takes from its settings (a tls-config node's material). */
export type ClientTlsOptions = Pick<
  ConnectionOptions,
  "ca" | "cert" | "key" | "passphrase" | "servername" | "rejectUnauthorized"
>;

/**
 * Socket options for a client's TLS transport: verification stays on unless the settings
 * turn it off explicitly (`rejectUnauthorized: false`), whatever else they leave out.
 */
export function tlsSocketOptions(tls: ClientTlsOptions = {}): ClientTlsOptions {
  return {
    ca: tls.ca,
    cert: tls.cert,
    key: tls.key,
    passphrase: tls.passphrase,
    servername: tls.servername,
    rejectUnauthorized: tls.rejectUnauthorized !== false,
  };
}
