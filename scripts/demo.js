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
  "everyware-kura-local.json",
  "azure-dps-local.json",
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
  EVERYWARE_DEMO_PASSWORD: "demo-kura-password",
  EVERYWARE_ACCOUNT_PASSWORD: "demo-account-password",
  EVERYWARE_CLIENT_ID: "MYDEVICE01",
  EVERYWARE_USERNAME: "MYDEVICE01-SN0001",
  EVERYWARE_PASSWORD: "my-device-password",
  EVERYWARE_ACTIVATION_KEY: "demoActivationKey0123456789abcdef",
  AZURE_DPS_ID_SCOPE: "0ne00000A0A",
  AZURE_DPS_GROUP_KEY:
    "SSr31G7Zupm0miZTq0mN4Z3XHKJWksRskLeqoYOpjnFd7OgmdU+6EVGFcq/K9Cp1TbU5+iCK70N8O2JzdP4j3w==",
  AZURE_DPS_IOT_HUB: "demo-hub.azure-devices.net",
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
  "kura-server": {
    kuraSecrets: JSON.stringify({
      DEMOKURA01: {
        password: "${EVERYWARE_DEMO_PASSWORD}",
        accountPassword: "${EVERYWARE_ACCOUNT_PASSWORD}",
      },
      "${EVERYWARE_CLIENT_ID}": {
        password: "${EVERYWARE_PASSWORD}",
        activationKey: "${EVERYWARE_ACTIVATION_KEY}",
        accountPassword: "${EVERYWARE_ACCOUNT_PASSWORD}",
      },
    }),
  },
  "kura-device": { kuraPassword: "${EVERYWARE_DEMO_PASSWORD}" },
  "azure-server": {
    azureKeys: JSON.stringify({ "group:demo-group": { primaryKey: "${AZURE_DPS_GROUP_KEY}" } }),
  },
  "azure-device": { azureKey: "${AZURE_DPS_GROUP_KEY}" },
};

function environment(userDir) {
  const env = {};
  for (const [name, value] of Object.entries(DEFAULTS)) env[name] = process.env[name] || value;
  // The demo flows written by earlier versions name the manufacturer CA by this variable
  // (today's example ticks "Demo PKI" instead): their .node-red/flows.json keeps working.
  env.DPS_MANUFACTURER_CA =
    process.env.DPS_MANUFACTURER_CA || path.join(userDir, DEMO_PKI_DIR, "manufacturer-ca.pem");
  return env;
}

/**
 * Creates the demo PKIs of the plgd DPS and Azure DPS examples (once; FOR TRYING OUT ONLY)
 * in the user directory, where the examples' nodes with "demo PKI" / "demo certificate"
 * ticked find them (they would make them themselves at deploy: nodes/shared/demo-pki.ts,
 * nodes/shared/azure-demo-pki.ts; the same folders), so that the Azure service's CA is in
 * `azure-dps-demo-pki/ca.pem` for Microsoft's SDK from the first start.
 */
function prepare(userDir) {
  const { ensureDemoPki } = require(path.join(root, "dist", "lib", "pki", "demo-pki.js"));
  const { ensureAzureDemoPki } = require(path.join(root, "dist", "lib", "pki", "azure-demo-pki.js"));
  ensureAzureDemoPki(path.join(userDir, AZURE_DEMO_PKI_DIR));
  return ensureDemoPki(path.join(userDir, DEMO_PKI_DIR));
}

/**
 * Ports a test (or a busy machine) can move. Each example keeps its port in one place, its
 * tab's environment (a demo value the nodes reference as `${NAME}`); the demo writes the
 * value of its own environment there. Node-RED's own port needs nothing: the examples'
 * devices name "this Node-RED" (provision-request's "local", bootstrap-fetch's "/").
 */
const PORT_VARIABLES = ["PROVISION_MQTT_PORT", "DPS_PORT", "EVERYWARE_ACCOUNT_PORT", "AZURE_DPS_MQTT_PORT"];

/** Where the demo PKI lives: inside the user directory, the working directory of Node-RED. */
const DEMO_PKI_DIR = "plgd-dps-demo-pki";
const AZURE_DEMO_PKI_DIR = "azure-dps-demo-pki";

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
  // Examples that carry demo values in their tab's environment, for an import with no
  // environment. The demo always sets its variables (environment() fills in DEFAULTS), and
  // a tab's env shadows process.env, so those entries go: the demo's environment (the
  // user's value, or the default) wins, and no value is written into flows.json.
  for (const n of out) {
    if (n.type !== "tab" || !Array.isArray(n.env)) continue;
    // A port is no secret: its one place stays, with the demo's value.
    n.env = n.env
      .map((e) =>
        PORT_VARIABLES.includes(e.name) && process.env[e.name] ? { ...e, value: process.env[e.name] } : e,
      )
      .filter((e) => PORT_VARIABLES.includes(e.name) || (!(e.name in DEFAULTS) && !process.env[e.name]));
  }
  return out;
}

/**
 * Flows kept from an earlier start follow a port variable set now: the tab's entry is the
 * port's one place, and it would shadow the new value. Resolves true when one changed.
 */
function followPortVariables(flowList) {
  let changed = false;
  for (const n of flowList) {
    if (n.type !== "tab" || !Array.isArray(n.env)) continue;
    for (const e of n.env)
      if (PORT_VARIABLES.includes(e.name) && process.env[e.name] && e.value !== process.env[e.name]) {
        e.value = process.env[e.name];
        changed = true;
      }
  }
  return changed;
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
 * the node's tab, then from the environment, as Node-RED resolves it.
 */
function servedEndpoints(flowList, env, port) {
  const tabs = new Map(flowList.filter((n) => n.type === "tab").map((t) => [t.id, t]));
  // A tab's environment shadows the process's, as in Node-RED.
  const resolve = (node, v) =>
    String(v ?? "").replace(/\$\{([A-Za-z_]\w*)\}/g, (m, name) => {
      const own = (tabs.get(node.z)?.env ?? []).find((e) => e.name === name);
      if (own) return own.value;
      return env[name] ?? m;
    });
  const web = `http://127.0.0.1:${port}`;
  const lines = [];
  for (const n of flowList) {
    if (n.d || tabs.get(n.z)?.disabled) continue;
    const at = (k, fallback) => resolve(n, n[k] === undefined || n[k] === "" ? fallback : n[k]);
    if (n.type === "provision-response" && n.dialect === "azure-dps") {
      const host = at("azureListenHost", "127.0.0.1");
      const ca = n.azureDemoPki ? ` (CA: ${AZURE_DEMO_PKI_DIR}/ca.pem)` : "";
      if (n.azureMqtt !== false)
        lines.push(`Azure IoT Hub DPS       mqtts://${host}:${at("azureMqttPort", 8883)}${ca}`);
      if (n.azureHttps)
        lines.push(`Azure IoT Hub DPS       https://${host}:${at("azureHttpsPort", 443)}${ca}`);
    } else if (n.type === "provision-response" && n.dialect === "kura") {
      if (at("mqtt", "embedded") === "embedded")
        lines.push(
          `Everyware / Kura        ${n.mqttTls ? "mqtts" : "mqtt"}://${at("mqttHost", "127.0.0.1")}:${at("mqttPort", 1883)} (provision broker)`,
        );
      if (n.kuraAccountBroker)
        lines.push(
          `Everyware / Kura        mqtt://${at("mqttHost", "127.0.0.1")}:${at("kuraAccountBrokerPort", 1884)} (demo account broker)`,
        );
    } else if (n.type === "provision-response") {
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
  followPortVariables,
  DEMO_EXAMPLES,
  DEFAULTS,
  DEMO_CREDENTIALS,
};
