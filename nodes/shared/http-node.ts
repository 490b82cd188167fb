/**
 * Mounting handlers on Node-RED's own HTTP server (RED.httpNode, under httpNodeRoot) and
 * taking them off again on close, as the core http-in node does: Express keeps no removal
 * API, so the layer is spliced out of the router's stack (`_router` in Express 4, which
 * Node-RED 4 and 5 use; `router` in Express 5).
 *
 * Every request reaches Node-RED's admin app first when it shares the root with httpNode
 * (node-red/red.js mounts httpAdmin before httpNode on one Express app, both at "/" by
 * default), and the admin app's body-parser json and urlencoded parsers
 * (@node-red/editor-api lib/index.js, limit 5 MB, gzip and deflate inflated) read every
 * body they recognise, answering bad ones with Express's HTML error page and a stack trace
 * on the console. So a mount also places one guard layer at the very front of the
 * outermost Express app: for the requests our endpoints serve (and only those) it marks
 * the body as taken (`claimRequest`), so that no parser reads it and our handler reads the
 * raw stream within its own limits. The request still goes through Node-RED's chain
 * (httpNodeAuth, httpNodeMiddleware, other routes) as before.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import type { NodeAPI } from "node-red";
import { claimRequest } from "../../lib/transports/http-body";

export type HttpHandler = (req: IncomingMessage, res: ServerResponse, next?: (err?: unknown) => void) => void;

interface Layer {
  handle?: unknown;
  route?: { stack?: Array<{ handle?: unknown }> };
}

interface HttpApp {
  use(handler: HttpHandler): void;
  post(path: string, handler: HttpHandler): void;
  lazyrouter?: () => void;
  _router?: { stack: Layer[] };
  router?: { stack: Layer[] };
  /** Set by Express when this app is mounted on another (app.use(path, app)). */
  parent?: HttpApp;
  mountpath?: string | string[];
}

/** Which requests (method, URL below httpNodeRoot) an endpoint serves. */
export type Claim = (method: string, url: string) => boolean;

interface Guard {
  handle: HttpHandler;
  claims: Set<{ prefix: string; claim: Claim }>;
}

const guards = new WeakMap<HttpApp, Guard>();

function stackOf(app: HttpApp): Layer[] | undefined {
  if (!app._router && !app.router) app.lazyrouter?.();
  return (app._router ?? app.router)?.stack;
}

/** The outermost app `app` is mounted on, and the path prefix it is mounted under there. */
function outermost(app: HttpApp): { top: HttpApp; prefix: string } {
  let prefix = "";
  let a = app;
  for (let i = 0; i < 16 && a.parent && typeof a.mountpath === "string"; i++) {
    prefix = a.mountpath.replace(/\/+$/, "") + prefix;
    a = a.parent;
  }
  return { top: a, prefix };
}

/** `url` below `prefix` (matched as Express does: case-insensitively), or undefined. */
function below(url: string, prefix: string): string | undefined {
  if (prefix === "") return url;
  if (url.slice(0, prefix.length).toLowerCase() !== prefix.toLowerCase()) return undefined;
  const rest = url.slice(prefix.length);
  if (rest === "") return "/";
  return rest[0] === "/" ? rest : rest[0] === "?" ? "/" + rest : undefined;
}

function addClaim(app: HttpApp, claim: Claim): () => void {
  const { top, prefix } = outermost(app);
  let guard = guards.get(top);
  if (!guard) {
    const g: Guard = {
      claims: new Set(),
      handle: (req, _res, next) => {
        const url = req.url ?? "/";
        const method = (req.method ?? "GET").toUpperCase();
        for (const c of g.claims) {
          const rel = below(url, c.prefix);
          if (rel !== undefined && c.claim(method, rel)) {
            claimRequest(req);
            break;
          }
        }
        next?.();
      },
    };
    top.use(g.handle);
    const stack = stackOf(top);
    const at = stack?.findIndex((l) => l.handle === g.handle) ?? -1;
    if (stack && at > 0) stack.unshift(...stack.splice(at, 1));
    guards.set(top, g);
    guard = g;
  }
  const entry = { prefix, claim };
  guard.claims.add(entry);
  const g = guard;
  return () => {
    g.claims.delete(entry);
    if (g.claims.size > 0 || guards.get(top) !== g) return;
    guards.delete(top);
    removeLayers(top, g.handle);
  };
}

function removeLayers(app: HttpApp, handler: HttpHandler): void {
  const stack = stackOf(app);
  if (!stack) return;
  for (let i = stack.length - 1; i >= 0; i--) {
    const layer = stack[i];
    if (layer.handle === handler || layer.route?.stack?.some((l) => l.handle === handler)) stack.splice(i, 1);
  }
}

/** Express's own matching of a route path: case-insensitive, optional trailing slash, no query. */
export function samePath(url: string, path: string): boolean {
  const p = url.split("?")[0].replace(/\/+$/, "").toLowerCase();
  return p === path.replace(/\/+$/, "").toLowerCase();
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
 * Mounts `handler` and returns the function that removes it (and its claim), or undefined
 * when Node-RED serves no HTTP nodes (httpNodeRoot: false). `claim` says which requests
 * the handler serves, so that no body parser in front of it reads their bodies; a `post`
 * mount claims POST to its path by default.
 */
export function mountOnHttpNode(
  RED: NodeAPI,
  mount: Mount,
  handler: HttpHandler,
  claim?: Claim,
): (() => void) | undefined {
  const app = RED.httpNode as unknown as HttpApp | undefined;
  if (typeof app?.use !== "function" || typeof app.post !== "function") return undefined;
  const claims =
    claim ??
    (mount === "use" ? undefined : (m: string, url: string) => m === "POST" && samePath(url, mount.post));
  const unclaim = claims ? addClaim(app, claims) : undefined;
  if (mount === "use") app.use(handler);
  else app.post(mount.post, handler);
  return () => {
    unclaim?.();
    removeLayers(app, handler);
  };
}
