import { freeTcpPort } from "./ports";
import { run, startProcess, type Started } from "./process";

export interface LibcoapServer extends Started {
  /** coap+tcp port */
  port: number;
  /** coaps+tcp port (libcoap listens on port + 1 when a certificate is given) */
  tlsPort: number;
}

export interface LibcoapPki {
  certPath: string;
  keyPath: string;
  /** CA that signs client certificates; given as -C so libcoap checks them. */
  caPath?: string;
}

/**
 * Debian's coap-server-openssl (libcoap 4.3) on loopback. `-d 10` lets PUT create
 * resources that GET then serves, which is how tests move large bodies both ways.
 * Resolves on its "created TCP/TLS endpoint" line (-v 7).
 */
export async function startLibcoapServer(pki?: LibcoapPki): Promise<LibcoapServer> {
  let lastError: unknown;
  for (let attempt = 0; attempt < 4; attempt++) {
    const port = await freeTcpPort();
    const args = ["-A", "127.0.0.1", "-p", String(port), "-v", "7", "-d", "10"];
    if (pki) {
      args.push("-c", pki.certPath, "-j", pki.keyPath);
      if (pki.caPath) args.push("-C", pki.caPath);
      else args.push("-n");
    }
    try {
      const started = await startProcess(
        "coap-server-openssl",
        args,
        pki ? /created TLS\s+endpoint/ : /created TCP\s+endpoint/,
        {
          timeoutMs: 10000,
        },
      );
      // A port taken between our probe and libcoap's bind shows up as a log line, not an exit.
      if (/Address already in use/i.test(started.output())) {
        await started.stop();
        lastError = new Error("port in use");
        continue;
      }
      return { ...started, port, tlsPort: port + 1 };
    } catch (err) {
      lastError = err;
    }
  }
  throw lastError;
}

/** Runs coap-client-openssl to completion. */
export function libcoapClient(
  args: string[],
): Promise<{ code: number | null; stdout: Buffer; stderr: string }> {
  return run("coap-client-openssl", args);
}
