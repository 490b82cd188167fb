import { afterEach, describe, it } from "mocha";
import assert from "node:assert/strict";
import { join } from "node:path";
import { PROJECT_ROOT } from "../support/node-red";

describe("unit/demo-flows", () => {
  // The demo's flow builder is plain JavaScript run by `npm start`.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const demo = require(join(PROJECT_ROOT, "scripts", "demo.js")) as {
    flows(): Array<Record<string, unknown>>;
  };

  const MOVED = ["PORT", "PROVISION_MQTT_PORT", "DPS_PORT"];
  const saved = Object.fromEntries(MOVED.map((k) => [k, process.env[k]]));
  afterEach(() => {
    for (const k of MOVED) {
      if (saved[k] === undefined) delete process.env[k];
      else process.env[k] = saved[k];
    }
  });

  /** Every field of every demo node that still names `port`, as a number or inside a string. */
  function mentions(
    nodes: Array<Record<string, unknown>>,
    port: number,
    fields?: (k: string) => boolean,
  ): string[] {
    const hits: string[] = [];
    const inString = new RegExp(`(^|\\D)${port}(?!\\d)`);
    for (const n of nodes)
      for (const [k, v] of Object.entries(n)) {
        if (k === "x" || k === "y" || (fields && !fields(k))) continue;
        if (v === port || (typeof v === "string" && inString.test(v))) hits.push(`${String(n.id)}.${k}`);
      }
    return hits;
  }

  it("with PORT set, no demo node talks to Node-RED's default port 1880 any more", () => {
    process.env.PORT = "19999";
    const nodes = demo.flows();
    assert.deepEqual(mentions(nodes, 1880), []);
    const child = nodes.find((n) => n.id === "tb-child");
    assert.equal(child?.port, "19999", "the HTTP child devices follow Node-RED's port");
    assert.ok(mentions(nodes, 19999).length >= 3, "the URLs and the host/port pair were moved");
  });

  it("without PORT the examples keep 1880, and other hosts' 1880 is never touched", () => {
    delete process.env.PORT;
    const nodes = demo.flows();
    assert.equal(nodes.find((n) => n.id === "tb-child")?.port, "1880");
  });

  it("PROVISION_MQTT_PORT and DPS_PORT move every functional field of their servers and clients", () => {
    process.env.PROVISION_MQTT_PORT = "21883";
    process.env.DPS_PORT = "25684";
    const nodes = demo.flows();
    const functional = (k: string) => k !== "info" && k !== "attachedUrl";
    assert.deepEqual(mentions(nodes, 1883, functional), []);
    assert.deepEqual(mentions(nodes, 15684, functional), []);
  });
});
