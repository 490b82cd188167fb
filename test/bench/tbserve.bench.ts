/**
 * Benchmark (never a test): N ThingsBoard provisionings over MQTT against the embedded
 * server (connect, subscribe, request, answer, disconnect), against a bare aedes that
 * only echoes a fixed answer to the asking client: the cost of the service on top of the
 * broker. `npm run bench` calls run(); figures are printed, nothing is asserted.
 */

import { connect } from "mqtt";
import { createServer, type AddressInfo } from "node:net";
import { startTbMqttServer } from "../../lib/dialects/thingsboard/server-mqtt";
import { loadAedes } from "../../lib/transports/embedded-broker";
import { printFigures, timed, type Figures } from "./report";
import { makeService, request } from "../support/tbserve-fixtures";

/** One device: connect as `provision`, subscribe, publish, wait for the answer, close. */
function provisionOnce(port: number, name: string): Promise<number> {
  const t0 = process.hrtime.bigint();
  return new Promise((resolve, reject) => {
    const client = connect({
      host: "127.0.0.1",
      port,
      username: "provision",
      protocolVersion: 4,
      reconnectPeriod: 0,
    });
    client.on("error", reject);
    client.on("connect", () => {
      client.subscribe("/provision/response", { qos: 1 }, (err) => {
        if (err) return reject(err);
        client.publish("/provision/request", request({ deviceName: name }), { qos: 1 });
      });
    });
    client.on("message", () => {
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      client.end(true, {}, () => resolve(ms));
    });
  });
}

async function drive(label: string, port: number, n: number, concurrency: number): Promise<Figures> {
  const latencies: number[] = [];
  let next = 0;
  const [, ms] = await timed(async () => {
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (next < n) {
          const i = next++;
          latencies.push(await provisionOnce(port, `${label.replace(/\W+/g, "-")}-${i}`));
        }
      }),
    );
  });
  return { label, count: n, seconds: ms / 1000, latenciesMs: latencies };
}

/** A bare aedes that answers each request with a fixed SUCCESS, to the asking client only. */
async function bareAedes(): Promise<{ port: number; close: () => Promise<void> }> {
  const { Aedes } = await loadAedes();
  const answer = Buffer.from('{"status":"SUCCESS","credentialsType":"ACCESS_TOKEN","credentialsValue":"x"}');
  const broker = await Aedes.createBroker({
    authorizePublish: (client, _packet, cb) => {
      cb(null);
      // aedes needs the callback for QoS 1: it is called on PUBACK.
      client?.publish(
        { cmd: "publish", topic: "/provision/response", payload: answer, qos: 1, dup: false, retain: false },
        () => undefined,
      );
    },
  });
  const server = createServer(broker.handle);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
  return {
    port: (server.address() as AddressInfo).port,
    close: async () => {
      await new Promise<void>((resolve) => broker.close(() => resolve()));
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** Measures `n` provisionings with `concurrency` devices at a time; prints both figures. */
export async function benchTbServer(
  n = 2000,
  concurrency = 50,
): Promise<{ served: Figures; baseline: Figures }> {
  const bare = await bareAedes();
  const baseline = await drive("bare aedes, echo answer", bare.port, n, concurrency);
  await bare.close();
  const { service } = makeService();
  const server = await startTbMqttServer(service, { port: 0, closeAfterMs: 60000 });
  const served = await drive("provision-response core, embedded mqtt", server.port, n, concurrency);
  await server.close();
  printFigures(baseline);
  printFigures(served, baseline);
  return { served, baseline };
}

export async function run(): Promise<void> {
  await benchTbServer(
    Number(process.env.TBSERVE_BENCH_N ?? 2000),
    Number(process.env.TBSERVE_BENCH_CONCURRENCY ?? 50),
  );
}
