import { accessSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freeTcpPort } from "./ports";
import { startProcess, type Started } from "./process";

export interface Mosquitto extends Started {
  port: number;
  url: string;
}

/** Debian's mosquitto on an ephemeral loopback port, anonymous access, no persistence. */
export async function startMosquitto(extraConfig = ""): Promise<Mosquitto> {
  const port = await freeTcpPort();
  const dir = mkdtempSync(join(tmpdir(), "mosq-"));
  const conf = join(dir, "mosquitto.conf");
  writeFileSync(
    conf,
    `listener ${port} 127.0.0.1\nallow_anonymous true\npersistence false\nlog_type all\n${extraConfig}\n`,
  );
  const bin = ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"].find((p) => {
    try {
      accessSync(p);
      return true;
    } catch {
      return false;
    }
  });
  if (!bin) throw new Error("mosquitto is not installed (apt-get install mosquitto)");
  const started = await startProcess(bin, ["-c", conf], /running|Opening ipv4 listen socket/);
  return { ...started, port, url: `mqtt://127.0.0.1:${port}` };
}
