/**
 * Issue 11, item 3: Mainflux bootstrap in plain, secure (AES-CFB) and GCM modes, the
 * package's bootstrap-service in the real node-red program (the demo's service: its
 * initial configuration in the default file registry, rate limit off), fetched by the
 * package's own client from storm client processes; the baseline a bare node:http in its
 * own process answering every GET with the same plain JSON, fetched by the same client.
 *
 *   BENCH_BOOTSTRAP_REQUESTS (quick 1500, full 20000)  BENCH_BOOTSTRAP_CONCURRENCY (quick 16, full 100)
 */
import { answerJson, type BootstrapAnswer } from "../../lib/dialects/mainflux/wire";
import { measure, printRow, size, startBare, startNodeRed, StormClients } from "./harness";

const EXTERNAL_ID = "bench-device-01";
const EXTERNAL_KEY = "bench-external-key";
const CFB = "12345678910111213141516171819202";
const GCM = "5a".repeat(32);
const CONTENT = '{"report_every_s": 30}';

export async function run(): Promise<void> {
  const n = size("BOOTSTRAP_REQUESTS", 1500, 20000);
  const c = size("BOOTSTRAP_CONCURRENCY", 16, 100);
  const flows = [
    { id: "bench-tab", type: "tab", label: "bench" },
    {
      id: "bench-store",
      type: "credential-store-config",
      name: "bench registry",
      backend: "file",
      directory: "",
      defaultFolder: "own",
      encrypt: false,
    },
    {
      id: "bench-bootstrap",
      type: "bootstrap-service",
      z: "bench-tab",
      name: "bootstrap service",
      store: "bench-store",
      basePath: "",
      allowPlain: true,
      fields: "thing",
      gcmKeyId: "k1",
      gcmWindow: 300,
      initEnabled: true,
      initExternalId: EXTERNAL_ID,
      initThingId: "bench-thing-1",
      initName: "bench thing",
      initChannels: "bench-channel-1",
      initContent: CONTENT,
      rateLimit: 0,
      rateBurst: 100,
      x: 200,
      y: 100,
      wires: [[], []],
    },
  ];
  const credentials = {
    "bench-bootstrap": {
      encryptionKey: CFB,
      gcmKey: GCM,
      initExternalKey: EXTERNAL_KEY,
      initThingKey: "bench-thing-key",
    },
  };
  const plain: BootstrapAnswer = {
    thingId: "bench-thing-1",
    thingKey: "bench-thing-key",
    channels: [{ id: "bench-channel-1" }],
    content: CONTENT,
  };
  const nr = await startNodeRed({ flows, credentials });
  const bare = await startBare("http", { BENCH_ANSWER: answerJson(plain) });
  const clients = await StormClients.start();
  try {
    const job = {
      kind: "bootstrap" as const,
      host: "127.0.0.1",
      port: 0,
      prefix: "x",
      externalId: EXTERNAL_ID,
    };
    const toBare = { ...job, url: `http://127.0.0.1:${bare.port}`, externalKey: "k", mode: "plain" as const };
    await clients.run(toBare, 0, 200, c);
    const base = await measure(`bare node:http, fixed JSON, at ${c}`, bare, clients, toBare, {
      count: n,
      concurrency: c,
    });
    printRow(base);
    const modes: Array<[string, Record<string, string>]> = [
      ["plain", {}],
      ["secure", { encryptionKey: CFB }],
      ["gcm", { encryptionKey: GCM, keyId: "k1" }],
    ];
    for (const [mode, extra] of modes) {
      const toNr = { ...job, url: nr.url, externalKey: EXTERNAL_KEY, mode: mode as "plain", ...extra };
      await clients.run(toNr, 0, 200, c);
      printRow(
        await measure(`bootstrap-service, ${mode}, at ${c}`, nr, clients, toNr, { count: n, concurrency: c }),
        base,
      );
    }
  } finally {
    await clients.close();
    await bare.stop();
    await nr.stop();
  }
}
