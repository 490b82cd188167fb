// The demo flow of `npm start`, built from the bundled examples, and the environment it
// reads its secrets from (each with a demo default that the README prints).
"use strict";
const crypto = require("node:crypto");
const fs = require("node:fs");
const path = require("node:path");

const root = path.resolve(__dirname, "..");

/** Examples that make up the demo, each on its own tab, in this order. */
const DEMO_EXAMPLES = [
  "thingsboard-local-round-trip.json",
  "plgd-dps-local.json",
  "mainflux-bootstrap-secure.json",
  "credential-store-operations.json",
];

/** Demo defaults; the real value wins whenever the variable is set. */
const DEFAULTS = {
  PROVISION_DEVICE_KEY: "demo-provision-key",
  PROVISION_DEVICE_SECRET: "demo-provision-secret",
  BOOTSTRAP_EXTERNAL_ID: "demo-device-01",
  BOOTSTRAP_EXTERNAL_KEY: "demo-external-key",
  BOOTSTRAP_THING_KEY: "demo-thing-key",
  // Mainflux's own default (bootstrap/cmd/main.go), so a stock Mainflux device works as it is.
  BOOTSTRAP_ENCRYPT_KEY: "12345678910111213141516171819202",
};

/**
 * Credentials of demo nodes, by node id. They hold `${NAME}` references, resolved by the
 * nodes at deploy from the environment, so no secret is written to the user directory.
 */
const TB_DEVICE = { provisionKey: "${PROVISION_DEVICE_KEY}", provisionSecret: "${PROVISION_DEVICE_SECRET}" };
const DEMO_CREDENTIALS = {
  "tb-profile": { key: "${PROVISION_DEVICE_KEY}", secret: "${PROVISION_DEVICE_SECRET}" },
  "tb-gateway": TB_DEVICE,
  "tb-child": TB_DEVICE,
  "mf-ex-service": {
    encryptionKey: "${BOOTSTRAP_ENCRYPT_KEY}",
    initExternalKey: "${BOOTSTRAP_EXTERNAL_KEY}",
    initThingKey: "${BOOTSTRAP_THING_KEY}",
  },
  "mf-ex-device": { externalKey: "${BOOTSTRAP_EXTERNAL_KEY}", encryptionKey: "${BOOTSTRAP_ENCRYPT_KEY}" },
};

function environment(userDir) {
  const env = {};
  for (const [name, value] of Object.entries(DEFAULTS)) env[name] = process.env[name] || value;
  env.DPS_MANUFACTURER_CA =
    process.env.DPS_MANUFACTURER_CA || path.join(userDir, DEMO_PKI_DIR, "manufacturer-ca.pem");
  return env;
}

/**
 * Creates the demo PKI of the plgd DPS example (once; FOR TRYING OUT ONLY) in the user
 * directory, where the example's relative file names point when Node-RED runs there.
 */
function prepare(userDir) {
  const { ensureDemoPki } = require(path.join(root, "dist", "lib", "pki", "demo-pki.js"));
  return ensureDemoPki(path.join(userDir, DEMO_PKI_DIR));
}

/** Ports a test (or a busy machine) can move: env name -> [node id, property] pairs. */
const PORT_OVERRIDES = {
  PROVISION_MQTT_PORT: [
    ["tb-server", "mqttPort"],
    ["tb-gateway", "port"],
  ],
  DPS_PORT: [
    ["dps-ex-service", "port"],
    ["dps-ex-client", "endpoints", (port) => `coaps+tcp://127.0.0.1:${port}`],
  ],
};

/** Node-RED's own HTTP port, as the examples are written. */
const NODE_RED_PORT = 1880;
const LOCAL_HOSTS = new Set(["127.0.0.1", "localhost", "::1", "[::1]"]);

/**
 * Points a node that calls Node-RED's own HTTP port at the port the demo really uses.
 * Examples say it two ways: inside a URL or "host:port" string, and as a `port` field
 * beside a local `host` (provision-request's HTTP transport). Both must follow, or a
 * device would send its provision key and secret to whatever else listens on 1880.
 */
function followNodeRedPort(node, port) {
  const local = typeof node.host === "string" && LOCAL_HOSTS.has(node.host.trim());
  for (const [k, v] of Object.entries(node)) {
    if (typeof v === "string") {
      node[k] = v.replace(/(127\.0\.0\.1|localhost|\[::1\]):1880(?!\d)/g, (_m, host) => `${host}:${port}`);
    }
    if (k === "port" && local && String(v).trim() === String(NODE_RED_PORT)) {
      node[k] = typeof v === "number" ? Number(port) : port;
    }
  }
}

/** Where the demo PKI lives: inside the user directory, the working directory of Node-RED. */
const DEMO_PKI_DIR = "plgd-dps-demo-pki";

function flows() {
  const out = [];
  for (const file of DEMO_EXAMPLES) {
    const nodes = JSON.parse(fs.readFileSync(path.join(root, "examples", file), "utf8"));
    const tab = "demo-" + file.replace(/\.json$/, "");
    if (!nodes.some((n) => n.type === "tab")) {
      out.push({ id: tab, type: "tab", label: file.replace(/\.json$/, "").replace(/-/g, " ") });
    }
    for (const n of nodes) {
      const isConfig = n.x === undefined && n.y === undefined && n.type !== "comment";
      out.push(n.z === undefined && !isConfig && n.type !== "tab" ? { ...n, z: tab } : n);
    }
  }
  for (const [name, targets] of Object.entries(PORT_OVERRIDES)) {
    if (!process.env[name]) continue;
    for (const [id, prop, format] of targets) {
      const node = out.find((n) => n.id === id);
      const value = format ? format(process.env[name]) : process.env[name];
      if (node) node[prop] = typeof node[prop] === "number" ? Number(value) : value;
    }
  }
  // Examples that carry demo values in their tab's environment, for an import with no
  // environment. The demo always sets its variables (environment() fills in DEFAULTS), and
  // a tab's env shadows process.env, so those entries go: the demo's environment (the
  // user's value, or the default) wins, and no value is written into flows.json.
  for (const n of out) {
    if (n.type !== "tab" || !Array.isArray(n.env)) continue;
    n.env = n.env.filter((e) => !(e.name in DEFAULTS) && !process.env[e.name]);
  }
  const port = process.env.PORT;
  if (port && port !== String(NODE_RED_PORT)) for (const n of out) followNodeRedPort(n, port);
  // The enrollment group trusts the manufacturer CA named by the environment.
  const group = out.find((n) => n.id === "dps-ex-group");
  if (group) group.attestationChainFile = "${DPS_MANUFACTURER_CA}";
  return out;
}

/**
 * Node-RED reads credentials only from flows_cred.json (inline ones in flows.json are
 * ignored at load), encrypted with aes-256-ctr under SHA-256 of the credential secret.
 */
function writeCredentials(userDir, credentialSecret) {
  const key = crypto.createHash("sha256").update(credentialSecret).digest();
  const iv = crypto.randomBytes(16);
  const cipher = crypto.createCipheriv("aes-256-ctr", key, iv);
  const body = cipher.update(JSON.stringify(DEMO_CREDENTIALS), "utf8", "base64") + cipher.final("base64");
  const file = path.join(userDir, "flows_cred.json");
  fs.writeFileSync(file + ".tmp", JSON.stringify({ $: iv.toString("hex") + body }), { mode: 0o600 });
  fs.renameSync(file + ".tmp", file);
}

/**
 * What the flows serve, one line each, as a device would be pointed at it: read from the
 * flows Node-RED is about to run (the user's own, once changed), `${NAME}` resolved from
 * the environment, then from the node's tab, as Node-RED resolves it.
 */
function servedEndpoints(flowList, env, port) {
  const tabs = new Map(flowList.filter((n) => n.type === "tab").map((t) => [t.id, t]));
  const resolve = (node, v) =>
    String(v ?? "").replace(/\$\{([A-Za-z_]\w*)\}/g, (m, name) => {
      if (env[name] !== undefined) return env[name];
      const tabEnv = tabs.get(node.z)?.env ?? [];
      return tabEnv.find((e) => e.name === name)?.value ?? m;
    });
  const web = `http://127.0.0.1:${port}`;
  const lines = [];
  for (const n of flowList) {
    if (n.d || tabs.get(n.z)?.disabled) continue;
    const at = (k, fallback) => resolve(n, n[k] === undefined || n[k] === "" ? fallback : n[k]);
    if (n.type === "provision-response") {
      if (at("mqtt", "embedded") === "embedded")
        lines.push(
          `ThingsBoard over MQTT   ${n.mqttTls ? "mqtts" : "mqtt"}://${at("mqttHost", "127.0.0.1")}:${at("mqttPort", 1883)}`,
        );
      if (n.http) lines.push(`ThingsBoard over HTTP   POST ${web}${at("httpPath", "/api/v1/provision")}`);
      if (n.coap)
        lines.push(`ThingsBoard over CoAP   coap://${at("coapHost", "127.0.0.1")}:${at("coapPort", 5683)}`);
    }
    if (n.type === "bootstrap-service")
      lines.push(`Mainflux bootstrap      GET ${web}${at("basePath", "")}/things/bootstrap/{external id}`);
    if (n.type === "dps-service")
      lines.push(`plgd DPS                coaps+tcp://${at("host", "127.0.0.1")}:${at("port", 15684)}`);
  }
  return lines;
}

function printBanner(port, env, userDir, flowList = []) {
  const lines = [
    "",
    `node-red-contrib-provisioning demo: http://127.0.0.1:${port}`,
    `user directory: ${userDir}`,
  ];
  const served = servedEndpoints(flowList, env, port);
  if (served.length > 0) lines.push("serving (127.0.0.1 only):", ...served.map((l) => `  ${l}`));
  // Values are never printed, not even the public demo defaults: logs must not hold secrets.
  lines.push("secrets and files:");
  lines.push(`  DPS_MANUFACTURER_CA: ${env.DPS_MANUFACTURER_CA}`);
  for (const name of Object.keys(DEFAULTS)) {
    lines.push(`  ${name}: ${process.env[name] ? "from your environment" : "demo default (see README.md)"}`);
  }
  process.stdout.write(lines.join("\n") + "\n\n");
}

module.exports = {
  environment,
  prepare,
  flows,
  writeCredentials,
  printBanner,
  servedEndpoints,
  DEMO_EXAMPLES,
  DEFAULTS,
  DEMO_CREDENTIALS,
  NODE_RED_PORT,
};
