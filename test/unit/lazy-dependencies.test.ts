/**
 * Node-RED loads every node file of a package when it starts, whether a flow uses the node
 * or not. The protocol libraries only some flows need (mqtt.js for a device or an attached
 * broker over MQTT, node-coap for ThingsBoard over CoAP, cbor for plgd's DPS) are loaded at
 * their first use, so a gateway that never speaks them does not hold them (mqtt.js and
 * node-coap are each several MiB of resident memory once loaded).
 */
import assert from "node:assert/strict";
import { describe, it } from "mocha";
import { PROJECT_ROOT } from "../support/node-red";
import { run } from "../support/process";

// Runs in a process of its own, so that nothing this mocha process loaded counts.
const PROBE = `
const { readdirSync } = require("node:fs");
const loaded = (name) =>
  Object.keys(require.cache).some((k) => k.includes("/node_modules/" + name + "/"));
for (const f of readdirSync("dist/nodes").filter((f) => f.endsWith(".js"))) require("./dist/nodes/" + f);
const now = () => ({ mqtt: loaded("mqtt"), coap: loaded("coap"), cbor: loaded("cbor") });
const atStart = now();
const { mqttConnect } = require("./dist/lib/transports/mqtt-connect");
mqttConnect("mqtt://127.0.0.1:9", { reconnectPeriod: 0 }).on("error", () => undefined).end(true);
require("./dist/lib/util/cbor-limits").decodeCborBounded(Buffer.from([0xa0]), { maxBytes: 64, maxDepth: 4, maxItems: 4 });
const { coapExchange } = require("./dist/lib/dialects/thingsboard/client-coap");
const ac = new AbortController();
const exchange = coapExchange(new URL("coap://127.0.0.1:9"), "{}", { timeoutMs: 1000, signal: ac.signal });
ac.abort();
exchange.catch(() => {
  console.log(JSON.stringify({ atStart, inUse: now() }));
});
`;

describe("unit/lazy-dependencies", () => {
  it("loading every node file loads none of mqtt.js, node-coap and cbor; their first use does", async () => {
    const r = await run(process.execPath, ["-e", PROBE], { cwd: PROJECT_ROOT });
    assert.equal(r.code, 0, r.stderr.toString());
    assert.deepEqual(JSON.parse(r.stdout.toString()), {
      atStart: { mqtt: false, coap: false, cbor: false },
      inUse: { mqtt: true, coap: true, cbor: true },
    });
  });
});
