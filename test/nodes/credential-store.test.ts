import { after, afterEach, before, describe, it } from "mocha";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import configModule from "../../nodes/credential-store-config";
import storeModule from "../../nodes/credential-store";
import { FileBackend } from "../../lib/stores/file";
import type { StoreBackend } from "../../lib/stores/backend";
import {
  STORE_USER_DIR,
  startStoreServer,
  stopStoreServer,
  storeCatchModule,
  storeHelper as helper,
} from "../support/store-helper";
import { within } from "../support/events";
import { PROJECT_ROOT } from "../support/node-red";

describe("nodes/credential-store", () => {
  const modules = [configModule, storeModule, storeCatchModule];
  const root = mkdtempSync(join(tmpdir(), "store-nodes-"));
  let n = 0;
  const freshDir = () => join(root, `d${++n}`);
  const SECRET = "node-secret-TOKEN-4711";

  before(() => startStoreServer());
  afterEach(() => helper.unload());
  after(async () => {
    await stopStoreServer();
    rmSync(root, { recursive: true, force: true });
    rmSync(STORE_USER_DIR, { recursive: true, force: true });
  });

  type Msg = Record<string, unknown>;
  interface Status {
    fill?: string;
    shape?: string;
    text?: string;
  }

  function flow(cfg: Msg, cs: Msg = {}): Msg[] {
    return [
      { id: "tab", type: "tab", label: "t" },
      { id: "cfg", type: "credential-store-config", name: "", backend: "file", encrypt: false, ...cfg },
      {
        id: "cs",
        type: "credential-store",
        z: "tab",
        store: "cfg",
        operation: "get",
        key: "",
        wires: [["out1"], ["out2"]],
        ...cs,
      },
      { id: "out1", type: "helper", z: "tab" },
      { id: "out2", type: "helper", z: "tab" },
      { id: "catcher", type: "catch", z: "tab", scope: null, uncaught: false, wires: [["caught"]] },
      { id: "caught", type: "helper", z: "tab" },
    ];
  }

  interface Harness {
    send(msg: Msg): Promise<{ port: "out1" | "out2" | "caught"; msg: Msg }>;
    statuses: Status[];
    errors: string[];
  }

  async function load(cfg: Msg, cs: Msg = {}, credentials?: Msg): Promise<Harness> {
    await helper.load(modules, flow(cfg, cs), credentials ? { cfg: credentials } : undefined);
    const statuses: Status[] = [];
    const errors: string[] = [];
    const node = helper.getNode("cs");
    node.on("call:status", (call: { args: [Status] }) => statuses.push(call.args[0]));
    node.on("call:error", (call: { args: unknown[] }) => errors.push(String(call.args[0])));
    return {
      statuses,
      errors,
      send: (msg) =>
        within(10000, "an output of credential-store", (resolve) => {
          const ports = ["out1", "out2", "caught"] as const;
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

  const lastStatus = (h: Harness) => h.statuses[h.statuses.length - 1];

  function assertNoSecret(h: Harness, ...secrets: string[]) {
    const said = JSON.stringify(h.statuses) + JSON.stringify(h.errors);
    for (const s of secrets) assert.equal(said.includes(s), false, `"${s}" leaked into status or error text`);
  }

  it("set, get, list, delete with per-message overrides; two outputs; status never shows a value", async () => {
    const dir = freshDir();
    const h = await load({ directory: dir }, { operation: "get", key: "dialog-key" });

    let r = await h.send({
      operation: "set",
      key: "tb/dev-1",
      payload: { token: SECRET },
      meta: { protocol: "thingsboard", kind: "ACCESS_TOKEN" },
    });
    assert.equal(r.port, "out1");
    assert.deepEqual(Object.keys(r.msg.payload as object).sort(), ["expired", "key", "meta"]);
    assert.equal(JSON.stringify(r.msg).includes(SECRET), false);
    assert.equal((r.msg.meta as { protocol: string }).protocol, "thingsboard");
    assert.deepEqual(lastStatus(h), { fill: "green", shape: "dot", text: "credential-store.status.stored" });

    r = await h.send({ key: "tb/dev-1" });
    assert.equal(r.port, "out1");
    assert.deepEqual(r.msg.payload, { token: SECRET });
    assert.equal(r.msg.found, true);
    assert.equal(r.msg.expired, false);
    assert.equal((r.msg.meta as { kind: string }).kind, "ACCESS_TOKEN");
    assert.equal(lastStatus(h).text, "credential-store.status.found");

    // The dialog key is used when the message has none; it is missing: output 2.
    r = await h.send({ payload: "unchanged" });
    assert.equal(r.port, "out2");
    assert.equal(r.msg.found, false);
    assert.equal(r.msg.key, "dialog-key");
    assert.equal(r.msg.payload, "unchanged");
    assert.deepEqual(lastStatus(h), {
      fill: "yellow",
      shape: "ring",
      text: "credential-store.status.not-found",
    });

    r = await h.send({ operation: "list" });
    assert.equal(r.port, "out1");
    const list = r.msg.payload as Array<Msg>;
    assert.deepEqual(
      list.map((e) => [e.key, e.expired, Object.keys(e).sort().join()]),
      [["tb/dev-1", false, "expired,key,meta"]],
    );
    assert.equal(JSON.stringify(list).includes(SECRET), false);
    assert.equal(lastStatus(h).text, "credential-store.status.listed");

    r = await h.send({ operation: "delete", key: "tb/dev-1" });
    assert.equal(r.msg.payload, true);
    assert.equal(lastStatus(h).text, "credential-store.status.deleted");
    r = await h.send({ operation: "delete", key: "tb/dev-1" });
    assert.equal(r.msg.payload, false);
    r = await h.send({ key: "tb/dev-1" });
    assert.equal(r.port, "out2");
    assertNoSecret(h, SECRET);
  });

  it("a ProvisioningResult payload fills the metadata; msg.meta overrides; expired entries are marked", async () => {
    const h = await load({ directory: freshDir() }, { operation: "set", key: "dev" });
    const result = {
      dialect: "thingsboard",
      endpoint: "mqtts://tb.example:8883",
      device: { name: "dev" },
      proof: "provision-key",
      credentials: { type: "ACCESS_TOKEN", token: SECRET },
      configuration: {},
      obtainedAt: "2026-02-03T04:05:06.000Z",
      expiresAt: "2020-01-01T00:00:00.000Z",
      reused: false,
    };
    let r = await h.send({ payload: result });
    const meta = r.msg.meta as Record<string, string>;
    assert.equal(meta.protocol, "thingsboard");
    assert.equal(meta.endpoint, "mqtts://tb.example:8883");
    assert.equal(meta.obtainedAt, "2026-02-03T04:05:06.000Z");
    assert.equal(meta.kind, "ACCESS_TOKEN");
    assert.equal((r.msg.payload as { expired: boolean }).expired, true);

    r = await h.send({ operation: "get" });
    assert.equal(r.port, "out1");
    assert.equal(r.msg.found, true);
    assert.equal(r.msg.expired, true);
    assert.deepEqual(r.msg.payload, result);
    assert.deepEqual(lastStatus(h), {
      fill: "yellow",
      shape: "dot",
      text: "credential-store.status.expired",
    });

    r = await h.send({ payload: result, meta: { expiresAt: "2999-01-01T00:00:00Z", kind: "custom" } });
    assert.equal((r.msg.meta as Record<string, string>).kind, "custom");
    r = await h.send({ operation: "get" });
    assert.equal(r.msg.expired, false);
    assertNoSecret(h, SECRET);
  });

  it("every bad input reaches a Catch node with its code, a red status, and nothing is overwritten", async () => {
    const dir = freshDir();
    const h = await load({ directory: dir }, { operation: "set", key: "dev" });
    await h.send({ payload: { token: SECRET } });
    const before = readFileSync(join(dir, readdirSync(dir)[0]), "utf8");
    const cyclic: Msg = { token: SECRET };
    cyclic.self = cyclic;
    const cases: Array<[string, Msg]> = [
      ["UNSUPPORTED", { operation: "explode", payload: { token: SECRET } }],
      ["INVALID_KEY", { key: 42, operation: "get", payload: SECRET }],
      ["INVALID_KEY", { key: "line\nbreak", payload: { token: SECRET } }],
      ["INVALID_VALUE", { payload: () => SECRET }],
      ["INVALID_VALUE", { payload: cyclic }],
      ["INVALID_VALUE", {}],
      ["INVALID_VALUE", { payload: { token: "x" }, meta: { expiresAt: "not a date" } }],
      ["INVALID_VALUE", { payload: { token: "x" }, meta: "not an object" }],
    ];
    for (const [code, msg] of cases) {
      const r = await h.send(msg);
      assert.equal(r.port, "caught", code);
      const err = r.msg.error as { code: string; message: string };
      assert.equal(err.code, code, err.message);
      // Node-RED's msg.error.message is the error's toString(): "StoreError: <sentence>: <detail>".
      assert.ok(err.message.startsWith(`StoreError: credential-store.errors.codes.${code}: `), err.message);
      assert.equal(err.message.includes(SECRET), false);
      const st = lastStatus(h);
      assert.equal(st.fill, "red");
      assert.equal(st.text, "credential-store.status.failed");
    }
    // Without a dialog key, a message without a key is refused.
    await helper.unload();
    const h2 = await load({ directory: dir }, { operation: "get", key: "" });
    const r = await h2.send({});
    assert.equal((r.msg.error as { code: string }).code, "INVALID_KEY");
    assert.equal(readFileSync(join(dir, readdirSync(dir)[0]), "utf8"), before);
    assertNoSecret(h, SECRET);
  });

  it("credentials: the encryption key comes from the node's credentials; nothing secret on disk", async () => {
    const dir = freshDir();
    const h = await load(
      { directory: dir, encrypt: true },
      { operation: "set", key: "dev" },
      { encryptionKey: "node-pass" },
    );
    await h.send({ payload: { token: SECRET } });
    for (const f of readdirSync(dir))
      assert.equal(readFileSync(join(dir, f), "utf8").includes(SECRET), false, f);
    const r = await h.send({ operation: "get" });
    assert.deepEqual(r.msg.payload, { token: SECRET });
    const store = new FileBackend({ directory: dir, passphrase: "node-pass" });
    assert.deepEqual((await store.get("dev"))?.value, { token: SECRET });
    await store.close();
    await helper.unload();

    // ${ENV} in the credential, as the other nodes accept it.
    process.env.STORE_NODE_TEST_KEY = "node-pass";
    const h2 = await load(
      { directory: dir, encrypt: true },
      { key: "dev" },
      { encryptionKey: "${STORE_NODE_TEST_KEY}" },
    );
    assert.deepEqual((await h2.send({})).msg.payload, { token: SECRET });
    delete process.env.STORE_NODE_TEST_KEY;
  });

  it("a wrong key: deploy succeeds, the config node reports it, every use fails with WRONG_KEY", async () => {
    const dir = freshDir();
    const good = new FileBackend({ directory: dir, passphrase: "right", scryptN: 1 << 12 });
    await good.set("dev", { token: SECRET });
    await good.close();
    const before = readdirSync(dir).map((f) => readFileSync(join(dir, f), "utf8"));
    const h = await load({ directory: dir, encrypt: true }, { key: "dev" }, { encryptionKey: "wrong" });
    const cfg = helper.getNode("cfg") as unknown as {
      backend?: StoreBackend;
      failure?: string;
      failureCode?: string;
    };
    for (const op of ["get", "set", "list", "delete"]) {
      const r = await h.send({ operation: op, payload: { token: "new-token" } });
      assert.equal(r.port, "caught");
      assert.equal((r.msg.error as { code: string }).code, "WRONG_KEY", op);
    }
    assert.equal(cfg.failureCode, "WRONG_KEY");
    assert.equal(typeof cfg.failure, "string");
    assert.deepEqual(
      readdirSync(dir).map((f) => readFileSync(join(dir, f), "utf8")),
      before,
    );
    assertNoSecret(h, SECRET, "wrong", "right");
    // Encryption on with no key at all: the config node has no backend and says why.
    await helper.unload();
    const h2 = await load({ directory: dir, encrypt: true }, { key: "dev" });
    const cfg2 = helper.getNode("cfg") as unknown as { backend?: StoreBackend; failure?: string };
    assert.equal(cfg2.backend, undefined);
    assert.match(String(cfg2.failure), /no encryption key/);
    assert.equal(((await h2.send({})).msg.error as { code: string }).code, "WRONG_KEY");
  });

  it("an unusable directory does not break deploy and gives IO through Catch", async () => {
    const file = freshDir() + ".file";
    writeFileSync(file, "not a directory");
    const h = await load({ directory: join(file, "store") }, { operation: "set", key: "dev" });
    const r = await h.send({ payload: { token: SECRET } });
    assert.equal(r.port, "caught");
    assert.equal((r.msg.error as { code: string }).code, "IO");
    assert.equal(lastStatus(h).fill, "red");
    assert.equal(readFileSync(file, "utf8"), "not a directory");
    assertNoSecret(h, SECRET);
  });

  it("no store configured: red status at start and UNSUPPORTED through Catch", async () => {
    const h = await load({}, { store: "", key: "dev" });
    const r = await h.send({});
    assert.equal((r.msg.error as { code: string }).code, "UNSUPPORTED");
    assert.equal(lastStatus(h).text, "credential-store.status.failed");
  });

  it("token-file and context backends through the node", async () => {
    const dir = mkdtempSync(join(root, "tok-"));
    const path = join(dir, "tb_access_token");
    let h = await load({ backend: "token-file", tokenPath: path }, { key: "ignored" });
    let r = await h.send({ operation: "set", payload: { token: SECRET } });
    assert.equal(r.port, "out1");
    assert.equal(readFileSync(path, "utf8"), SECRET);
    r = await h.send({ key: "anything" });
    assert.deepEqual(r.msg.payload, { token: SECRET });
    r = await h.send({ operation: "list" });
    assert.deepEqual(
      (r.msg.payload as Msg[]).map((e) => e.key),
      ["token"],
    );
    assertNoSecret(h, SECRET);
    await helper.unload();

    h = await load(
      { backend: "context", contextStore: "second", contextPrefix: "nodetest_" },
      { key: "dev" },
    );
    r = await h.send({ operation: "set", payload: { token: SECRET } });
    assert.equal(r.port, "out1");
    r = await h.send({});
    assert.deepEqual(r.msg.payload, { token: SECRET });
    r = await h.send({ operation: "list" });
    assert.deepEqual(
      (r.msg.payload as Msg[]).map((e) => e.key),
      ["dev"],
    );
    await helper.unload();

    h = await load({ backend: "context", contextStore: "nosuchstore" }, { key: "dev" });
    r = await h.send({});
    assert.equal((r.msg.error as { code: string }).code, "UNSUPPORTED");
    assert.match((r.msg.error as { message: string }).message, /nosuchstore/);
  });

  it("no directory: each new config node its own folder under the user dir; one deployed before the shared folder", async () => {
    const h = await load(
      { id: "cfg", directory: "", defaultFolder: "own" },
      { operation: "set", key: "own-key" },
    );
    assert.equal((await h.send({ payload: { token: SECRET } })).port, "out1");
    await helper.unload();
    assert.deepEqual(readdirSync(join(STORE_USER_DIR, "provisioning-stores")), ["cfg"]);
    assert.equal(readdirSync(join(STORE_USER_DIR, "provisioning-stores", "cfg")).length > 0, true);
    // The same id with no defaultFolder (a flow deployed before): the shared folder, which holds nothing of it.
    const old = await load({ directory: "" }, { operation: "list" });
    const listed = await old.send({});
    assert.equal(listed.port, "out1");
    assert.deepEqual(listed.msg.payload, []);
    assert.ok(readdirSync(STORE_USER_DIR).includes("provisioning-credentials"));
    // Back on its own folder, the entry is there.
    await helper.unload();
    const back = await load({ directory: "", defaultFolder: "own" }, { operation: "get", key: "own-key" });
    assert.equal((await back.send({})).port, "out1");
  });

  it("the example flow, as imported, drives set, get, list and delete in its own folder; no value reaches debug", async () => {
    const example = JSON.parse(
      readFileSync(join(PROJECT_ROOT, "examples", "credential-store-operations.json"), "utf8"),
    ) as Msg[];
    const nodes: Msg[] = [
      { id: "extab", type: "tab", label: "example" },
      ...example.map((nd) => (nd.type === "credential-store-config" ? nd : { ...nd, z: "extab" })),
    ];
    /* eslint-disable @typescript-eslint/no-require-imports */
    const core = [
      require("@node-red/nodes/core/common/20-inject.js"),
      require("@node-red/nodes/core/common/21-debug.js"),
      require("@node-red/nodes/core/common/90-comment.js"),
    ];
    // What the debug nodes send to the editor's sidebar, as the runtime publishes it.
    const { events } = require("@node-red/util") as {
      events: {
        on(e: string, f: (ev: CommsEvent) => void): void;
        off(e: string, f: (ev: CommsEvent) => void): void;
      };
    };
    /* eslint-enable @typescript-eslint/no-require-imports */
    interface CommsEvent {
      topic: string;
      data?: { id?: string; msg?: unknown };
    }
    const debugged: CommsEvent[] = [];
    const onComms = (ev: CommsEvent) => {
      if (ev.topic === "debug") debugged.push(ev);
    };
    events.on("comms", onComms);
    try {
      await helper.load([...modules, ...core], nodes);
      const debugOf = (id: string, trigger: string) =>
        within<CommsEvent>(10000, `debug output of ${id}`, (resolve) => {
          const seen = (ev: CommsEvent) => {
            if (ev.topic !== "debug" || ev.data?.id !== id) return;
            events.off("comms", seen);
            resolve(ev);
          };
          events.on("comms", seen);
          helper.getNode(trigger).receive({});
        });
      const statusOf = (id: string, trigger: string) =>
        within<Status>(10000, `status of ${id}`, (resolve) => {
          helper.getNode(id).once("call:status", (c: { args: [Status] }) => resolve(c.args[0]));
          helper.getNode(trigger).receive({});
        });
      assert.equal((await statusOf("cs-store-set", "cs-inject-set")).text, "credential-store.status.stored");
      const got = await debugOf("cs-debug-get", "cs-inject-get");
      assert.match(String(got.data?.msg), /thingsboard/, "the get debug shows the entry's metadata");
      assert.equal(
        (await statusOf("cs-store-list", "cs-inject-list")).text,
        "credential-store.status.listed",
      );
      assert.equal(
        (await statusOf("cs-store-delete", "cs-inject-delete")).text,
        "credential-store.status.deleted",
      );
      assert.equal(
        (await statusOf("cs-store-get", "cs-inject-get")).text,
        "credential-store.status.not-found",
      );
      assert.ok(debugged.length >= 4, `only ${debugged.length} debug messages`);
      const all = JSON.stringify(debugged);
      assert.equal(all.includes("EXAMPLE-TOKEN-123"), false, "the stored token reached the debug sidebar");
      // The entry lived in the example store's own folder, not the shared one.
      assert.ok(readdirSync(join(STORE_USER_DIR, "provisioning-stores")).includes("cs-config"));
    } finally {
      events.off("comms", onComms);
    }
  });
});
