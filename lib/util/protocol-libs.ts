/**
 * The protocol libraries only some flows need, loaded at their first use. Node-RED loads
 * every node file of a package when it starts, used or not, so a top-level import would
 * make every gateway hold mqtt.js and node-coap (several MiB each once loaded) and cbor,
 * whether it ever speaks MQTT as a client, CoAP or CBOR. require() caches each module, so
 * a second call costs a lookup. Types come from `import type`, which costs nothing.
 */
/* eslint-disable @typescript-eslint/no-require-imports */

export const mqttLib = (): typeof import("mqtt") => require("mqtt") as typeof import("mqtt");

export const coapLib = (): typeof import("coap") => require("coap") as typeof import("coap");

export const cborLib = (): typeof import("cbor") => require("cbor") as typeof import("cbor");
