/**
 * The peer address of an HTTP request, for the per-address rate limits, failure limits and
 * audit of the handlers mounted on Node-RED's httpNode (ThingsBoard's /api/v1/provision,
 * Mainflux bootstrap). On Express (httpNode is an Express app) that is `req.ip`, which
 * honours the app's `trust proxy` setting: with it, the client address a trusted proxy put
 * in X-Forwarded-For; without it (Express's default), the socket's own address, whatever
 * the header says. Node-RED applies settings.js `httpServerOptions` to both its apps
 * (@node-red/runtime lib/index.js: nodeApp.set(...) for every option), so
 * `httpServerOptions: { "trust proxy": "10.0.0.0/8" }` is all a deployment behind an HTTP
 * load balancer sets. On plain node:http (tests, a server of our own) there is no req.ip:
 * the socket's address, which a PROXY header may have set (./proxy-listener.ts).
 */
import type { IncomingMessage } from "node:http";

export function httpPeerAddress(req: IncomingMessage): string | undefined {
  const ip = (req as IncomingMessage & { ip?: unknown }).ip;
  return typeof ip === "string" && ip !== "" ? ip : req.socket.remoteAddress;
}
