/**
 * A Mainflux bootstrap service on an ephemeral loopback port, for the dialect tests,
 * and the device written in Python that talks to it in secure mode.
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { ConfigRegistry } from "../../lib/dialects/mainflux/registry";
import {
  bootstrapHandler,
  MainfluxBootstrapService,
  type BootstrapServiceOptions,
} from "../../lib/dialects/mainflux/server";
import type { ServiceAuditEvent } from "../../lib/service/audit";
import type { StoreBackend } from "../../lib/stores/backend";
import { MemoryBackend } from "../../lib/stores/memory";
import { PROJECT_ROOT } from "./node-red";
import { run } from "./process";

export const EXTERNAL_ID = "09:6:0:sb:sa";
export const EXTERNAL_KEY = "ext-key-1";
export const THING_ID = "1b9b8fae-9035-4969-a240-7fe5bdc0ed28";
export const THING_KEY = "86a4f870-eba4-46a0-bef9-d94db2b64392";
export const CFB_KEY = "12345678910111213141516171819202";
export const GCM_KEY_HEX = "5a".repeat(32);
export const TOKEN = "management-token";

export const SAMPLE_CONFIG = {
  external_id: EXTERNAL_ID,
  external_key: EXTERNAL_KEY,
  thing_id: THING_ID,
  thing_key: THING_KEY,
  name: "some",
  channels: [
    { id: "c3642289-501d-4974-82f2-ecccc71b2d83", name: "ch", metadata: { type: "control" } },
    "ff13ca9c",
  ],
  content: '{"interval": 5}',
};

export interface RunningService {
  url: string;
  service: MainfluxBootstrapService;
  registry: ConfigRegistry;
  backend: StoreBackend;
  audit: ServiceAuditEvent[];
  server: Server;
  close: () => Promise<void>;
}

export async function startService(
  opts: Partial<Omit<BootstrapServiceOptions, "registry">> & {
    backend?: StoreBackend;
    basePath?: string;
  } = {},
): Promise<RunningService> {
  const backend = opts.backend ?? new MemoryBackend();
  const registry = new ConfigRegistry(backend);
  const audit: ServiceAuditEvent[] = [];
  const service = new MainfluxBootstrapService({ ...opts, registry, onAudit: (e) => audit.push(e) });
  const handler = bootstrapHandler(service, { basePath: opts.basePath });
  const server = createServer((req, res) => handler(req, res));
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}${opts.basePath ?? ""}`;
  return {
    url,
    service,
    registry,
    backend,
    audit,
    server,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** The Python device's status and printed body. */
export async function pythonDevice(
  url: string,
  externalId: string,
  externalKey: string,
  encKey: string,
): Promise<{ status: number; body: string }> {
  const script = join(PROJECT_ROOT, "test", "support", "mainflux-device.py");
  const out = await run("/usr/bin/python3", [script, url, externalId, externalKey, encKey]);
  if (out.code !== 0) throw new Error(`python device failed: ${out.stderr}`);
  const [status, ...rest] = out.stdout.toString("utf8").split("\n");
  return { status: Number(status), body: rest.join("\n").trim() };
}

/** curl's status code, response headers (text) and body (raw bytes) for one request. */
export async function curl(args: string[]): Promise<{ status: number; body: Buffer; headers: string }> {
  const out = await run("curl", ["-s", "-S", "-i", "-H", "Expect:", "--max-time", "10", ...args]);
  if (out.code !== 0) throw new Error(`curl failed (${out.code}): ${out.stderr}`);
  let raw = out.stdout;
  for (;;) {
    const end = raw.indexOf("\r\n\r\n");
    const head = raw.subarray(0, end < 0 ? raw.length : end).toString("latin1");
    const status = Number(/^HTTP\/[\d.]+ (\d{3})/.exec(head)?.[1] ?? 0);
    const rest = end < 0 ? Buffer.alloc(0) : raw.subarray(end + 4);
    if (status >= 100 && status < 200) {
      raw = rest;
      continue;
    }
    return { status, headers: head, body: rest };
  }
}
