import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { bootstrapOnce, prepare, type BootstrapMode } from "../../lib/dialects/mainflux/client";
import { ConfigRegistry } from "../../lib/dialects/mainflux/registry";
import { bootstrapHandler, MainfluxBootstrapService } from "../../lib/dialects/mainflux/server";
import { answerJson } from "../../lib/dialects/mainflux/wire";
import { MemoryBackend } from "../../lib/stores/memory";
import { printFigures, type Figures } from "./report";

/**
 * Bootstraps per second, our client against our service over loopback HTTP with 16 in
 * flight, 1,000 configurations held. The baseline is a bare node:http server that answers
 * every GET with the same JSON, fetched by the same client code path (plain mode).
 */
const N = 3000;
const CONCURRENCY = 16;
const CONFIGS = 1000;
const CFB = "12345678910111213141516171819202";
const GCM = "5a".repeat(32);

async function listen(server: Server): Promise<string> {
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

async function drive(label: string, one: (i: number) => Promise<unknown>): Promise<Figures> {
  for (let i = 0; i < CONCURRENCY; i++) await one(i);
  let next = 0;
  const t0 = process.hrtime.bigint();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < N) await one(next++);
    }),
  );
  return { label, count: N, seconds: Number(process.hrtime.bigint() - t0) / 1e9 };
}

const config = (i: number) => ({
  external_id: `dev-${i}`,
  external_key: `external-key-${i}`,
  thing_id: `thing-${i}`,
  thing_key: `thing-key-${i}`,
  channels: ["c-1", "c-2"],
  content: JSON.stringify({ broker: "mqtt://127.0.0.1:1883", every: 30 }),
});

export async function run(): Promise<void> {
  const sample = answerJson({
    thingId: "thing-0",
    thingKey: "thing-key-0",
    channels: [{ id: "c-1" }, { id: "c-2" }],
    content: config(0).content,
  });
  const bare = createServer((_req, res) => {
    res.writeHead(200, { "content-type": "application/json" });
    res.end(sample);
  });
  const bareUrl = await listen(bare);
  const baseline = await drive("bare node:http, fixed JSON (baseline)", (i) =>
    bootstrapOnce({ url: bareUrl, externalId: `dev-${i % CONFIGS}`, externalKey: "k" }),
  );
  printFigures(baseline);
  bare.closeAllConnections();
  bare.close();

  const registry = new ConfigRegistry(new MemoryBackend());
  for (let i = 0; i < CONFIGS; i++) await registry.add(config(i));
  const service = new MainfluxBootstrapService({
    registry,
    cfbKey: Buffer.from(CFB),
    gcm: { keyId: "k1", key: Buffer.from(GCM, "hex") },
  });
  const handler = bootstrapHandler(service);
  const server = createServer((req, res) => handler(req, res));
  const url = await listen(server);
  const modes: Array<[BootstrapMode, string | undefined]> = [
    ["plain", undefined],
    ["secure", CFB],
    ["gcm", GCM],
  ];
  for (const [mode, encryptionKey] of modes) {
    printFigures(
      await drive(`bootstrap-service, ${mode}`, (i) => {
        const req = {
          url,
          externalId: `dev-${i % CONFIGS}`,
          externalKey: `external-key-${i % CONFIGS}`,
          mode,
          encryptionKey,
          keyId: "k1",
        };
        return bootstrapOnce(req, {}, prepare(req));
      }),
      baseline,
    );
  }
  server.closeAllConnections();
  server.close();
}
