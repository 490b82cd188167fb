import { accessSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir, userInfo } from "node:os";
import { join } from "node:path";
import { freeTcpPort } from "./ports";
import { startProcess, type Started } from "./process";

export interface Mosquitto extends Started {
  port: number;
  url: string;
  tlsPort?: number;
  tlsUrl?: string;
}

export interface MosquittoOptions {
  /** A port chosen in advance, e.g. to start a broker late on the port a device already uses. */
  port?: number;
  tls?: { certPath: string; keyPath: string; caPath?: string; requireCertificate?: boolean; port?: number };
  /** More mosquitto.conf lines. */
  extraConfig?: string;
}

function mosquittoBinary(): string {
  for (const p of ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"]) {
    try {
      accessSync(p);
      return p;
    } catch {
      /* next */
    }
  }
  throw new Error("mosquitto is not installed (apt-get install mosquitto)");
}

/**
 * Debian's mosquitto on ephemeral loopback ports: a plain listener, optionally a TLS one,
 * anonymous access, no persistence.
 */
export async function startMosquitto(opts: MosquittoOptions | string = {}): Promise<Mosquitto> {
  const o: MosquittoOptions = typeof opts === "string" ? { extraConfig: opts } : opts;
  const port = o.port ?? (await freeTcpPort());
  const dir = mkdtempSync(join(tmpdir(), "mosq-"));
  const conf = join(dir, "mosquitto.conf");
  // Run as whoever runs the tests: as root, mosquitto would drop to a user who cannot read
  // the 0700 temporary PKI directory.
  let text =
    `user ${userInfo().username}\nper_listener_settings false\nallow_anonymous true\npersistence false\n` +
    `log_type all\nlistener ${port} 127.0.0.1\n`;
  let tlsPort: number | undefined;
  if (o.tls) {
    tlsPort = o.tls.port ?? (await freeTcpPort());
    text += `listener ${tlsPort} 127.0.0.1\ncertfile ${o.tls.certPath}\nkeyfile ${o.tls.keyPath}\n`;
    if (o.tls.caPath) text += `cafile ${o.tls.caPath}\n`;
    if (o.tls.requireCertificate) text += `require_certificate true\n`;
  }
  writeFileSync(conf, text + (o.extraConfig ?? "") + "\n");
  const started = await startProcess(mosquittoBinary(), ["-c", conf], /running/);
  return {
    ...started,
    port,
    url: `mqtt://127.0.0.1:${port}`,
    tlsPort,
    tlsUrl: tlsPort ? `mqtts://127.0.0.1:${tlsPort}` : undefined,
  };
}
