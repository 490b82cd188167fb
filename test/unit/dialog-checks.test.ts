/**
 * Every dialog marks a bad value before deploy: each node's .html runs here as the editor
 * runs it (its script in a VM), and the validators of its ports, timeouts, jitter, retry
 * intervals and maximum attempts refuse what the editor must not accept and accept the
 * defaults. The checks are the same function in every file, and nodes/shared/config.ts
 * makes the same checks at run time (for a flow imported with a bad value).
 */
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "mocha";
import { badSettings, CHECKED_SETTINGS } from "../../nodes/shared/config";
import { EDITOR_SCRIPT_URL, runEditorScripts } from "../support/editor-scripts";
import { PROJECT_ROOT } from "../support/node-red";

type Validate = (this: Record<string, unknown>, v: unknown) => unknown;
interface Property {
  value?: unknown;
  type?: string;
  validate?: Validate;
}
interface EditorDef {
  defaults: Record<string, Property>;
  outputs?: number;
  outputLabels?: unknown;
  oneditsave?: (this: Record<string, unknown>) => void;
}

const NODES = join(PROJECT_ROOT, "nodes");
const htmlFiles = readdirSync(NODES).filter((f) => f.endsWith(".html"));

/** The definitions a file registers, with `$` answering `val()` from `fields`. */
function load(
  file: string,
  fields: Record<string, string> = {},
  configNodes: Array<{ id: string; type: string; valid?: boolean }> = [],
): Map<string, EditorDef> {
  const defs = new Map<string, EditorDef>();
  const RED = {
    nodes: {
      registerType: (type: string, d: EditorDef) => defs.set(type, d),
      node: (id: string) => configNodes.find((c) => c.id === id) ?? null,
    },
    validators: { number: () => () => true, regex: () => () => true },
    _: (k: string) => k,
  };
  const $ = (sel: string) => ({ val: () => fields[sel] ?? "" });
  runEditorScripts(file, { RED, $ });
  return defs;
}

type Kind =
  | "port"
  | "optionalPort"
  | "seconds"
  | "secondsOrZero"
  | "jitter"
  | "intervals"
  | "attempts"
  | "count"
  | "countOrZero"
  | "rate"
  | "minutes"
  | "mqttUrl";

/** What each kind of field must refuse, and what it must accept besides its default. */
const CASES: Record<Kind, { refuse: unknown[]; accept: unknown[] }> = {
  port: {
    refuse: [99999999, -1, "not valid!", 0, "1.5", "", "65536", "${}", "${1X}", "${A}1", "$PORT"],
    accept: [1, "8883", 65535, "${PROVISION_MQTT_PORT}"],
  },
  optionalPort: {
    refuse: [99999999, -1, "not valid!", 0, "65536", "${A B}", "x${A}"],
    accept: ["", "8883", "${PORT_1}"],
  },
  seconds: { refuse: [99999999, -1, "not valid!", 0, "", "1e3"], accept: ["0.5", 30, "2147483"] },
  secondsOrZero: { refuse: [99999999, -1, "not valid!", ""], accept: [0, "0", "60"] },
  jitter: { refuse: [99999999, -1, "not valid!", "1.5", ""], accept: [0, "1", "0.25"] },
  intervals: {
    refuse: [99999999, -1, "not valid!", "", "10, 0", "1,2,3,4,5,6,7,8,9", "10, x"],
    accept: ["5", "1;2 3", "1, 2, 3, 4, 5, 6, 7, 8"],
  },
  attempts: { refuse: [0, -2, "not valid!", "1.5", ""], accept: [-1, "1", 99999999] },
  count: { refuse: [-1, 0, "not valid!", "1.5", 99999999999], accept: ["", 1, "1000"] },
  countOrZero: { refuse: [-1, "not valid!", "1.5", 99999999999], accept: ["", 0, "5"] },
  rate: { refuse: [-1, "not valid!", 99999999999], accept: ["", 0, "0.5", 20] },
  minutes: { refuse: [-1, 0, "not valid!", 99999999], accept: ["", "0.5", 60, "35791"] },
  mqttUrl: {
    refuse: [
      "http://x",
      "mqtts://",
      "mqtts://h:123456",
      "mqtt://u:p@h",
      "mqtts://h/x",
      "x",
      "mqtt://h:${}",
      "mqtt://h:${A}1",
    ],
    accept: [
      "",
      "mqtts://broker-sandbox.everyware-cloud.com:8883",
      "tcp://10.0.0.1",
      "ssl://[::1]:8883/",
      "mqtt://127.0.0.1:${PROVISION_MQTT_PORT}",
      "mqtts://${BROKER_HOST}:8883",
    ],
  },
};

/** The fields named for their kind; provision-request's port may stay empty (the scheme's). */
function kindOf(type: string, field: string): Kind | undefined {
  if (type === "provision-request" && field === "port") return "optionalPort";
  if (["port", "mqttPort", "coapPort"].includes(field)) return "port";
  if (
    [
      "timeout",
      "kuraRetryInterval",
      "decideTimeout",
      "mqttFirstRequest",
      "mqttLifetime",
      "gcmWindow",
    ].includes(field)
  )
    return "seconds";
  if (["closeAfter", "repeatWindow"].includes(field)) return "secondsOrZero";
  if (field === "retryJitter") return "jitter";
  if (field === "retryIntervals") return "intervals";
  if (field === "retryMax") return "attempts";
  if (["rateBurst", "failLockAfter", "mqttMaxSessions", "mqttPerRemote"].includes(field)) return "count";
  if (["maxConnections", "maxConnectionsPerAddress"].includes(field)) return "count";
  if (field === "failSlowAfter") return "countOrZero";
  if (field === "rateLimit") return "rate";
  if (field === "failLockMinutes") return "minutes";
  if (field === "kuraBrokerUrl") return "mqttUrl";
  return undefined;
}

describe("dialogs: every bad value is marked before deploy", () => {
  it("each port, timeout, jitter, retry schedule and maximum refuses bad values and accepts its default", async () => {
    const checked: string[] = [];
    for (const file of htmlFiles) {
      for (const [type, def] of load(file)) {
        const node: Record<string, unknown> = {};
        for (const [k, p] of Object.entries(def.defaults)) node[k] = p.value;
        for (const [field, p] of Object.entries(def.defaults)) {
          const kind = kindOf(type, field);
          if (!kind) continue;
          const where = `${type}.${field} (${kind})`;
          assert.equal(typeof p.validate, "function", `${where} has a validator`);
          const ok = (v: unknown) => p.validate!.call(node, v) === true;
          assert.ok(ok(p.value), `${where} accepts its default ${String(p.value)}`);
          for (const v of CASES[kind].accept) assert.ok(ok(v), `${where} accepts ${JSON.stringify(v)}`);
          for (const v of CASES[kind].refuse) assert.ok(!ok(v), `${where} refuses ${JSON.stringify(v)}`);
          checked.push(`${type}.${field}`);
        }
      }
    }
    // The fields issue 10 found unchecked are among them.
    for (const f of [
      "provision-request.port",
      "provision-request.timeout",
      "provision-request.retryIntervals",
      "provision-request.retryJitter",
      "provision-request.retryMax",
      "provision-request.kuraRetryInterval",
      "provision-request.kuraBrokerUrl",
      "bootstrap-fetch.retryIntervals",
      "dps-client.retryIntervals",
      "dps-service.port",
      "provision-response.mqttPort",
      "provision-response.coapPort",
      "provision-response.rateLimit",
      "provision-response.failLockMinutes",
      "provision-response.mqttPerRemote",
      "bootstrap-service.rateBurst",
      "bootstrap-service.failSlowAfter",
      "dps-service.maxConnections",
    ])
      assert.ok(checked.includes(f), `${f} is checked`);
  });

  it("every dialog loads the shared checks from the package's resources, before its own script", async () => {
    for (const file of htmlFiles) {
      const html = readFileSync(join(NODES, file), "utf8");
      const tag = `<script src="${EDITOR_SCRIPT_URL}"></script>`;
      assert.ok(html.startsWith(tag), `${file} starts by loading ${EDITOR_SCRIPT_URL}`);
      assert.ok(!html.includes("var provisioningChecks"), `${file} holds no copy of the checks`);
    }
    const pkg = JSON.parse(readFileSync(join(PROJECT_ROOT, "package.json"), "utf8")) as { files: string[] };
    assert.ok(pkg.files.includes("resources/"), "npm pack ships resources/");
  });

  it("the run-time checks agree with the dialogs' (a port may be 0 at run time: the system picks one)", async () => {
    for (const [field, kind] of Object.entries(CHECKED_SETTINGS)) {
      const dialogKind = kind as Kind;
      // Node-RED has put in `${NAME}` references before a node reads its settings.
      for (const v of CASES[dialogKind].accept.filter((a) => !String(a).startsWith("${")))
        assert.deepEqual(badSettings({ [field]: v }), [], `${field} accepts ${JSON.stringify(v)}`);
      for (const v of CASES[dialogKind].refuse) {
        // Empty is the default at run time; the dialogs that require a value mark it.
        if (v === "" || (kind === "port" && v === 0)) continue;
        assert.deepEqual(badSettings({ [field]: v }), [field], `${field} refuses ${JSON.stringify(v)}`);
      }
    }
    assert.deepEqual(badSettings({ port: 0, mqttPort: "", name: "x", retryJitter: 2, timeout: -1 }), [
      "timeout",
      "retryJitter",
    ]);
  });

  it("output labels come from each node's locale file, and every device node starts at deploy by default", async () => {
    for (const file of htmlFiles) {
      for (const [type, def] of load(file)) {
        if (!def.outputs) continue;
        assert.equal(typeof def.outputLabels, "function", `${type}'s output labels are looked up`);
        const locale = JSON.parse(
          readFileSync(join(NODES, "locales", "en-US", `${type}.json`), "utf8"),
        ) as Record<string, unknown>;
        const lookup = (key: string): unknown =>
          key.split(".").reduce<unknown>((o, k) => (o as Record<string, unknown> | undefined)?.[k], locale);
        for (const decide of [false, true])
          for (let i = 0; i < def.outputs; i++) {
            const node = { decide, _: (k: string) => k };
            const key = (def.outputLabels as (this: unknown, i: number) => string).call(node, i);
            assert.equal(typeof lookup(key), "string", `${type} output ${i}: ${key} is in its locale file`);
          }
      }
    }
    for (const type of ["provision-request", "bootstrap-fetch"]) {
      const def = load(`${type}.html`).get(type)!;
      assert.equal(def.defaults.onDeploy.value, true, `${type} starts at deploy`);
    }
    assert.equal(load("dps-client.html").get("dps-client")!.defaults.autoStart.value, true);
  });

  it("the PROXY protocol checkboxes are off by default and accept a flow saved before them; both locales name them", () => {
    const fields: Array<[string, string, string[]]> = [
      ["provision-response.html", "provision-response", ["mqttProxyProtocol", "azureHttpsProxyProtocol"]],
      ["dps-service.html", "dps-service", ["proxyProtocol"]],
    ];
    for (const [file, type, names] of fields) {
      const def = load(file).get(type);
      assert.ok(def, type);
      const html = readFileSync(join(NODES, file), "utf8");
      for (const name of names) {
        const p: Property | undefined = def.defaults[name];
        assert.ok(p, `${type}.${name} is a setting`);
        assert.equal(p.value, false, `${type}.${name} is off by default`);
        // An imported older flow has no such field: nothing may mark it.
        if (p.validate)
          assert.equal(p.validate.call({}, undefined), true, `${type}.${name} accepts undefined`);
        assert.match(html, new RegExp(`id="node-input-${name}"`), `${type}.${name} has its checkbox`);
      }
      for (const locale of ["en-US", "de"]) {
        const text = readFileSync(join(NODES, "locales", locale, `${type}.json`), "utf8");
        const help = readFileSync(join(NODES, "locales", locale, `${type}.html`), "utf8");
        assert.match(text, /send-proxy-v2/, `${locale} ${type}.json names the option`);
        assert.match(help, /PROXY/, `${locale} ${type}.html describes it`);
      }
    }
  });

  it("dps-service names its enrollment groups in config slots; none, or a missing one, is marked", async () => {
    const groups = [
      { id: "g1", type: "dps-enrollment-group" },
      { id: "g2", type: "dps-enrollment-group", valid: false },
    ];
    const def = load("dps-service.html", {}, groups).get("dps-service")!;
    for (const slot of ["group", "group2", "group3", "group4"])
      assert.equal(def.defaults[slot].type, "dps-enrollment-group", `${slot} is a config reference`);
    const valid = (node: Record<string, unknown>) =>
      def.defaults.group.validate!.call(node, node.group) === true;
    assert.equal(valid({ group: "", groups: [] }), false, "no group is marked");
    assert.equal(valid({ group: "", group2: "g1", groups: [] }), true);
    assert.equal(valid({ group: "g1", group2: "gone" }), false, "a group that is gone is marked");
    assert.equal(valid({ group: "g2" }), false, "an invalid group is marked");
    assert.equal(valid({ group: "", groups: ["g1"] }), true, "a flow saved with the list is not marked");
    assert.equal(valid({ group: "", groups: ["gone"] }), false);
  });

  it("a provisioning profile saved without a key or a secret is marked; flows from before are not", async () => {
    const saved = (fields: Record<string, string>) => {
      const def = load("provisioning-profile.html", fields).get("provisioning-profile");
      assert.ok(def?.oneditsave, "the profile dialog saves");
      const node: Record<string, unknown> = {};
      def.oneditsave.call(node);
      return {
        keysSet: node.keysSet,
        valid: def.defaults.keysSet.validate!.call(node, node.keysSet) === true,
      };
    };
    const key = "#node-config-input-key";
    const secret = "#node-config-input-secret";
    assert.deepEqual(saved({}), { keysSet: false, valid: false });
    assert.deepEqual(saved({ [key]: "k" }), { keysSet: false, valid: false });
    assert.deepEqual(saved({ [key]: "k", [secret]: "  " }), { keysSet: false, valid: false });
    // A password field the runtime holds shows Node-RED's placeholder value.
    assert.deepEqual(saved({ [key]: "__PWRD__", [secret]: "${TB_SECRET}" }), { keysSet: true, valid: true });
    const def = load("provisioning-profile.html").get("provisioning-profile")!;
    assert.equal(
      def.defaults.keysSet.validate!.call({}, ""),
      true,
      "a flow saved before keysSet is not marked",
    );
  });

  it("the demo PKI is a choice in the plgd dialogs, never a new node's default; with it no tls-config is needed", async () => {
    const tls = [{ id: "t1", type: "tls-config" }];
    for (const [file, type] of [
      ["dps-service.html", "dps-service"],
      ["dps-client.html", "dps-client"],
      ["dps-enrollment-group.html", "dps-enrollment-group"],
    ] as const) {
      const def = load(file, {}, tls).get(type)!;
      assert.equal(def.defaults.demoPki?.value, false, `${type}: demo PKI is off for a new node`);
      if (type === "dps-enrollment-group") continue;
      const valid = (node: Record<string, unknown>) =>
        def.defaults.tls.validate!.call(node, node.tls) === true;
      assert.equal(valid({ tls: "" }), false, `${type}: no tls-config and no demo PKI is marked`);
      assert.equal(valid({ tls: "gone" }), false, `${type}: a tls-config that is gone is marked`);
      assert.equal(valid({ tls: "t1" }), true);
      assert.equal(valid({ tls: "", demoPki: true }), true, `${type}: the demo PKI needs no tls-config`);
    }
  });

  it("provision-request needs a host except on this Node-RED ('local')", async () => {
    const def = load("provision-request.html").get("provision-request")!;
    const valid = (node: Record<string, unknown>) =>
      def.defaults.host.validate!.call(node, node.host) === true;
    assert.equal(valid({ scheme: "mqtts", host: "" }), false, "an empty host is marked");
    assert.equal(valid({ scheme: "http", host: " " }), false);
    assert.equal(valid({ scheme: "mqtts", host: "tb.example.com" }), true);
    assert.equal(valid({ scheme: "local", host: "" }), true, "this Node-RED needs no host");
    assert.equal(valid({ protocol: "kura", scheme: "mqtts", host: "" }), true, "Everyware / Kura needs none");
    const kura = (field: string, v: unknown, protocol = "kura") =>
      def.defaults[field].validate!.call({ protocol }, v) === true;
    assert.equal(kura("kuraBrokerUrl", ""), false, "Everyware / Kura needs a broker URL");
    assert.equal(kura("kuraBrokerUrl", "http://x"), false);
    assert.equal(kura("kuraBrokerUrl", "mqtts://broker-sandbox.everyware-cloud.com:8883"), true);
    assert.equal(kura("kuraBrokerUrl", "${EVERYWARE_BROKER}"), true);
    assert.equal(kura("kuraBrokerUrl", undefined, "thingsboard"), true, "a flow saved before it");
    assert.equal(kura("kuraBrokerUrl", "", "thingsboard"), true, "ThingsBoard needs none");
    assert.equal(kura("kuraAccountName", ""), false);
    assert.equal(kura("kuraAccountName", "a/b"), false);
    assert.equal(kura("kuraAccountName", "acme-provision"), true);
    assert.equal(kura("kuraRetryInterval", undefined, "thingsboard"), true, "a flow saved before it");
    assert.equal(kura("kuraRetryInterval", undefined), false);
  });

  it("every example's nodes pass their dialog's checks as imported (Import applies no defaults); the real-server device's host is marked", async () => {
    const examples = join(PROJECT_ROOT, "examples");
    const invalid: string[] = [];
    for (const file of readdirSync(examples).filter((f) => f.endsWith(".json"))) {
      const nodes = JSON.parse(readFileSync(join(examples, file), "utf8")) as Array<Record<string, unknown>>;
      const configNodes = nodes.map((n) => ({ id: String(n.id), type: String(n.type) }));
      for (const html of htmlFiles)
        for (const [type, def] of load(html, {}, configNodes))
          for (const n of nodes.filter((x) => x.type === type))
            for (const [field, p] of Object.entries(def.defaults)) {
              const v = n[field];
              const ok = p.validate
                ? p.validate.call(n, v) === true
                : !(p as { required?: boolean }).required || (v !== undefined && v !== "");
              if (!ok) invalid.push(`${file}: ${String(n.id)}.${field} = ${JSON.stringify(v)}`);
            }
    }
    assert.deepEqual(invalid, ['thingsboard-real-server-device.json: tbdev.provision.host = ""']);
  });
});
