/**
 * "This Node-RED": the runtime's own HTTP server, where httpNode serves (the ThingsBoard
 * HTTP route of provision-response, bootstrap-service's routes), so that a device node and
 * a serving node in one flow find each other on whatever port Node-RED was started.
 */
import type { NodeAPI } from "node-red";
import { finalError } from "../../lib/model/errors";

interface ListenSettings {
  uiPort?: unknown;
  uiHost?: unknown;
  serverPort?: unknown;
  https?: unknown;
  httpNodeRoot?: unknown;
}

/**
 * The base URL of this runtime's httpNode, without a trailing slash
 * (`http://127.0.0.1:1880`, `https://127.0.0.1:8443/api-root`), named the way node-red's
 * red.js getListenPath() names its own address: https when `https` is set, the port it
 * listens on (`serverPort` once known, else `uiPort`, 1880 by default), `uiHost` with
 * 0.0.0.0 as 127.0.0.1 and :: as localhost. TLS verification is the caller's as for any
 * other https URL. A final CONFIG error with `disabledText` when httpNodeRoot is false
 * (Node-RED then serves no node routes).
 */
export function localHttpBase(RED: NodeAPI, disabledText: string): string {
  const s = RED.settings as unknown as ListenSettings;
  if (s.httpNodeRoot === false) throw finalError("CONFIG", disabledText);
  const port = typeof s.serverPort === "number" && s.serverPort > 0 ? s.serverPort : Number(s.uiPort ?? 1880);
  const uiHost = typeof s.uiHost === "string" ? s.uiHost.trim() : "";
  const host =
    uiHost === "" || uiHost === "0.0.0.0"
      ? "127.0.0.1"
      : uiHost === "::"
        ? "localhost"
        : uiHost.includes(":") && !uiHost.startsWith("[")
          ? `[${uiHost}]`
          : uiHost;
  const root = (typeof s.httpNodeRoot === "string" ? s.httpNodeRoot : "/").replace(/\/+$/, "");
  const rootPath = root === "" || root.startsWith("/") ? root : `/${root}`;
  return `${s.https ? "https" : "http"}://${host}:${port}${rootPath}`;
}

/** True when the value is a URL relative to this Node-RED (`/`, `/some/prefix`). */
export function isLocalUrl(url: string): boolean {
  return url.startsWith("/") && !url.startsWith("//");
}

/** A URL as the dialog holds it: one starting with `/` is made absolute on this Node-RED. */
export function absoluteUrl(RED: NodeAPI, url: string, disabledText: string): string {
  if (!isLocalUrl(url)) return url;
  const path = url.replace(/\/+$/, "");
  return localHttpBase(RED, disabledText) + path;
}
