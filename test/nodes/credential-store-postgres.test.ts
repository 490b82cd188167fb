/**
 * credential-store-config with the "postgres" backend in a real Node-RED runtime
 * (node-red-node-test-helper), over a private PostgreSQL (test/support/postgres.ts): the
 * password from the node's credentials (with ${ENV}), sealed rows, what the config node
 * says when the database cannot be used, and no password in any status or error.
 */
import { after, afterEach, before, describe, it } from "mocha";
import assert from "node:assert/strict";
import configModule from "../../nodes/credential-store-config";
import storeModule from "../../nodes/credential-store";
import type { StoreBackend } from "../../lib/stores/backend";
import {
  storeCatchModule,
  startStoreServer,
  stopStoreServer,
  storeHelper as helper,
} from "../support/store-helper";
import { within } from "../support/events";
import { freeTcpPort } from "../support/ports";
import { POSTGRES_MISSING, postgresBin, startPostgres, type PgServer } from "../support/postgres";

type Msg = Record<string, unknown>;

describe("nodes/credential-store-postgres", () => {
  const modules = [configModule, storeModule, storeCatchModule];
  const SECRET = "pg-node-secret-TOKEN-0815";
  let pg: PgServer;
  before(async function () {
    if (!postgresBin()) {
      console.warn(POSTGRES_MISSING);
      this.skip();
    }
    pg = await startPostgres();
    await startStoreServer();
  });
  afterEach(() => helper.unload());
  after(async () => {
    if (!pg) return;
    await stopStoreServer();
    await pg.remove();
  });

  const flow = (cfg: Msg, cs: Msg = {}): Msg[] => [
    { id: "tab", type: "tab", label: "t" },
    {
      id: "cfg",
      type: "credential-store-config",
      backend: "postgres",
      pgHost: pg.host,
      pgPort: String(pg.port),
      pgDatabase: pg.database,
      pgUser: pg.user,
      pgNamespace: "node_store",
      pgPoolSize: "2",
      encrypt: false,
      ...cfg,
    },
    {
      id: "cs",
      type: "credential-store",
      z: "tab",
      store: "cfg",
      operation: "get",
      key: "dev",
      wires: [["out1"], ["out2"]],
      ...cs,
    },
    { id: "out1", type: "helper", z: "tab" },
    { id: "out2", type: "helper", z: "tab" },
    { id: "catcher", type: "catch", z: "tab", scope: null, uncaught: false, wires: [["caught"]] },
    { id: "caught", type: "helper", z: "tab" },
  ];

  interface Harness {
    send(msg: Msg): Promise<{ port: string; msg: Msg }>;
    said: () => string;
    cfg: { backend?: StoreBackend; failure?: string; failureCode?: string };
  }

  async function load(cfg: Msg, credentials: Msg, cs: Msg = {}): Promise<Harness> {
    await helper.load(modules, flow(cfg, cs), { cfg: credentials });
    const node = helper.getNode("cs");
    const texts: unknown[] = [];
    node.on("call:status", (call: { args: unknown[] }) => texts.push(call.args[0]));
    node.on("call:error", (call: { args: unknown[] }) => texts.push(String(call.args[0])));
    const cfgNode = helper.getNode("cfg");
    cfgNode.on("call:error", (call: { args: unknown[] }) => texts.push(String(call.args[0])));
    return {
      said: () => JSON.stringify(texts),
      cfg: cfgNode as unknown as Harness["cfg"],
      send: (msg) =>
        within(20000, "an output of credential-store", (resolve) => {
          const ports = ["out1", "out2", "caught"];
          const handlers = ports.map((port) => {
            const h = (m: Msg) => {
              ports.forEach((p, i) => helper.getNode(p).removeListener("input", handlers[i]));
              resolve({ port, msg: m });
            };
            helper.getNode(port).on("input", h);
            return h;
          });
          node.receive(msg);
        }),
    };
  }

  it("set, get and list through the node; the password from ${ENV}; sealed rows; the database named, never the password", async () => {
    process.env.PG_NODE_TEST_PASSWORD = pg.password;
    try {
      const h = await load(
        { encrypt: true, pgNamespace: "node_sealed" },
        { pgPassword: "${PG_NODE_TEST_PASSWORD}", encryptionKey: "node-passphrase" },
      );
      let r = await h.send({ operation: "set", payload: { token: SECRET } });
      assert.equal(r.port, "out1", JSON.stringify(r.msg.error));
      r = await h.send({});
      assert.deepEqual(r.msg.payload, { token: SECRET });
      r = await h.send({ operation: "list" });
      assert.deepEqual(
        (r.msg.payload as Msg[]).map((e) => e.key),
        ["dev"],
      );
      assert.equal(
        h.cfg.backend?.describe(),
        `postgres ${pg.database}@${pg.host}:${pg.port} table node_sealed (encrypted)`,
      );
      const dump = JSON.stringify(await pg.query('SELECT * FROM "node_sealed"', [], pg.database));
      assert.ok(!dump.includes(SECRET), "no token in the table");
      assert.ok(!h.said().includes(pg.password));
    } finally {
      delete process.env.PG_NODE_TEST_PASSWORD;
    }
  });

  it("a URL (without password) and the password field; a password in the URL is refused", async () => {
    const url = `postgres://${pg.user}@${pg.host}:${pg.port}/${pg.database}`;
    let h = await load(
      { pgUrl: url, pgHost: "", pgPort: "", pgDatabase: "", pgUser: "" },
      { pgPassword: pg.password },
    );
    assert.equal((await h.send({ operation: "set", payload: { token: SECRET } })).port, "out1");
    await helper.unload();
    h = await load(
      {
        pgUrl: `postgres://${pg.user}:${encodeURIComponent(pg.password)}@${pg.host}:${pg.port}/${pg.database}`,
      },
      {},
    );
    assert.equal(h.cfg.failureCode, "UNSUPPORTED");
    assert.match(String(h.cfg.failure), /password field/);
    const r = await h.send({});
    assert.equal(r.port, "caught");
    assert.equal((r.msg.error as { code: string }).code, "UNSUPPORTED");
    assert.ok(!h.said().includes(pg.password), "the URL's password is not repeated");
  });

  it("a wrong password, no server, a missing tls-config: deploy succeeds, every use fails, no password said", async () => {
    const wrong = "wrong-pg-password-4711";
    let h = await load({}, { pgPassword: wrong });
    let r = await h.send({});
    assert.equal(r.port, "caught");
    assert.equal((r.msg.error as { code: string }).code, "IO");
    assert.match(String((r.msg.error as { message: string }).message), /password authentication failed/);
    assert.ok(!h.said().includes(wrong) && !JSON.stringify(r.msg).includes(wrong));
    await helper.unload();
    h = await load({ pgPort: String(await freeTcpPort()) }, { pgPassword: pg.password });
    r = await h.send({});
    assert.equal((r.msg.error as { code: string }).code, "IO");
    assert.match(String((r.msg.error as { message: string }).message), /ECONNREFUSED/);
    await helper.unload();
    h = await load({ pgTls: "no-such-tls-config" }, { pgPassword: pg.password });
    assert.match(String(h.cfg.failure), /tls-missing/);
    r = await h.send({});
    assert.equal(r.port, "caught");
  });
});
