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

  it("no demo node names Node-RED's port, with or without PORT: the devices ask 'this Node-RED'", () => {
    for (const port of [undefined, "19999"]) {
      if (port === undefined) delete process.env.PORT;
      else process.env.PORT = port;
      const nodes = demo.flows();
      assert.deepEqual(mentions(nodes, 1880), []);
      if (port) assert.deepEqual(mentions(nodes, Number(port)), []);
      assert.equal(nodes.find((n) => n.id === "tb-child")?.scheme, "local");
      assert.equal(nodes.find((n) => n.id === "mf-ex-device")?.url, "/");
    }
  });

  it("PROVISION_MQTT_PORT and DPS_PORT go into their one place, the tab's environment", () => {
    process.env.PROVISION_MQTT_PORT = "21883";
    process.env.DPS_PORT = "25684";
    const nodes = demo.flows();
    const functional = (k: string) => k !== "info";
    assert.deepEqual(mentions(nodes, 1883, functional), []);
    assert.deepEqual(mentions(nodes, 15684, functional), []);
    const envOf = (tab: string) =>
      (nodes.find((n) => n.id === tab)?.env as Array<{ name: string; value: string }>) ?? [];
    assert.deepEqual(
      envOf("tb-tab").find((e) => e.name === "PROVISION_MQTT_PORT"),
      { name: "PROVISION_MQTT_PORT", value: "21883", type: "str" },
    );
    assert.deepEqual(envOf("dps-ex-tab"), [{ name: "DPS_PORT", value: "25684", type: "str" }]);
    assert.equal(nodes.find((n) => n.id === "tb-server")?.mqttPort, "${PROVISION_MQTT_PORT}");
    assert.equal(nodes.find((n) => n.id === "dps-ex-client")?.endpoints, "coaps+tcp://127.0.0.1:${DPS_PORT}");
  });
});
