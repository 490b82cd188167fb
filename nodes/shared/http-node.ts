/**
 * Mounting handlers on Node-RED's own HTTP server (RED.httpNode, under httpNodeRoot) and
 * taking them off again on close, as the core http-in node does: Express keeps no removal
 * API, so the layer is spliced out of the router's stack (`_router` in Express 4, which
 * Node-RED 4 uses; `router` in Express 5, Node-RED 5).
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import type { NodeAPI } from "node-red";

export type HttpHandler = (req: IncomingMessage, res: ServerResponse, next?: (err?: unknown) => void) => void;

interface Layer {
  handle?: unknown;
  route?: { stack?: Array<{ handle?: unknown }> };
}

interface HttpApp {
  use(handler: HttpHandler): void;
  post(path: string, handler: HttpHandler): void;
  _router?: { stack: Layer[] };
  router?: { stack: Layer[] };
}

/**
 * True when settings.js puts Basic authentication (httpNodeAuth) in front of every HTTP
 * node: devices send their own Authorization header, so they cannot pass it.
 */
export function httpNodeAuthOn(RED: NodeAPI): boolean {
  return Boolean((RED.settings as unknown as { httpNodeAuth?: unknown }).httpNodeAuth);
}

/** `post` mounts a route for one path; `use` sees every request first (it must call next for others). */
export type Mount = { post: string } | "use";

/**
 * Mounts `handler` and returns the function that removes it, or undefined when Node-RED
 * serves no HTTP nodes (httpNodeRoot: false).
 */
export function mountOnHttpNode(RED: NodeAPI, mount: Mount, handler: HttpHandler): (() => void) | undefined {
  const app = RED.httpNode as unknown as HttpApp | undefined;
  if (typeof app?.use !== "function" || typeof app.post !== "function") return undefined;
  if (mount === "use") app.use(handler);
  else app.post(mount.post, handler);
  return () => {
    const stack = (app._router ?? app.router)?.stack;
    if (!stack) return;
    for (let i = stack.length - 1; i >= 0; i--) {
      const layer = stack[i];
      if (layer.handle === handler || layer.route?.stack?.some((l) => l.handle === handler))
        stack.splice(i, 1);
    }
  };
}
