import { describe, it } from "mocha";
import assert from "node:assert/strict";
import { runtimes, startNodeRed } from "../support/node-red";

describe("smoke/context-store", () => {
  /**
   * The context backend on a localfilesystem store configured in settings.js, in the real
   * node-red program: what a flow stores is there again after Node-RED restarts.
   */
  const settings = `contextStorage: { default: { module: "memory" }, disk: { module: "localfilesystem" } }`;

  function flows() {
    const store = {
      id: "ctxstore",
      type: "credential-store-config",
      backend: "context",
      contextStore: "disk",
      contextPrefix: "prov_",
    };
    const http = (id: string, method: string, url: string, op: string, y: number) => [
      { id: `${id}-in`, type: "http in", z: "t", url, method, x: 100, y, wires: [[`${id}-op`]] },
      {
        id: `${id}-op`,
        type: "credential-store",
        z: "t",
        store: "ctxstore",
        operation: op,
        key: "gateway-1",
        x: 300,
        y,
        wires: [[`${id}-ok`], [`${id}-missing`]],
      },
      { id: `${id}-ok`, type: "http response", z: "t", statusCode: "200", x: 500, y, wires: [] },
      { id: `${id}-missing`, type: "http response", z: "t", statusCode: "404", x: 500, y: y + 40, wires: [] },
    ];
    return [
      { id: "t", type: "tab", label: "context store" },
      store,
      ...http("set", "post", "/creds", "set", 100),
      ...http("get", "get", "/creds", "get", 200),
    ];
  }

  it("context backend: a value set through a flow survives a Node-RED restart (localfilesystem)", async () => {
    const rt = runtimes()[0];
    const first = await startNodeRed(rt, { flows: flows(), settings });
    try {
      assert.equal((await fetch(`${first.url}/creds`)).status, 404, "nothing stored yet");
      const set = await fetch(`${first.url}/creds`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ token: "A1b2C3d4E5f6G7h8I9j0" }),
      });
      assert.equal(set.status, 200);
    } finally {
      await first.stop();
    }
    assert.deepEqual(first.problems(), []);
    const second = await startNodeRed(rt, { userDir: first.userDir, settings });
    try {
      const got = await fetch(`${second.url}/creds`);
      assert.equal(got.status, 200);
      assert.deepEqual(await got.json(), { token: "A1b2C3d4E5f6G7h8I9j0" });
      assert.doesNotMatch(
        first.output() + second.output(),
        /A1b2C3d4E5f6G7h8I9j0/,
        "the token is never logged",
      );
      assert.deepEqual(second.problems(), []);
    } finally {
      await second.stop();
    }
  });
});
