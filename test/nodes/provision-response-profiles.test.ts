/**
 * provision-response names its profiles in a list. Flows saved with the three fixed slots
 * (profile, profile2, profile3) keep working in a real runtime, and the dialog moves them
 * into the list (run here as the editor runs it: the .html's script in a VM).
 */
import assert from "node:assert/strict";
import { runEditorScripts } from "../support/editor-scripts";
import { after, afterEach, before, describe, it } from "mocha";
import { freeTcpPort } from "../support/ports";
import { mqttDevice, nextMessages } from "../support/tbserve-fixtures";
import { helper, startServer, statusOf, stopServer, testStoreModule } from "../support/node-helper";

// eslint-disable-next-line @typescript-eslint/no-require-imports
const responseNode = require("../../nodes/provision-response") as unknown;
// eslint-disable-next-line @typescript-eslint/no-require-imports
const profileNode = require("../../nodes/provisioning-profile") as unknown;
const nodes = [testStoreModule, profileNode, responseNode];

const creds = {
  p1: { key: "key-one", secret: "secret-one-8f3a" },
  p2: { key: "key-two", secret: "secret-two-8f3a" },
};

function flow(srv: Record<string, unknown>): Array<Record<string, unknown>> {
  const profile = (id: string, name: string) => ({
    id,
    type: "provisioning-profile",
    name,
    strategy: "allow-create",
    credentialsType: "ACCESS_TOKEN",
  });
  return [
    { id: "tab", type: "tab" },
    profile("p1", "first"),
    profile("p2", "second"),
    {
      id: "srv",
      z: "tab",
      type: "provision-response",
      mqtt: "embedded",
      mqttHost: "127.0.0.1",
      wires: [[], ["out"]],
      ...srv,
    },
    { id: "out", z: "tab", type: "helper" },
  ];
}

async function provision(port: number, key: string, secret: string, deviceName: string): Promise<string> {
  const dev = await mqttDevice(`mqtt://127.0.0.1:${port}`);
  dev.client.publish(
    "/provision/request",
    JSON.stringify({ deviceName, provisionDeviceKey: key, provisionDeviceSecret: secret }),
    { qos: 1 },
  );
  const answer = (await nextMessages(dev))[0].payload;
  dev.client.end(true);
  return (JSON.parse(answer) as { status: string }).status;
}

/** Runs a management message and returns the result the node sent. */
function listed(profile: string): Promise<string[]> {
  return new Promise((resolve) => {
    helper
      .getNode("out")
      .once("input", (m: { payload: { devices: Array<{ name: string }> } }) =>
        resolve(m.payload.devices.map((d) => d.name)),
      );
    helper.getNode("srv").receive({ topic: "list", payload: { profile } });
  });
}

describe("provision-response: a list of profiles, and flows saved with three slots", () => {
  before(() => startServer());
  after(() => stopServer());
  afterEach(() => helper.unload());

  for (const [what, srv] of [
    ["a flow saved with profile and profile2 (no list)", { profile: "p1", profile2: "p2", profile3: "" }],
    [
      "the same flow deployed by the editor without opening the dialog (an empty list beside the slots)",
      { profiles: [], profile: "p1", profile2: "p2", profile3: "" },
    ],
    ["a flow saved with the list", { profiles: ["p1", "p2"], profile: "", profile2: "", profile3: "" }],
  ] as const) {
    it(`${what}: serves both profiles, the second one too`, async () => {
      const port = await freeTcpPort();
      await helper.load(nodes, flow({ ...srv, mqttPort: port }), creds);
      const s = await statusOf(helper.getNode("srv"), ["green", "red"]);
      assert.equal(s.fill, "green", s.text);
      assert.equal(await provision(port, "key-two", "secret-two-8f3a", "via-second"), "SUCCESS");
      assert.equal(await provision(port, "key-one", "secret-one-8f3a", "via-first"), "SUCCESS");
      assert.equal(await provision(port, "key-two", "secret-one-8f3a", "crossed"), "NOT_FOUND");
      assert.deepEqual(await listed("second"), ["via-second"]);
      assert.deepEqual(await listed("first"), ["via-first"]);
    });
  }

  it("a management message naming no such profile is NOT_FOUND, the earlier word in msg.errorStatus", async () => {
    await helper.load(nodes, flow({ profiles: ["p1"], mqtt: "off", http: true }), creds);
    const srv = helper.getNode("srv");
    assert.equal((await statusOf(srv, ["green", "red"])).fill, "green");
    const failed = new Promise<unknown[]>((resolve) =>
      srv.once("call:error", (call: { args: unknown[] }) => resolve(call.args)),
    );
    srv.receive({ topic: "list", payload: { profile: "nope" } });
    const [err, msg] = (await failed) as [{ code?: string; message?: string }, { errorStatus?: unknown }];
    assert.equal(err.code, "NOT_FOUND", "the code a Catch node reads as msg.error.code");
    // The node's sentence for the code (its catalogue; the test runtime's RED._ gives the key), then the core's detail.
    assert.equal(err.message, "provision-response.errors.codes.NOT_FOUND: no profile has that name");
    assert.equal(msg.errorStatus, "UNKNOWN_PROFILE");
  });

  it("a list that names no profile does not serve, and says why", async () => {
    await helper.load(nodes, flow({ profiles: [], profile: "", mqttPort: await freeTcpPort() }), creds);
    const srv = helper.getNode("srv");
    assert.equal((await statusOf(srv, ["red", "green"])).fill, "red");
    assert.match(JSON.stringify(srv.error.args), /provision-response.errors.no-profile/);
  });
});

interface EditorDef {
  defaults: Record<string, { value?: unknown; validate?: (this: unknown, v: unknown) => boolean }>;
  migrateProfiles(node: Record<string, unknown>): string[];
  oneditprepare(this: Record<string, unknown>): void;
  oneditsave(this: Record<string, unknown>): void;
}

/**
 * The editor's definition, with just enough of jQuery's editableList for the dialog's
 * profile list: the rows it adds and the values of their selects.
 */
function editor(configNodes: Array<{ id: string; type: string; name: string }>) {
  const rows: Array<{ value: string }> = [];
  const $ = (sel: unknown) => {
    const self: Record<string, unknown> = {
      on: () => self,
      toggle: () => self,
      is: () => false,
      val: () => "",
      empty: () => self,
      appendTo: () => self,
      text: () => self,
      find: () => ({ length: 0 }),
      editableList: (op: unknown, data?: { id: string }) => {
        if (op === "addItem" && data) rows.push({ value: data.id });
        if (op === "items")
          return {
            each: (f: (this: unknown) => void) => rows.forEach((r) => f.call({ row: r })),
          };
        return self;
      },
    };
    // `$(this).find("select").val()` inside oneditsave's each: the row's value.
    if (typeof sel === "object" && sel !== null && "row" in sel) {
      const row = (sel as { row: { value: string } }).row;
      return { find: () => ({ val: () => row.value }) };
    }
    return self;
  };
  let def: EditorDef | undefined;
  const RED = {
    nodes: {
      registerType: (type: string, d: EditorDef) => {
        if (type === "provision-response") def = d;
      },
      eachConfig: (f: (c: unknown) => void) => configNodes.forEach(f),
      node: (id: string) => configNodes.find((c) => c.id === id) ?? null,
    },
    validators: { number: () => () => true, regex: () => () => true },
    _: (k: string) => k,
  };
  runEditorScripts("provision-response.html", { RED, $ });
  assert.ok(def, "provision-response registers");
  return { def, rows };
}

describe("provision-response dialog: the three slots move into the list", () => {
  const profiles = [
    { id: "p1", type: "provisioning-profile", name: "first" },
    { id: "p2", type: "provisioning-profile", name: "second" },
    { id: "p3", type: "provisioning-profile", name: "third" },
  ];

  it("reads the slots in order, skips empty ones and repeats; a list wins over the slots", async () => {
    const { def: d } = editor(profiles);
    // Arrays made in the VM have its Array prototype: compare them as plain arrays.
    const def = { migrateProfiles: (n: Record<string, unknown>) => Array.from(d.migrateProfiles(n)) };
    assert.deepEqual(def.migrateProfiles({ profile: "p1", profile2: "", profile3: "p3" }), ["p1", "p3"]);
    assert.deepEqual(def.migrateProfiles({ profiles: [], profile: "p2", profile2: "p2" }), ["p2"]);
    assert.deepEqual(def.migrateProfiles({ profiles: ["p3", "p1"], profile: "p2" }), ["p3", "p1"]);
    assert.deepEqual(def.migrateProfiles({}), []);
  });

  it("opening and saving the dialog of a node with profile2 set saves the list and empties the slots", async () => {
    const { def, rows } = editor(profiles);
    const node: Record<string, unknown> = {
      _: (k: string) => k,
      profiles: [],
      profile: "p1",
      profile2: "p2",
      profile3: "",
    };
    def.oneditprepare.call(node);
    assert.deepEqual(
      rows.map((r) => r.value),
      ["p1", "p2"],
    );
    def.oneditsave.call(node);
    assert.deepEqual(
      [Array.from(node.profiles as string[]), node.profile, node.profile2, node.profile3],
      [["p1", "p2"], "", "", ""],
    );
  });

  it("marks a missing profile before deploy: none named, or one that is gone", async () => {
    const { def } = editor(profiles);
    const validate = def.defaults.profiles.validate;
    assert.ok(validate);
    assert.equal(validate.call({ profile: "" }, ["p1", "p2"]), true);
    assert.equal(validate.call({ profile: "" }, []), false);
    assert.equal(
      validate.call({ profile: "p2" }, []),
      true,
      "an old node's slots count until it is migrated",
    );
    assert.equal(validate.call({ profile: "" }, ["p1", "gone"]), false);
    assert.equal(validate.call({ profile: "gone" }, []), false);
  });
});
